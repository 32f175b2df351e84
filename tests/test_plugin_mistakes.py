"""The five plugin mistakes that used to train silently are refused before the run, or stop it
at the step they happen, naming the plugin:

1. a scorer that is NaN only on real (normalised, negative) video — ``video ** 2.2``;
2. a plugin whose ``__init__`` takes ``**kwargs`` (a misspelt binding would vanish there);
3. a decoder strategy whose ``count()`` ignores its declared budget;
4. a strategy drawing from Python's ``random`` or torch's global generator;
5. a strategy whose targets hold on the first calls and break from the third call on.

Runtime checks use the engine on a tiny MAE (no data pipeline); one run through ``run.py``
shows the refusal a user sees.
"""
from __future__ import annotations

import os
import random

import gin
import pytest
import torch

from lvmae import registry
from lvmae.components.kit import preflight_components
from lvmae.components.masking.base import DecoderMasking
from lvmae.components.masking.plan import TokenGrid, count_from_ratio
from lvmae.components.scorers.base import Scorer
from lvmae.experiments.engine.run_stopped import NonFiniteValue, RunStopped
from lvmae.experiments.engine.trainer import GeneratedBatches, Settings, Trainer
from lvmae.registry import ContractError, RegistryError

registry.discover()
TUBELET = (2, 4, 4)
CLIP = (3, 8, 16, 16)          # C, T, H, W: a 4×4×4 token grid


@pytest.fixture(autouse=True)
def _scratch_registry():
    with registry.temporary():
        yield
    gin.clear_config()


def _masked(grid: TokenGrid, keep: torch.Tensor) -> torch.Tensor:
    """(b, n − k) the tokens the encoder did not keep, ascending."""
    order = torch.arange(grid.n, device=keep.device).expand(keep.shape[0], -1).clone().float()
    order.scatter_(1, keep, float("inf"))
    return order.argsort(dim=1)[:, :grid.n - keep.shape[1]]


class _Budgeted(DecoderMasking):
    def __init__(self, budget: float = 0.15):
        self.budget = budget

    def count(self, grid: TokenGrid, kept: int) -> int:
        return count_from_ratio(self.budget, grid.n, "budget")


def _mae(decoder_masking=None, scorer=None):
    encoder = registry.build("backbone.vit", clip_frames=CLIP[1], image_size=CLIP[2], tubelet=TUBELET, dim=32,
                             depth=1, heads=2)
    return registry.build("model.mae", encoder=encoder, decoder=registry.get("decoder.mae").obj,
                          encoder_masking=registry.build("masking.encoder.tube", keep_ratio=0.25),
                          decoder_masking=decoder_masking or registry.build("masking.decoder.random"),
                          target=registry.build("target.pixels"), scorer=scorer)


def _train(model, tmp_path, steps: int = 4) -> None:
    """The engine's loop on normalised random clips, logging (and so the NaN guard) every step."""
    trainer = Trainer(None, 0, command="pretrain", stage="pretrain", workdir=str(tmp_path), device="cpu",
                      settings=Settings("pretrain_loop", steps, log_every=1, checkpoint_minutes=0.0,
                                        save_checkpoints=False), batch_size=2)
    trainer.prepare(model, lambda module: torch.optim.SGD(module.parameters(), lr=0.01))
    draw = lambda generator: {"video": (torch.rand(2, *CLIP, generator=generator) - 0.45) / 0.225}
    mask_generator = torch.Generator()
    trainer.fit(lambda batch, index: (trainer.forward(batch, mask_generator.manual_seed(index))[0], None),
                trainer.data(GeneratedBatches(draw, torch.Generator().manual_seed(1))))


# ---------------------------------------------------------------- 1. NaN on real video only

GAMMA_SCORER = '''
import torch
from lvmae.components.scorers.base import Scorer
from lvmae.registry import register


@register("scorer.gamma")
class Gamma(Scorer):
    """Brightness after a display gamma: NaN where normalised frames are negative."""

    def __init__(self, stride: tuple[int, int, int] = (2, 16, 16)):
        super().__init__()
        self.stride = tuple(stride)

    def forward(self, video):
        return torch.nn.functional.avg_pool3d(video.pow(2.2).mean(dim=1, keepdim=True), self.stride)[:, 0]
'''


def _gamma_scorer():
    namespace = {}
    exec(compile(GAMMA_SCORER, "gamma_scorer.py", "exec"), namespace)    # noqa: S102  (the plugin under test)
    return namespace["Gamma"](stride=TUBELET)


def test_a_scorer_nan_on_normalised_video_is_refused_by_the_preflight():
    model = _mae(registry.build("masking.decoder.adaptive"), _gamma_scorer())
    with pytest.raises(ContractError, match=r"'scorer\.gamma' \(.*Gamma\): scores .* has non-finite values"):
        preflight_components(model)


def test_a_scorer_that_turns_nan_mid_run_stops_it_at_the_next_logging_step_naming_it(tmp_path):
    class LateNaN(Scorer):
        def __init__(self):
            super().__init__()
            self.stride, self.calls = TUBELET, 0

        def forward(self, video):
            self.calls += 1
            scores = video.detach().abs().mean(dim=1)[:, ::2, ::4, ::4]
            return scores * float("nan") if self.calls >= 3 else scores

    registry.register("scorer.late_nan")(LateNaN)
    model = _mae(registry.build("masking.decoder.adaptive"), registry.build("scorer.late_nan"))
    with pytest.raises(NonFiniteValue, match=r"at or before step 3: they came first from scores of "
                                             r"'scorer\.late_nan'") as stopped:
        _train(model, tmp_path)
    assert "\n" not in str(stopped.value)


# ---------------------------------------------------------------- 2. **kwargs swallows a typo

def test_registration_refuses_kwargs_in_init():
    class Swallows(_Budgeted):
        def __init__(self, budget: float = 0.15, **kwargs):
            super().__init__(budget)

        def __call__(self, grid, enc_keep_idx, generator, scores=None):
            return _masked(grid, enc_keep_idx)[:, :self.count(grid, 0)]

    with pytest.raises(RegistryError, match=r"'masking\.decoder\.swallows' \(.*Swallows\) __init__ takes "
                                            r"\*\*kwargs: .*budgte = 0\.5"):
        registry.register("masking.decoder.swallows")(Swallows)
    assert "swallows" not in registry.names("masking.decoder")


# ---------------------------------------------------------------- 3. count() ignores the budget

def test_a_count_that_ignores_the_budget_is_refused_naming_the_plugin():
    class Greedy(_Budgeted):
        def count(self, grid, kept):
            return grid.n - kept                      # every masked token, whatever the budget

        def __call__(self, grid, enc_keep_idx, generator, scores=None):
            return _masked(grid, enc_keep_idx)

    registry.register("masking.decoder.greedy")(Greedy)
    message = r"'masking\.decoder\.greedy' \(.*Greedy\): count\(.*\) = 48 targets per clip, but its declared budget 0\.15"
    with pytest.raises(ContractError, match=message):
        preflight_components(_mae(registry.build("masking.decoder.greedy")))
    from lvmae.components.kit import check_decoder_masking
    with pytest.raises(ContractError, match="count\\(\\) must follow the budget"):
        check_decoder_masking(registry.build("masking.decoder.greedy"))


# ---------------------------------------------------------------- 4. global random numbers

@pytest.mark.parametrize("source", ["python", "torch"])
def test_a_strategy_drawing_global_random_numbers_is_refused_by_the_preflight(source):
    class Global(_Budgeted):
        def __call__(self, grid, enc_keep_idx, generator, scores=None):
            masked = _masked(grid, enc_keep_idx)
            if source == "python":
                columns = torch.tensor(random.sample(range(masked.shape[1]), self.count(grid, 0)))
            else:
                columns = torch.randperm(masked.shape[1])[:self.count(grid, 0)]
            return masked[:, columns]

    registry.register("masking.decoder.global_rng")(Global)
    with pytest.raises(ContractError, match=r"'masking\.decoder\.global_rng' \(.*Global\): called twice with the "
                                            r"same generator state, it gave different dec_target_idx"):
        preflight_components(_mae(registry.build("masking.decoder.global_rng")))


def test_a_scorer_drawing_from_torchs_global_generator_is_refused_by_the_preflight():
    class Noisy(Scorer):
        def __init__(self):
            super().__init__()
            self.stride = TUBELET

        def forward(self, video):
            return torch.rand(video.shape[0], *(n // s for n, s in zip(video.shape[2:], self.stride)))

    registry.register("scorer.noisy")(Noisy)
    with pytest.raises(ContractError, match=r"'scorer\.noisy' \(.*Noisy\): called twice with the same generator "
                                            r"state, it gave different scores"):
        preflight_components(_mae(registry.build("masking.decoder.adaptive"), registry.build("scorer.noisy")))


# ---------------------------------------------------------------- 5. breaks from the third call

def test_targets_that_break_from_the_third_call_stop_the_run_at_that_step_naming_the_plugin(tmp_path):
    class Late(_Budgeted):
        calls = 0

        def __call__(self, grid, enc_keep_idx, generator, scores=None):
            self.calls += 1
            chosen = _masked(grid, enc_keep_idx) if self.calls < 3 else enc_keep_idx   # kept tokens: no loss
            return chosen[:, :self.count(grid, 0)]

    registry.register("masking.decoder.late")(Late)
    model = _mae(registry.build("masking.decoder.late"))
    preflight_components(model)                 # calls 1 and 2 (on copies) hold
    with pytest.raises(RunStopped, match=r"pretrain stopped at step 3: 'masking\.decoder\.late' \(.*Late\): "
                                         r"\d+ of \d+ decoder targets are tokens the encoder kept") as stopped:
        _train(model, tmp_path)
    assert "no checkpoint was written yet" in str(stopped.value) and "\n" not in str(stopped.value)


def test_run_py_refuses_the_gamma_scorer_on_a_real_batch_before_recording(tmp_path):
    """Through run.py on the tiny experiment: the preflight reads a batch of the configured
    data pipeline and the scorer's NaN stops the command (exit 2), nothing recorded."""
    from tests.cli import run_cli
    (tmp_path / "gamma_scorer.py").write_text(GAMMA_SCORER)
    (tmp_path / "gamma.gin").write_text("import gamma_scorer\nmodel.mae.scorer = @scorer.gamma()\n"
                                        "scorer.gamma.stride = %TUBELET\n"
                                        "model.mae.decoder_masking = @masking.decoder.adaptive()\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    small = ["CLIP_FRAMES = 4", "IMAGE_SIZE = 16", f"WORKDIR = '{tmp_path / 'work'}'",
             f"dataset.synthetic_motion.root = '{tmp_path / 'data'}'", "dataset.synthetic_motion.square = 4",
             "dataset.synthetic_motion.train_samples = 8", "dataset.synthetic_motion.val_samples = 4",
             "dataset.synthetic_motion.samples_per_shard = 4"]
    result = run_cli(["pretrain", "-g", "gin/experiments/tiny_cpu.gin", "-g", str(tmp_path / "gamma.gin"),
                      *[a for b in small for a in ("-b", b)]], tmp_path / "runs",
                     env={"PYTHONPATH": path, "LVMAE_OBSERVER": "file", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "'scorer.gamma' (gamma_scorer.Gamma): scores for video" in result.stderr
    assert "has non-finite values" in result.stderr and "Nothing was recorded" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("run.json"))


def test_the_preflight_calls_the_model_on_a_batch_of_the_configured_pipeline(tmp_path, monkeypatch):
    from lvmae.components import kit
    from lvmae.experiments.commands import command_index
    from lvmae.experiments.engine.preflight import preflight
    seen = []
    original = kit.preflight_components
    monkeypatch.setattr(kit, "preflight_components", lambda *c, **k: seen.append(k.get("batch")) or original(*c, **k))
    preflight("pretrain", ["gin/experiments/tiny_cpu.gin"],
              ["CLIP_FRAMES = 4", "IMAGE_SIZE = 16", f"WORKDIR = '{tmp_path / 'work'}'",
               f"dataset.synthetic_motion.root = '{tmp_path / 'data'}'", "dataset.synthetic_motion.square = 4",
               "dataset.synthetic_motion.train_samples = 8", "dataset.synthetic_motion.val_samples = 4",
               "dataset.synthetic_motion.samples_per_shard = 4"], module=command_index()["pretrain"].module)
    batch = next(b for b in seen if b is not None)
    assert tuple(batch["video"].shape) == (2, 3, 4, 16, 16) and batch["key"][0].startswith("train")
    assert float(batch["video"].min()) < 0          # normalised as the run sees it

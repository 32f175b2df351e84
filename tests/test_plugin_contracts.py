"""Author mistakes in masking plugins are caught before any work, and the error names the
plugin (registered name and module): at registration, at construction, in the contract kit,
in the preflight of a built model, and in every step's plan (host checks on the CPU)."""
from __future__ import annotations

import gin
import pytest
import torch

from lvmae import registry
from lvmae.components import kit
from lvmae.components.masking.base import DecoderMasking, EncoderMasking
from lvmae.components.masking.contract import DEBUG_ENV, host_checks
from lvmae.components.masking.plan import MaskPlan, TokenGrid, count_from_ratio
from lvmae.registry import ContractError

registry.discover()
GRID = TokenGrid(4, 4, 4)
NAMED = r"'masking\.(en|de)coder\.mistake' \((tests\.)?test_plugin_contracts\."


def _decoder(call, needs_scores: bool = False, count=lambda self, grid, kept: 3):
    """Registers a decoder plugin named masking.decoder.mistake whose __call__ is ``call``."""
    namespace = {"__call__": call, "count": count, "needs_scores": needs_scores,
                 "__module__": __name__}
    return registry.register("masking.decoder.mistake")(type("Mistake", (DecoderMasking,), namespace))


def _encoder(call, count=lambda self, grid: 4):
    namespace = {"__call__": call, "count": count, "__module__": __name__}
    return registry.register("masking.encoder.mistake")(type("Mistake", (EncoderMasking,), namespace))


def _masked(grid, keep):
    """(b, n − k) the encoder-masked tokens of each row, ascending."""
    order = torch.arange(grid.n).expand(keep.shape[0], -1).clone().float()
    order.scatter_(1, keep, float("inf"))
    return order.argsort(dim=1)[:, :grid.n - keep.shape[1]]


def _mae(decoder_masking=None, encoder_masking=None):
    gin.clear_config()
    encoder = registry.build("backbone.vit", clip_frames=8, image_size=16, tubelet=(2, 4, 4), dim=32,
                             depth=1, heads=2)
    return registry.build("model.mae", encoder=encoder, decoder=registry.get("decoder.mae").obj,
                          encoder_masking=encoder_masking or registry.build("masking.encoder.tube"),
                          decoder_masking=decoder_masking or registry.build("masking.decoder.random"),
                          target=registry.build("target.pixels"))


@pytest.fixture(autouse=True)
def _scratch_registry():
    with registry.temporary():
        yield


DECODER_MISTAKES = {
    "one token 19 times": (lambda self, grid, keep, gen, scores=None:
                           _masked(grid, keep)[:, :1].expand(-1, 19), 19, "repeats token"),
    "only encoder-visible tokens": (lambda self, grid, keep, gen, scores=None: keep[:, :3], 3,
                                    "decoder targets are tokens the encoder kept"),
    "1-D output": (lambda self, grid, keep, gen, scores=None: _masked(grid, keep)[0, :3], 3, "must be 2-D"),
    "float output": (lambda self, grid, keep, gen, scores=None: _masked(grid, keep)[:, :3].float(), 3,
                     "dtype torch.long"),
    "wrong batch": (lambda self, grid, keep, gen, scores=None: _masked(grid, keep)[:1, :3], 3,
                    "batch size 1, expected"),
    "out of range": (lambda self, grid, keep, gen, scores=None: _masked(grid, keep)[:, :3] + grid.n, 3,
                     r"outside \[0, 64\)"),
    "count differs from declared": (lambda self, grid, keep, gen, scores=None: _masked(grid, keep)[:, :5], 3,
                                    "count\\(\\) declares 3"),
    "reads scores without needs_scores": (lambda self, grid, keep, gen, scores=None:
                                          scores.flatten(1).topk(3).indices, 3, "needs_scores = True"),
}


@pytest.mark.parametrize("mistake", DECODER_MISTAKES)
def test_decoder_mistakes_name_the_plugin_in_the_kit_and_the_preflight(mistake):
    call, count, message = DECODER_MISTAKES[mistake]
    cls = _decoder(call, count=lambda self, grid, kept: count)
    with pytest.raises(ContractError, match=NAMED + ".*" + message):
        kit.check_decoder_masking(cls())
    with pytest.raises(ContractError, match=NAMED + ".*" + message):
        kit.preflight_components(_mae(decoder_masking=cls()))


def test_every_step_checks_the_plan_on_the_cpu():
    """Without the preflight, the step's own plan still stops a broken strategy by name."""
    call, count, message = DECODER_MISTAKES["one token 19 times"]
    model = _mae(decoder_masking=_decoder(call, count=lambda self, grid, kept: count)())
    batch = {"video": torch.rand(2, 3, 8, 16, 16)}
    with pytest.raises(ContractError, match=NAMED + ".*" + message):
        model(batch, torch.Generator().manual_seed(0))


ENCODER_MISTAKES = {
    "duplicate indices": (lambda self, grid, b, gen: torch.tensor([[0, 1, 1, 2]] * b), "repeats token 1"),
    "unsorted indices": (lambda self, grid, b, gen: torch.tensor([[3, 1, 2, 0]] * b), "not sorted ascending"),
    "float indices": (lambda self, grid, b, gen: torch.zeros(b, 4), "dtype torch.long"),
    "wrong count": (lambda self, grid, b, gen: torch.arange(5).expand(b, -1), "count\\(\\) declares 4"),
}


@pytest.mark.parametrize("mistake", ENCODER_MISTAKES)
def test_encoder_mistakes_name_the_plugin(mistake):
    call, message = ENCODER_MISTAKES[mistake]
    cls = _encoder(call)
    with pytest.raises(ContractError, match=NAMED + ".*" + message):
        kit.check_encoder_masking(cls())
    with pytest.raises(ContractError, match=NAMED + ".*" + message):
        kit.preflight_components(_mae(encoder_masking=cls()))


@pytest.mark.parametrize("budget, interval", [(1.5, r"\(0, 1\]"), (-0.2, r"\(0, 1\]"), ("0.2", "a number")])
def test_unvalidated_budget_fails_when_the_plugin_is_built(budget, interval):
    @registry.register("masking.decoder.mistake")
    class LazyBudget(DecoderMasking):       # forgets to validate its budget
        def __init__(self, budget: float = 0.15):
            self.budget = budget

        def count(self, grid, kept):
            return min(grid.n - kept, max(1, round(self.budget * grid.n)))

        def __call__(self, grid, enc_keep_idx, generator, scores=None):
            return _masked(grid, enc_keep_idx)[:, :self.count(grid, enc_keep_idx.shape[1])]

    with pytest.raises(ContractError, match=NAMED + f".*LazyBudget.*budget must be .*{interval}"):
        LazyBudget(budget)
    gin.parse_config(f"masking.decoder.mistake.budget = {budget!r}")
    with pytest.raises(ContractError, match=NAMED + ".*LazyBudget"):
        registry.build("masking.decoder.mistake")
    kit.check_decoder_masking(LazyBudget(0.2))                   # a valid budget passes the kit


@pytest.mark.parametrize("ratio", [1.2, -0.1])
def test_ratios_of_any_name_are_validated(ratio):
    @registry.register("masking.encoder.mistake")
    class Ratio(EncoderMasking):
        def __init__(self, keep_ratio=0.5, extra_ratio=0.0):
            self.keep_ratio, self.extra_ratio = keep_ratio, extra_ratio

        def count(self, grid):
            return count_from_ratio(self.keep_ratio, grid.n, "keep_ratio")

        def __call__(self, grid, batch_size, generator):
            return torch.arange(self.count(grid)).expand(batch_size, -1)

    Ratio(0.5, 0.0)
    with pytest.raises(ContractError, match=r"extra_ratio must be a fraction in \[0, 1\]"):
        Ratio(0.5, ratio)


def test_wrong_call_signature_fails_at_registration():
    with pytest.raises(registry.RegistryError, match=r"'masking\.decoder\.mistake' \((tests\.)?test_plugin_contracts\..*"
                       r"BadSig\) __call__\(\) has the signature .*called as __call__\(grid, enc_keep_idx, "
                       r"generator, scores\)"):
        @registry.register("masking.decoder.mistake")
        class BadSig(DecoderMasking):
            def count(self, grid, kept):
                return 1

            def __call__(self, grid, enc_keep_idx):
                return enc_keep_idx


def test_missing_count_fails_at_registration():
    with pytest.raises(registry.RegistryError, match=r"NoCount\) does not implement count\(\)"):
        @registry.register("masking.encoder.mistake")
        class NoCount(EncoderMasking):
            def __call__(self, grid, batch_size, generator):
                return torch.arange(3).expand(batch_size, -1)


def test_decodes_kept_tokens_is_allowed_when_declared_but_needs_a_loss_token():
    kept_only = DECODER_MISTAKES["only encoder-visible tokens"][0]
    cls = _decoder(kept_only)
    cls.decodes_kept_tokens = True
    with pytest.raises(ContractError, match="no loss token"):
        kit.check_decoder_masking(cls())
    cls.__call__ = lambda self, grid, keep, gen, scores=None: torch.cat(
        [keep[:, :2], _masked(grid, keep)[:, :1]], dim=1).sort(dim=1).values
    kit.check_decoder_masking(cls())                     # kept targets, weight 0, one loss token
    keep = registry.build("masking.encoder.tube", keep_ratio=0.25)(GRID, 2, torch.Generator())
    plan = MaskPlan.draw(GRID, registry.build("masking.encoder.tube", keep_ratio=0.25), cls(), 2,
                         torch.Generator())
    assert plan.loss_weight.sum(dim=1).tolist() == [1.0, 1.0] and keep.shape == plan.enc_keep_idx.shape
    derived = MaskPlan(GRID, plan.enc_keep_idx, plan.dec_target_idx).loss_weight   # from the boolean views
    assert torch.equal(plan.loss_weight, derived)


def test_host_checks_on_cpu_in_debug_mode_and_on_devices_otherwise(monkeypatch):
    cpu = torch.zeros(1)
    meta = torch.empty(1, device="meta")
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert host_checks(cpu) and not host_checks(meta)
    monkeypatch.setenv(DEBUG_ENV, "1")
    assert host_checks(meta)


def test_the_preflight_leaves_the_model_and_the_rng_untouched():
    model = _mae(decoder_masking=registry.build("masking.decoder.adaptive"),
                 encoder_masking=registry.build("masking.encoder.tube"))
    model.scorer = registry.build("scorer.random", stride=(2, 4, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scorer_rng = model.scorer.generator.get_state()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    checked = kit.preflight_components(model)
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(model.scorer.generator.get_state(), scorer_rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any("'scorer.random'" in c for c in checked) and any("'masking.decoder.adaptive'" in c for c in checked)


def _base(kind: str) -> type:
    from lvmae.components.data.datasets.base import Dataset
    from lvmae.components.scorers.base import Scorer
    from lvmae.components.targets.base import Target
    from lvmae.components.tokenizers.base import Tokenizer
    from lvmae.components.tokenizers.quantizer import Quantizer
    from lvmae.components.topk.base import TopK
    return {"scorer": Scorer, "target": Target, "tokenizer": Tokenizer, "quantizer": Quantizer,
            "topk": TopK, "dataset": Dataset, "backbone": torch.nn.Module, "decoder": torch.nn.Module,
            "head": torch.nn.Module}[kind]


@pytest.mark.parametrize("kind, method, arity", [
    ("scorer", "forward", 1), ("target", "forward", 3), ("target", "channels", 2),
    ("target", "per_token_loss", 2), ("tokenizer", "encode_continuous", 1), ("tokenizer", "decode", 1),
    ("quantizer", "forward", 1), ("quantizer", "codes_to_indices", 1), ("topk", "forward", 3),
    ("dataset", "prepare", 0), ("backbone", "forward", 2), ("decoder", "forward", 2), ("head", "forward", 1),
])
def test_every_kind_checks_its_call_signatures_at_registration(kind, method, arity):
    """A class of each kind whose ``method`` takes one argument too few (or, for a method
    called without arguments, requires one) fails to register, naming the method and how the
    framework calls it."""
    base = _base(kind)
    namespace = {name: (lambda self, *args: None) for name in getattr(base, "__abstractmethods__", ())}
    params = ", ".join(["self"] + [f"a{i}" for i in range(arity - 1)] if arity else ["self", "extra"])
    exec(f"def short({params}): return None", namespace)         # noqa: S102 - builds the bad method
    namespace[method] = namespace.pop("short")
    namespace["__module__"] = __name__
    bad = type("Bad", (base,), namespace)
    with pytest.raises(registry.RegistryError, match=rf"'{kind}\.bad_signature' .*Bad\) {method}\(\) has the signature"):
        registry.register(f"{kind}.bad_signature")(bad)


BROKEN_PLUGIN = '''
import torch
from lvmae.components.masking.base import DecoderMasking
from lvmae.registry import register


@register("masking.decoder.one_token")
class OneToken(DecoderMasking):
    """Returns the first encoder-masked token 19 times (the mistake)."""

    def count(self, grid, kept):
        return 19

    def __call__(self, grid, enc_keep_idx, generator, scores=None):
        masked = torch.ones(enc_keep_idx.shape[0], grid.n, dtype=torch.bool)
        masked.scatter_(1, enc_keep_idx, False)
        return masked.float().argmax(dim=1, keepdim=True).expand(-1, 19)
'''


def test_run_py_stops_a_broken_plugin_before_the_run_is_recorded(tmp_path):
    import os

    from tests.cli import run_cli
    (tmp_path / "one_token_mask.py").write_text(BROKEN_PLUGIN)
    (tmp_path / "bad.gin").write_text("import one_token_mask\n"
                                      "model.mae.decoder_masking = @masking.decoder.one_token()\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    result = run_cli(["pretrain", "-g", "gin/experiments/tiny_cpu.gin", "-g", str(tmp_path / "bad.gin"),
                      "-b", f"pretrain_loop.workdir = '{tmp_path / 'work'}'"], tmp_path / "runs",
                     env={"PYTHONPATH": path, "LVMAE_OBSERVER": "file"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert ("'masking.decoder.one_token' (one_token_mask.OneToken): dec_target_idx repeats token"
            in result.stderr)
    assert "Nothing was recorded" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("run.json"))
    assert not (tmp_path / "work").exists()


def test_device_mode_checks_queue_asserts_without_reading_values(monkeypatch):
    """Off the host (simulated: host checks off), drawing a plan reads no tensor value on the
    host — no bool()/int()/item(), i.e. no host-device synchronisation — and queues one
    asynchronous assert per value check; a broken strategy's asserts carry False."""
    from lvmae.components.masking import contract
    queued = []
    monkeypatch.setattr(contract, "host_checks", lambda tensor: False)
    monkeypatch.setattr(torch, "_assert_async", lambda ok: queued.append(ok.clone()))

    def no_host_read(*_):
        raise AssertionError("a value was read on the host")
    for method in ("__bool__", "__int__", "__float__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, method, no_host_read)

    tube, adaptive = registry.build("masking.encoder.tube"), registry.build("masking.decoder.adaptive")
    scores = torch.rand(2, GRID.t, GRID.h, GRID.w)
    MaskPlan.draw(GRID, tube, adaptive, 2, torch.Generator().manual_seed(0), scores)
    monkeypatch.undo()
    assert len(queued) == 5 and all(bool(ok) for ok in queued)   # range+order, range+unique, not kept

    call, count, _ = DECODER_MISTAKES["one token 19 times"]
    broken = _decoder(call, count=lambda self, grid, kept: count)()
    queued.clear()
    monkeypatch.setattr(contract, "host_checks", lambda tensor: False)
    monkeypatch.setattr(torch, "_assert_async", lambda ok: queued.append(ok.clone()))
    MaskPlan.draw(GRID, tube, broken, 2, torch.Generator().manual_seed(0))
    monkeypatch.undo()
    assert [bool(ok) for ok in queued] == [True, True, True, False, True]


def _tiny_adaptive_tokenizer(scorer):
    tokenizer = registry.build("tokenizer.magvit", base_channels=8, channel_multipliers=(1, 1), num_res_blocks=1,
                               stride=(2, 4, 4), window_frames=4,
                               quantizer=registry.build("quantizer.fsq", levels=(5, 5, 5)))
    return registry.build("model.adaptive_tokenizer", tokenizer=tokenizer, scorer=scorer,
                          topk=registry.build("topk.straight_through"))


def test_preflight_of_the_tokenizer_model_names_a_scorer_with_the_wrong_grid():
    checked = kit.preflight_components(_tiny_adaptive_tokenizer(registry.build("scorer.motion", stride=(2, 4, 4))),
                                       clip=(8, 16, 16))
    assert [c.split()[0] for c in checked] == ["'tokenizer.magvit'", "'quantizer.fsq'", "'scorer.motion'",
                                               "'topk.straight_through'"]
    from lvmae.components.scorers.base import Scorer, check_stride

    @registry.register("scorer.mistake")
    class SkipsFrameZero(Scorer):          # forgets with_first_frame: one latent frame short
        def __init__(self, stride=(2, 4, 4)):
            super().__init__()
            self.stride = check_stride(stride, "scorer.mistake.stride")

        def forward(self, video):
            pooled = torch.nn.functional.avg_pool3d(video.mean(dim=1, keepdim=True), self.stride)[:, 0]
            return (pooled[:, 1:] - pooled[:, :-1]).abs()

    with pytest.raises(ContractError, match=r"'scorer\.mistake' \(.*SkipsFrameZero\): scores for video "
                                            r"\(1, 3, 8, 16, 16\) must have shape \(1, 4, 4, 4\), got \(1, 3, 4, 4\)"):
        kit.preflight_components(_tiny_adaptive_tokenizer(SkipsFrameZero()), clip=(8, 16, 16))


def test_preflight_of_a_classifier_checks_backbone_token_drop_and_heads():
    encoder = registry.build("backbone.vit", clip_frames=8, image_size=16, tubelet=(2, 4, 4), dim=32, depth=1, heads=2)
    model = registry.build("model.classifier", encoder=encoder, head=registry.get("head.mean_linear").obj,
                           num_classes={"verb": 3, "noun": 5}, token_drop=0.2)
    checked = kit.preflight_components(model)
    assert [c.split()[0] for c in checked] == ["'backbone.vit'", "'masking.encoder.tube'", "'head.mean_linear'",
                                               "'head.mean_linear'"]


def test_clip_generators_check_their_batch_signature():
    with pytest.raises(registry.RegistryError, match=r"'clips\.bad_signature' .*batch\(\) has the signature"):
        @registry.register("clips.bad_signature")
        class Bad:
            def batch(self, batch_size):
                return {}

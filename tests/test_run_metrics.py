"""What a run reports about itself, each figure checked for its meaning: MFU from a known FLOP
count and a fake clock, the data-wait fraction of a slow loader through the real engine, the
effective rank of known matrices, dead features, a collapsed pre-training run flagged and a
healthy one not, the online probe's kNN on separable features, and the run's name."""
from __future__ import annotations

import gin
import pytest
import torch
from torch import nn

from lvmae.experiments.engine import efficiency, gin_config, health, run_folder
from lvmae.experiments.engine.efficiency import EfficiencyMeter, StepWork
from lvmae.experiments.engine.trainer import Settings, Trainer
from lvmae.experiments.tracking.run_name import run_name


class FakeRun:
    def __init__(self, run_id=1):
        self._id, self.info, self.observers, self.logged = run_id, {}, [], []

    def log_scalar(self, name, value, step):
        self.logged.append((name, step, value))

    def add_artifact(self, *args, **kwargs):
        pass

    def series(self, name):
        return [(step, value) for logged, step, value in self.logged if logged == name]


@pytest.fixture(autouse=True)
def clean_gin():
    yield
    run_folder.request_resume(None)
    gin.clear_config()


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_mfu_and_throughput_come_from_the_flop_count_and_the_clock():
    clock = FakeClock()
    meter = EfficiencyMeter(torch.device("cpu"), world_size=2, peak_tflops=50.0, clock=clock)
    for _ in range(4):                                   # 4 steps of 8 clips, 2e12 FLOPs each
        meter.add(StepWork(clips=8, encoder_tokens=80, decoder_tokens=120, flops=2 * 10**12))
        meter.step_done()
    clock.now += 0.5
    out = meter.scalars()
    assert out["eff/tflop_per_s"] == pytest.approx(16.0)            # 8e12 per device / 0.5 s
    assert out["eff/mfu"] == pytest.approx(16.0 / 50.0)
    assert out["eff/step_tflop"] == pytest.approx(4.0)              # 2e12 × 2 ranks
    assert out["eff/clips_per_s"] == pytest.approx(32 * 2 / 0.5)
    assert out["eff/encoder_tokens_per_s"] == pytest.approx(320 * 2 / 0.5)
    assert out["eff/decoder_tokens_per_s"] == pytest.approx(480 * 2 / 0.5)
    clock.now += 1.0                                    # a new interval: nothing done yet
    assert meter.scalars()["eff/clips_per_s"] == 0


def test_no_peak_means_flop_per_s_without_mfu_and_unknown_flops_give_neither():
    clock = FakeClock()
    meter = EfficiencyMeter(torch.device("cpu"), peak_tflops=efficiency.device_peak_tflops(torch.device("cpu")),
                            clock=clock)
    meter.add(StepWork(clips=1, flops=10**12))
    meter.step_done()
    clock.now += 1.0
    out = meter.scalars()
    assert out["eff/tflop_per_s"] == pytest.approx(1.0) and "eff/mfu" not in out
    meter.add(StepWork(clips=1))
    meter.step_done()
    clock.now += 1.0
    assert "eff/tflop_per_s" not in meter.scalars()


def test_device_peaks_by_name_and_the_gin_override():
    assert efficiency.peak_for_name("NVIDIA H100 80GB HBM3") == pytest.approx(989.4)
    assert efficiency.peak_for_name("NVIDIA H100 PCIe") == pytest.approx(756.0)
    assert efficiency.peak_for_name("NVIDIA L4") == pytest.approx(121.0)
    assert efficiency.peak_for_name("NVIDIA L40S") == pytest.approx(362.0)
    assert efficiency.peak_for_name("NVIDIA A100-SXM4-80GB") == pytest.approx(312.0)
    assert efficiency.peak_for_name("Some Future GPU") is None
    gin_config.parse([], ["device_peak.tflops = 123.0"])
    assert efficiency.device_peak_tflops(torch.device("cpu")) == pytest.approx(123.0)


def test_data_wait_fraction_of_a_slow_loader_through_the_engine(tmp_path):
    """The loader takes 3 s per batch and the step 1 s on the engine's clock: 3/4 waiting."""
    clock = FakeClock()

    class SlowLoader:
        def __iter__(self):
            return self

        def __next__(self):
            clock.now += 3.0
            return {"video": torch.randn(2, 3)}

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    run = FakeRun()
    trainer = Trainer(run, 0, command="pretrain", stage="pretrain", workdir=str(tmp_path),
                      settings=Settings("pretrain_loop", 6, log_every=3, checkpoint_minutes=0.0,
                                        save_checkpoints=False), batch_size=2, device="cpu", clock=clock)
    trainer.prepare(nn.Linear(3, 1), lambda module: torch.optim.SGD(module.parameters(), lr=0.01))

    def step(batch, index):
        clock.now += 1.0
        return {"loss": trainer.forward(batch["video"]).pow(2).mean()}, None

    trainer.fit(step, trainer.data(SlowLoader()))
    waits = run.series("eff/data_wait_fraction")
    assert [s for s, _ in waits] == [1, 3, 6]
    assert all(v == pytest.approx(0.75) for _, v in waits), waits
    assert all(v == pytest.approx(2 / 4.0) for _, v in run.series("eff/clips_per_s"))   # 2 clips per 4 s


def test_effective_rank_of_known_matrices():
    u, v = torch.randn(64, 1), torch.randn(1, 16)
    assert health.effective_rank(u @ v) == pytest.approx(1.0, abs=1e-4)     # rank 1 (float32 rounding)
    assert health.effective_rank(torch.eye(16) * 3.0) == pytest.approx(16.0)             # equal σ
    two = torch.zeros(32, 8)
    two[:16, 0], two[16:, 1] = 1.0, 1.0
    assert health.effective_rank(two) == pytest.approx(2.0)
    figures = health.feature_statistics(u @ v)
    assert figures["health/effective_rank_fraction"] == pytest.approx(1 / 16, abs=1e-5)


def test_dead_features_and_a_constant_batch_are_collapse():
    rows = torch.randn(256, 10)
    rows[:, :6] = 2.0                                                  # 6 of 10 dimensions constant
    figures = health.feature_statistics(rows)
    assert figures["health/dead_fraction"] == pytest.approx(0.6)
    assert any("constant" in r for r in health.collapse_reasons(figures))
    same = health.feature_statistics(torch.randn(1, 12).expand(100, 12).clone())
    assert same["health/feature_std"] < 1e-6 and same["health/effective_rank"] == pytest.approx(1.0)
    assert len(health.collapse_reasons(same)) == 3
    assert health.collapse_reasons(health.feature_statistics(torch.randn(256, 12))) == []


def _pretrain(tmp_path, lr: float) -> FakeRun:
    from lvmae.experiments.commands import pretrain
    bindings = ["CLIP_FRAMES = 4", "IMAGE_SIZE = 16", f"WORKDIR = '{tmp_path / f'work{lr:g}'}'",
                f"dataset.synthetic_motion.root = '{tmp_path / 'data'}'", "dataset.synthetic_motion.square = 4",
                "dataset.synthetic_motion.train_samples = 32", "dataset.synthetic_motion.val_samples = 8",
                "dataset.synthetic_motion.samples_per_shard = 16", "pretrain_loop.batch_size = 8",
                "pretrain_loop.steps = 12", "pretrain_loop.log_every = 4", "pretrain_loop.warmup_steps = 1",
                f"pretrain_loop.lr = {lr}", "pretrain_loop.device = 'cpu'", "pretrain_loop.shuffle_buffer = 4",
                "representation_health.every = 4"]
    gin_config.parse(["gin/experiments/tiny_cpu.gin"], bindings)
    run = FakeRun()
    run.model = pretrain.pretrain_loop(run, 0)["model"]
    gin.clear_config()
    return run


def test_a_collapsed_pretraining_run_is_flagged_and_a_healthy_one_is_not(tmp_path, capsys):
    healthy = _pretrain(tmp_path, 1e-3)
    assert healthy.info["health"]["collapsed"] is False, healthy.info["health"]
    assert "looks collapsed" not in capsys.readouterr().out
    collapsed = _pretrain(tmp_path, 1.0)                 # a learning rate 1000× too high
    flag = collapsed.info["health"]
    assert flag["collapsed"] is True and flag["reasons"], flag
    assert "looks collapsed" in capsys.readouterr().out
    assert collapsed.series("health/effective_rank")[-1][1] < healthy.series("health/effective_rank")[-1][1]
    # health is measured on logging steps only, every 4 steps here; efficiency on every logging step
    assert [s for s, _ in healthy.series("health/feature_std")] == [1, 4, 8, 12]
    assert {"eff/mfu", "eff/tflop_per_s"} & {n for n, _, _ in healthy.logged}
    assert healthy.series("health/target_std")[0][1] == pytest.approx(1.0, abs=0.05)    # norm-pix target
    # the step's FLOPs are the planner's: memory_model.step_shape of the same model and mask counts
    from lvmae.experiments.engine.memory_model import step_shape
    model = healthy.model
    plan = model.plan(1, torch.Generator().manual_seed(0))
    planned = step_shape(model, plan.enc_keep_idx.shape[1], plan.dec_target_idx.shape[1]).step_flops
    assert all(v == pytest.approx(8 * planned / 1e12) for _, v in healthy.series("eff/step_tflop"))


def test_the_online_probe_knn_separates_what_the_encoder_separates():
    from lvmae.experiments.engine import online_probe
    from lvmae.experiments.engine.feature_cache import FeatureSet

    def features(count, seed):
        generator = torch.Generator().manual_seed(seed)
        labels = torch.arange(count) % 2
        centres = torch.tensor([[4.0, 0.0], [0.0, 4.0]])[labels]
        rows = centres + torch.randn(count, 2, generator=generator)
        return FeatureSet(rows[:, None, None, :], {"label": labels}, [str(i) for i in range(count)])

    probe = online_probe.OnlineProbe(every=10)
    probe.manifest, probe.classes, probe.k = object(), {"label": 2}, 5
    probe.features = lambda split, clips: features(40, 0 if split == "train" else 1)
    assert probe(10) == {"probe/knn_top1": pytest.approx(1.0)}
    assert probe.next_step == 20 and not probe.due(15) and probe.due(20)


def test_runs_are_named_by_command_and_experiment():
    config = {"gin": {"files": ["gin/experiments/lvmae_cpu.gin"], "macros": {"EXPERIMENT": "lvmae_cpu"}}}
    assert run_name("pretrain", config) == "pretrain · lvmae_cpu"
    assert run_name("finetune", {"gin": {"files": ["a/my_setup.gin"], "macros": {}}}) == "finetune · my_setup"
    assert run_name("tracking_check", {"gin": {"files": []}}) == "tracking_check"


def test_a_model_without_a_flop_model_is_counted_on_a_meta_copy():
    conv = torch.nn.Conv3d(3, 8, kernel_size=3, padding=1)
    # 2 FLOPs per multiply-add: every output element (8 channels × 4 × 8 × 8) sums 3 × 27 products.
    assert efficiency.counted_forward_flops(conv, (3, 4, 8, 8)) == 2 * (8 * 4 * 8 * 8) * (3 * 27)
    assert conv.weight.device.type == "cpu"              # the model itself is untouched

    work = efficiency.counted_work(conv, lambda outputs: (16, 16))
    step = work({"video": torch.zeros(5, 3, 4, 8, 8)}, None)
    assert step.flops == 5 * efficiency.TRAINING_PASSES * 2 * (8 * 4 * 8 * 8) * (3 * 27) and step.encoder_tokens == 80

    class HostOnly(torch.nn.Module):                      # reads a value: cannot run on the meta device
        def forward(self, video):
            return video.sum().item()
    assert efficiency.counted_work(HostOnly(), lambda outputs: (1, 1))({"video": torch.zeros(2, 3, 4, 8, 8)}, None).flops is None

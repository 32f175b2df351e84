"""The training engine on a toy regression: run folders, explicit resume and its refusals,
wall-time / step checkpoint cadence, the last two checkpoints, the NaN guard, resume equal to
an uninterrupted run, no host synchronisation outside logging steps, and the device choice."""
from __future__ import annotations

import os

import gin
import pytest
import torch
from torch import nn

from lvmae.experiments.commands import pretrain  # noqa: F401  (registers pretrain_loop with gin)
from lvmae.experiments.engine import checkpoints, gin_config, run_folder
from lvmae.experiments.engine import trainer as engine
from lvmae.experiments.engine.checkpoints import ResumeRefused
from lvmae.experiments.engine.trainer import CountedBatches, Settings, Trainer

FEATURES = 3


class FakeRun:
    """What the engine uses of a Sacred run."""

    def __init__(self, run_id):
        self._id, self.info, self.observers, self.logged = run_id, {}, [], []

    def log_scalar(self, name, value, step):
        self.logged.append((name, step, value))


class Crash(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def clean_state():
    gin_config.parse([], ["pretrain_loop.lr = 0.1", "pretrain_loop.steps = 6"])
    yield
    run_folder.request_resume(None)
    gin.clear_config()


def _batches(seed: int):
    def make(skip: int):
        generator = torch.Generator().manual_seed(seed)
        index = 0
        while True:
            x = torch.randn(4, FEATURES, generator=generator)
            if index >= skip:
                yield {"x": x, "y": x.sum(dim=1, keepdim=True)}
            index += 1
    return CountedBatches(make)


def _fit(workdir, run=None, seed: int = 0, steps: int = 6, crash_after: int = 0, clock=None,
         loss_at=None, **settings) -> Trainer:
    options = {"log_every": 1, "checkpoint_every": 2, "checkpoint_minutes": 0.0, **settings}
    trainer = Trainer(run, seed, command="pretrain", stage="pretrain", workdir=str(workdir),
                      settings=Settings("pretrain_loop", steps, **options), batch_size=4, device="cpu",
                      **({"clock": clock} if clock else {}))
    torch.manual_seed(123)
    model = nn.Linear(FEATURES, 1)
    trainer.prepare(model, lambda module: torch.optim.AdamW(module.parameters(), lr=0.1))
    batches = trainer.data(_batches(seed))

    def step(batch, index):
        loss = (trainer.forward(batch["x"]) - batch["y"]).pow(2).mean()
        if loss_at is not None:
            loss = loss_at(index, loss)
        return {"loss": loss}, None

    def after(index, batch, losses, outputs):
        if index == crash_after:
            raise Crash(index)

    trainer.result = trainer.fit(step, batches, after)
    return trainer


def test_two_runs_in_one_workdir_get_their_own_folders(tmp_path):
    first, second = _fit(tmp_path, FakeRun(1)), _fit(tmp_path, FakeRun(2))
    assert first.folder != second.folder and first.folder.endswith(os.path.join("pretrain", "1"))
    unobserved = [_fit(tmp_path) for _ in range(2)]
    assert unobserved[0].folder != unobserved[1].folder
    assert os.path.basename(unobserved[0].folder).startswith("u")
    # the stage's last.pt is the newest completed run's final checkpoint
    published = torch.load(tmp_path / "pretrain" / "last.pt", weights_only=True)
    assert published["run_id"] == unobserved[1].run_id and published["step"] == 6


def test_runs_of_two_stores_with_the_same_id_get_their_own_folders(tmp_path, monkeypatch):
    """Another run store (file store, another LVMAE_RUNS_DIR, a new database) numbers its runs
    from 1 again: the second run 1 trains in a folder of its own, and ``run:1`` is the run the
    current store recorded (issue: ResumeRefused inside a FAILED run)."""
    first = _fit(tmp_path, FakeRun(1))
    second = _fit(tmp_path, FakeRun(1))
    assert first.folder.endswith(os.path.join("pretrain", "1"))
    assert os.path.basename(second.folder).startswith("1-")
    assert torch.load(os.path.join(second.folder, "last.pt"), weights_only=True)["step"] == 6
    with pytest.raises(FileNotFoundError, match="2 folders of 'pretrain' belong to a run 1"):
        run_folder.resolve_input("run:1", str(tmp_path), "pretrain", "finetune_loop.pretrained")
    monkeypatch.setattr(run_folder, "recorded_folder", lambda run_id: os.path.basename(second.folder))  # the store
    assert run_folder.resolve_input("run:1", str(tmp_path), "pretrain", "p") == os.path.join(second.folder, "last.pt")
    # resume continues the folder the run recorded
    run_folder.request_resume(1, second.folder)
    resumed = _fit(tmp_path, FakeRun(1), steps=8)
    assert resumed.folder == second.folder and resumed.start_step == 6


def test_resume_refuses_a_changed_binding_and_names_it(tmp_path):
    with pytest.raises(Crash):
        _fit(tmp_path, FakeRun(1), crash_after=3)
    gin_config.parse([], ["pretrain_loop.lr = 0.2", "pretrain_loop.steps = 8"])
    run_folder.request_resume(1)
    with pytest.raises(ResumeRefused, match=r"experiments\.pretrain_loop\.lr: 0\.1 → 0\.2") as refused:
        _fit(tmp_path, FakeRun(1))
    assert "steps" not in str(refused.value).split("may change")[1]     # allowed: not listed as a difference
    gin_config.parse([], ["pretrain_loop.lr = 0.1", "pretrain_loop.steps = 8"])   # only steps changed
    resumed = _fit(tmp_path, FakeRun(1), steps=8)
    assert resumed.start_step == 2 and resumed.result["resumed_from"] == 2


def test_resume_refuses_another_seed_and_never_replaces_it(tmp_path):
    with pytest.raises(Crash):
        _fit(tmp_path, FakeRun(1), seed=1, crash_after=3)
    run_folder.request_resume(1)
    with pytest.raises(ResumeRefused, match="seed 1, this run has seed 2.*with seed=1"):
        _fit(tmp_path, FakeRun(1), seed=2)


def test_resume_refuses_another_batch_layout(tmp_path):
    state = {"format": checkpoints.FORMAT, "version": checkpoints.FORMAT_VERSION, "command": "pretrain",
             "seed": 0, "world_size": 2, "batch_size": 4, "accum_steps": 1, "bindings": {}}
    layout = {"world_size": 2, "batch_size": 4, "accum_steps": 2}
    with pytest.raises(ResumeRefused, match="accum_steps"):
        checkpoints.check_resumable(state, "last.pt", command="pretrain", loop="pretrain_loop", seed=0,
                                    layout=layout, bindings={})


def test_bindings_of_other_commands_do_not_block_a_resume():
    saved = {"experiments.finetune_loop.lr": 0.1, "experiments.pretrain_loop.lr": 0.1}
    now = {"experiments.finetune_loop.lr": 0.5, "experiments.pretrain_loop.lr": 0.1}
    assert checkpoints.config_differences(saved, now, "pretrain_loop") == []
    assert checkpoints.config_differences(saved, now, "finetune_loop") == ["experiments.finetune_loop.lr: 0.1 → 0.5"]


def test_resumed_run_equals_the_uninterrupted_one(tmp_path):
    straight = _fit(tmp_path / "a", FakeRun(1))
    with pytest.raises(Crash):
        _fit(tmp_path / "b", FakeRun(1), crash_after=5)     # last checkpoint: step 4
    run_folder.request_resume(1)
    resumed = _fit(tmp_path / "b", FakeRun(1))
    assert resumed.start_step == 4
    a = torch.load(os.path.join(straight.folder, "last.pt"), weights_only=True)
    b = torch.load(os.path.join(resumed.folder, "last.pt"), weights_only=True)
    assert a["micro_batches"] == b["micro_batches"] == 6
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["optimizer"]["state"][0]["exp_avg"].equal(b["optimizer"]["state"][0]["exp_avg"])


def test_checkpoints_follow_the_wall_clock_and_keep_the_last_two(tmp_path):
    now = [0.0]
    minutes_per_step = 4

    def advance(index, loss):
        now[0] += minutes_per_step * 60
        return loss

    trainer = _fit(tmp_path, FakeRun(1), steps=10, clock=lambda: now[0], loss_at=advance,
                   checkpoint_every=0, checkpoint_minutes=10.0)
    assert trainer.saved_steps == [3, 6, 9, 10]                 # every ≥ 10 minutes, and at the end
    assert sorted(os.listdir(trainer.folder)) == ["last.pt", "previous.pt"]
    assert torch.load(os.path.join(trainer.folder, "previous.pt"), weights_only=True)["step"] == 9
    by_steps = _fit(tmp_path, FakeRun(2), steps=10, checkpoint_every=4)
    assert by_steps.saved_steps == [4, 8, 10]


def test_a_lost_last_checkpoint_falls_back_to_the_previous_one(tmp_path):
    trainer = _fit(tmp_path, FakeRun(1))
    with open(os.path.join(trainer.folder, "last.pt"), "wb") as handle:
        handle.write(b"truncated")
    state, path = checkpoints.load_latest(trainer.folder)
    assert path.endswith("previous.pt") and state["step"] == 4


def test_nan_guard_keeps_the_last_good_checkpoint(tmp_path):
    poison = lambda index, loss: loss * float("nan") if index == 5 else loss
    with pytest.raises(FloatingPointError, match="at or before step 6.*last good checkpoint"):
        _fit(tmp_path, FakeRun(1), loss_at=poison, log_every=1000)   # read at the checkpoint of step 6
    state, _ = checkpoints.load_latest(os.path.join(tmp_path, "pretrain", "1"))
    assert state["step"] == 4


def test_the_last_step_is_logged_so_the_final_values_are_the_last_steps(tmp_path):
    """With ``steps`` not a multiple of ``log_every`` the final point of every series (what
    the run prints as its final loss and what ``report`` reads) is the last step's."""
    run = FakeRun(1)
    result = _fit(tmp_path, run, steps=7, log_every=3, checkpoint_every=0).result
    steps = [step for name, step, _ in run.logged if name == "train/loss"]
    assert steps == [1, 3, 6, 7]
    last = [value for name, step, value in run.logged if name == "train/loss" and step == 7]
    assert result["final_loss"] == pytest.approx(last[0])


def test_the_step_reads_no_scalar_outside_logging_steps(tmp_path, monkeypatch):
    """Converting a tensor to a Python number (or truth value) is a host-device sync on a
    GPU: the engine may do it only on logging and checkpoint steps."""
    current, reads = {"step": 0}, []

    def watch(index, loss):
        current["step"] = index
        return loss

    for name in ("item", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _original=original, **kwargs):
            if self.requires_grad or self.dim() == 0 and self.dtype == torch.bool:
                reads.append(current["step"])
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, spy)
    _fit(tmp_path, FakeRun(1), steps=7, loss_at=watch, log_every=3, checkpoint_every=0)
    # logging steps 1, 3, 6; the final checkpoint at 7
    assert reads and set(reads) <= {1, 3, 6, 7}


def test_auto_device_is_the_gpu_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert engine.choose_device("auto") == torch.device("cuda", 1)
    assert engine.choose_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be"):
        engine.choose_device("tpu")
    assert engine.uses_bf16("auto", torch.device("cuda", 0)) and not engine.uses_bf16("auto", torch.device("cpu"))


def test_batches_and_nested_labels_go_to_the_device():
    batch = {"video": torch.zeros(1), "labels": {"verb": torch.zeros(1)}, "key": ["a"]}
    moved = engine.to_device(batch, torch.device("meta"))
    assert moved["video"].is_meta and moved["labels"]["verb"].is_meta and moved["key"] == ["a"]


def test_inference_moves_the_model_and_batches_to_the_device():
    model = nn.Linear(2, 1)
    seen = [batch["x"].device for batch in engine.inference(model, [{"x": torch.zeros(1, 2)}], torch.device("meta"))]
    assert seen == [torch.device("meta")] and next(model.parameters()).is_meta and model.training


ENGINE_DEVICE = torch.device("cpu", 0)     # a device the engine chose: distinct from a default "cpu"


@pytest.mark.slow
def test_finetune_evaluate_and_probe_run_on_the_engine_device(tmp_path, monkeypatch):
    """Every batch and model of finetune, evaluate and probe goes to the device the engine
    chose (here ``cpu:0``, standing in for a GPU): none stays on a hard-coded CPU default."""
    from lvmae.experiments.commands import evaluate, finetune, probe
    from lvmae.experiments.engine.training import Distributed
    batch_devices, model_devices = [], []
    original_to_device, original_module_to = engine.to_device, nn.Module.to

    def spy_to_device(batch, device):
        batch_devices.append(torch.device(device))
        return original_to_device(batch, device)

    def spy_module_to(self, *args, **kwargs):
        if args and isinstance(args[0], (torch.device, str)):
            model_devices.append(torch.device(args[0]))
        return original_module_to(self, *args, **kwargs)

    monkeypatch.setattr(engine, "setup_distributed", lambda device: Distributed(device=ENGINE_DEVICE))
    monkeypatch.setattr(engine, "choose_device", lambda device="auto": ENGINE_DEVICE)
    monkeypatch.setattr(evaluate, "choose_device", lambda device="auto": ENGINE_DEVICE)
    monkeypatch.setattr(engine, "to_device", spy_to_device)
    monkeypatch.setattr(nn.Module, "to", spy_module_to)
    gin_config.parse(["gin/experiments/tiny_cpu.gin"], [
        "CLIP_FRAMES = 4", "IMAGE_SIZE = 16", f"WORKDIR = '{tmp_path / 'work'}'",
        f"dataset.synthetic_motion.root = '{tmp_path / 'data'}'", "dataset.synthetic_motion.square = 4",
        "dataset.synthetic_motion.train_samples = 8", "dataset.synthetic_motion.val_samples = 4",
        "dataset.synthetic_motion.samples_per_shard = 8", "data_pipeline.workers = 0",
        "finetune_loop.pretrained = None", "finetune_loop.steps = 1", "finetune_loop.batch_size = 4",
        "probe_loop.pretrained = None", "probe_loop.steps = 1", "probe_loop.feature_batch_size = 4"])
    tuned = finetune.finetune_loop(None, 0)
    evaluate.evaluate_loop(None, checkpoint=tuned["checkpoint"])
    probe.probe_loop(None, 0)
    assert len(batch_devices) >= 3 and set(batch_devices) == {ENGINE_DEVICE}
    assert model_devices and set(model_devices) == {ENGINE_DEVICE}

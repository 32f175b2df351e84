"""The training engine every command that trains or predicts runs on.

A command keeps what is its own — its model, its loss (a ``step`` function), its metrics and
pictures (an ``after_step`` hook) — and hands the rest to :class:`Trainer`: the device (GPU
when there is one), precision (bf16 autocast on GPU), DDP / FSDP2 under ``torchrun``,
gradient accumulation, clipping, the warm-up + cosine schedule, the run folder, checkpoints
(by wall time and/or steps, atomic, the last two kept; layout in ``checkpoints``), explicit
resume with the config check, scalar logging with a progress bar, and the NaN guard.

The step never synchronises host and device outside logging steps: losses stay tensors, the
NaN guard accumulates a device flag that is read when the logger is due and before each
checkpoint (so a non-finite loss is never saved over the last good checkpoint).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, get_args

import torch
import torch.distributed as dist
from torch import nn

from lvmae.components.data.reading.loader import to_device
from lvmae.components.data.reading.pipeline import DataPipeline, PipelineLoader, merge_states, record_skips
from lvmae.experiments.engine import checkpoints, run_folder
from lvmae.experiments.engine.efficiency import EfficiencyMeter, StepWork, device_peak_tflops
from lvmae.experiments.engine.parallel import Parallel, full_state, load_full_state, wrap_model
from lvmae.experiments.engine.run_stopped import NonFiniteValue, RunStopped
from lvmae.experiments.engine.training import (
    Distributed,
    ScalarLogger,
    gather_objects,
    mean_across_ranks,
    rng_state,
    set_rng_state,
    setup_distributed,
    unwrap,
    warmup_cosine,
)
from lvmae.registry import ContractError

Precision = Literal["auto", "fp32", "bf16"]
# Exit status of a deliberate crash (``exit_after_step``): what a SIGKILL-ed process returns.
CRASH_STATUS = 137
SECONDS_PER_MINUTE = 60.0


@dataclasses.dataclass(frozen=True)
class Settings:
    """How a command trains; ``loop`` is its gin name, used in error messages."""

    loop: str
    steps: int
    accum_steps: int = 1
    clip_grad: float | None = 1.0
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    log_every: int = 10
    checkpoint_every: int = 0            # steps between checkpoints; 0: not by steps
    checkpoint_minutes: float = 10.0     # wall-clock minutes between checkpoints; 0: not by time
    precision: Precision = "auto"
    exit_after_step: int = 0             # crash-test hook: die (status 137) right after this step
    save_checkpoints: bool = True        # False: no checkpoint at all (a command cheap to rerun)

    def __post_init__(self):
        if self.steps < 1 or self.accum_steps < 1:
            raise ValueError(f"{self.loop}.steps and {self.loop}.accum_steps must be ≥ 1, got "
                             f"{self.steps} and {self.accum_steps}")
        if self.precision not in get_args(Precision):
            raise ValueError(f"{self.loop}.precision must be one of {get_args(Precision)}, got {self.precision!r}")
        if self.checkpoint_every < 0 or self.checkpoint_minutes < 0:
            raise ValueError(f"{self.loop}.checkpoint_every and {self.loop}.checkpoint_minutes must be ≥ 0")
        if self.log_every < 1:
            raise ValueError(f"{self.loop}.log_every must be ≥ 1, got {self.log_every}")


# ---------------------------------------------------------------- device helpers

def choose_device(device: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one (this process's under torchrun), else the CPU."""
    if device not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def uses_bf16(precision: Precision, device: torch.device) -> bool:
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on ``device``, or nothing (fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


@torch.no_grad()
def inference(model: nn.Module, batches: Iterable[dict], device: str | torch.device = "auto",
              precision: Precision = "auto") -> Iterator[dict]:
    """Moves ``model`` to the device and yields each batch there, in eval mode, under the
    precision's autocast (the caller runs the forward inside the loop)."""
    device = choose_device(device) if isinstance(device, str) else device
    model.to(device)
    was_training = model.training
    model.eval()
    try:
        with autocast(device, uses_bf16(precision, device)):
            for batch in batches:
                yield to_device(batch, device)
    finally:
        model.train(was_training)


# ---------------------------------------------------------------- data position

class GeneratedBatches:
    """Endless batches ``draw(generator)`` (a procedural clip set, random rows of cached
    features); the data position is the generator's state."""

    def __init__(self, draw: Callable[[torch.Generator], dict], generator: torch.Generator):
        self.draw, self.generator = draw, generator

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return self.draw(self.generator)


class CountedBatches:
    """A deterministic batch stream whose position is the number of batches consumed:
    resuming rebuilds the stream and skips what the interrupted run read."""

    def __init__(self, make: Callable[[int], Iterator[dict]]):
        self.make = make                 # make(skip) → the stream from batch ``skip`` on
        self.consumed = 0
        self._stream: Iterator[dict] | None = None

    def state_dict(self) -> dict:
        return {"micro_batches": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self.consumed, self._stream = int(state["micro_batches"]), None

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._stream is None:
            self._stream = self.make(self.consumed)
        batch = next(self._stream)
        self.consumed += 1
        return batch


def _batches_read(data: dict | None) -> int | None:
    """Batches the data source has delivered (CountedBatches' or the pipeline loader's count)."""
    if not data:
        return None
    return data.get("micro_batches", data.get("batches"))


def input_size(encoder: nn.Module) -> tuple[int, int]:
    """(frames, side) ``encoder`` takes: its token grid times its tubelet."""
    tubelet = getattr(encoder, "tubelet", None)
    if tubelet is None:
        raise ValueError(f"{type(encoder).__name__} has no `tubelet`; its input size is unknown")
    return encoder.grid.t * tubelet[0], encoder.grid.h * tubelet[1]


def check_input_size(pipeline, encoder: nn.Module, loop: str) -> None:
    """The pipeline's clips must be what the model takes (before any step runs)."""
    frames, side = input_size(encoder)
    if (pipeline.clip_frames, pipeline.size) != (frames, side):
        raise ValueError(f"{loop}: the model takes clips of {frames} frames at {side}², the data pipeline "
                         f"gives {pipeline.clip_frames} frames at {pipeline.size}²; bind data_pipeline.clip_frames "
                         f"and data_pipeline.size (gin/data/pipeline.gin does it from CLIP_FRAMES and IMAGE_SIZE)")


def eval_loader(pipeline, manifest, split: str, batch_size: int, frames: int, side: int,
                temporal_views: int | None = None, spatial_views: int | None = None,
                device: torch.device | None = None):
    """One pass over ``split`` through the data pipeline's evaluation views at the model's
    input size (``frames`` × ``side``²): the gin-bound ``data_pipeline`` with those sizes, or
    ``pipeline`` when given (its sizes must match). A batch holds ``views`` consecutive rows
    per clip."""
    views = {k: v for k, v in (("temporal_views", temporal_views), ("spatial_views", spatial_views)) if v}
    if pipeline is None:
        pipeline = DataPipeline(clip_frames=frames, size=side, **views)
    else:
        if (pipeline.clip_frames, pipeline.size) != (frames, side):
            raise ValueError(f"the model takes {frames} frames of {side}², the evaluation pipeline gives "
                             f"{pipeline.clip_frames} of {pipeline.size}² (data_pipeline.clip_frames / .size)")
        pipeline = copy.copy(pipeline)
        for name, value in views.items():
            setattr(pipeline, name, value)
    return pipeline.loader(manifest, split, mode="eval", batch_size=batch_size, device=device)


def _clips_in(batch: dict) -> int:
    """Clips in a batch: the leading size of its ``video`` (else of its first tensor)."""
    tensor = batch.get("video")
    if tensor is None:
        tensor = next((v for v in batch.values() if torch.is_tensor(v)), None)
    return int(tensor.shape[0]) if tensor is not None else 0


def _state_of(obj):
    return obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()


def _restore(obj, state) -> None:
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    else:
        obj.load_state_dict(state)


# ---------------------------------------------------------------- the engine

StepFunction = Callable[[dict, int], tuple[dict[str, torch.Tensor], object]]
# (batch, outputs) → what a micro-batch processed (host counts from shapes, for eff/ metrics)
WorkFunction = Callable[[dict, object], StepWork]
AfterStep = Callable[[int, dict, dict[str, torch.Tensor], object], dict[str, torch.Tensor] | None]


class Trainer:
    """One run of one command: its folder, device, model, optimizer, schedule and checkpoints.

    Use: ``trainer = Trainer(...)``; initialise weights only ``if not trainer.resuming``;
    ``trainer.prepare(model, optimizer_factory, tracked=...)``; ``trainer.fit(step, data)``.
    """

    def __init__(self, run, seed: int, *, command: str, stage: str, workdir: str, settings: Settings,
                 batch_size: int, device: str = "auto", parallel: Parallel = "ddp",
                 compile: bool = False, deterministic: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        if parallel not in get_args(Parallel):
            raise ValueError(f"{settings.loop}.parallel must be one of {get_args(Parallel)}, got {parallel!r}")
        if deterministic:
            torch.use_deterministic_algorithms(True)
        self.settings, self.command, self.seed, self.workdir, self.stage = settings, command, seed, workdir, stage
        self.parallel, self.compile, self.clock = parallel, compile, clock
        self.info: Distributed = setup_distributed(device)
        self.device = self.info.device
        self.run = run if self.info.is_main else None
        self.bf16 = uses_bf16(settings.precision, self.device)
        self.layout = {"world_size": self.info.world_size, "batch_size": batch_size,
                       "accum_steps": settings.accum_steps}
        self.run_id = self._shared(run_folder.run_id_of(run))
        self.folder = self._shared(self._own_folder())
        torch.manual_seed(seed + self.info.rank)
        self.state, self.checkpoint_path = self._resume_state()
        self.start_step = int(self.state["step"]) if self.state else 0
        self.saved_steps: list[int] = []
        self.model = self.wrapped = self.forward = self.optimizer = self.scheduler = None
        self.tracked: dict[str, object] = {}
        self.logger: ScalarLogger | None = None
        # Called on logging steps only: monitor.due(step) → monitor(step, batch) gives scalars
        # (representation health, the online probe); they may read the device there.
        self.monitors: list = []

    @property
    def resuming(self) -> bool:
        return self.state is not None

    @property
    def effective_batch(self) -> int:
        return self.layout["batch_size"] * self.settings.accum_steps * self.info.world_size

    def _shared(self, value: str) -> str:
        """Rank 0's value on every rank (the run id: only rank 0 records the run)."""
        if not self.info.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _own_folder(self) -> str:
        """The folder ``--resume-run`` continues (the one the run recorded), or a fresh one that
        no other run has (claimed on rank 0)."""
        if run_folder.requested_resume() == self.run_id:
            return run_folder.run_folder(self.workdir, self.stage, run_folder.requested_folder() or self.run_id)
        if not self.info.is_main:
            return ""           # rank 0's folder is broadcast
        return run_folder.claim_folder(self.workdir, self.stage, self.run_id)

    def _resume_state(self) -> tuple[dict | None, str]:
        found = checkpoints.load_latest(self.folder)
        path = os.path.join(self.folder, run_folder.CHECKPOINT_NAME)
        if found is None:
            if run_folder.requested_resume() is not None:
                print(f"run {self.run_id} left no checkpoint in {self.folder}: starting it from step 0")
            return None, path
        state, path = found
        if run_folder.requested_resume() != self.run_id:
            raise checkpoints.ResumeRefused(
                f"{self.folder} already holds a checkpoint (run {state.get('run_id')}, step {state.get('step')}) "
                f"and this run was not asked to resume it: pass --resume-run {self.run_id} to continue it, "
                "or use another WORKDIR (a new database reuses run ids)")
        checkpoints.check_resumable(state, path, command=self.command, loop=self.settings.loop, seed=self.seed,
                                    layout=self.layout, bindings=checkpoints.flat_bindings())
        return state, path

    # ------------------------------------------------------------ set-up

    def prepare(self, model: nn.Module, optimizer: Callable[[nn.Module], torch.optim.Optimizer],
                tracked: dict[str, object] | None = None, lr_group: int = 0) -> nn.Module:
        """Moves ``model`` to the device, wraps it (DDP / FSDP2), builds its optimizer and the
        warm-up + cosine schedule, and restores them (and ``tracked``: generators, modules,
        optimizers the command owns) from the checkpoint when resuming. Returns the wrapped
        model; ``lr_group`` is the parameter group whose learning rate is logged."""
        settings = self.settings
        self.model = model.to(self.device)
        self.wrapped = wrap_model(self.model, self.info, self.parallel)
        self.optimizer = optimizer(self.wrapped)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(settings.steps, settings.warmup_steps, settings.min_lr_ratio))
        self.tracked, self.lr_group = dict(tracked or {}), lr_group
        if self.state is not None:
            load_full_state(self.wrapped, self.optimizer, self.state["model"], self.state["optimizer"],
                            self.info, self.parallel)
            self.scheduler.load_state_dict(self.state["scheduler"])
            missing = sorted(set(self.tracked) - set(self.state.get("tracked", {})))
            if missing:
                raise checkpoints.ResumeRefused(f"cannot resume {self.checkpoint_path!r}: it holds no {missing}")
            for name, obj in self.tracked.items():
                _restore(obj, self.state["tracked"][name])
            set_rng_state(self.state["rng"][self.info.rank])
            self._note_resume()
        self.forward = torch.compile(self.wrapped) if self.compile else self.wrapped
        self.logger = ScalarLogger(self.run, settings.steps, settings.log_every, self.command,
                                   initial=self.start_step, show=self.info.is_main)
        if self.run is not None:
            self.run.info.update({
                "run_folder": self.folder, "effective_batch_size": self.effective_batch,
                "world_size": self.info.world_size, "accum_steps": settings.accum_steps,
                "parallel": self.parallel if self.info.enabled else "none",
                "precision": "bf16" if self.bf16 else "fp32", "device": str(self.device)})
        return self.wrapped

    def _note_resume(self) -> None:
        step = self.start_step
        print(f"resuming from {self.checkpoint_path} at step {step}")
        if self.run is None:
            return
        self.run.info["resumed_from_step"] = step
        for observer in getattr(self.run, "observers", []):   # drop points logged after it
            truncate = getattr(observer, "truncate_metrics", None)
            if truncate is not None:
                truncate(after_step=step)

    def train_loader(self, pipeline, manifest, batch_size: int, seed: int, shuffle_buffer: int | None = None):
        """This rank's endless training batches of ``manifest`` through the data pipeline
        (``pipeline``, default the gin-bound ``data_pipeline``), at the checkpoint's data
        position; ``shuffle_buffer`` overrides the pipeline's."""
        if pipeline is None:
            pipeline = DataPipeline(**({} if shuffle_buffer is None else {"shuffle_buffer": shuffle_buffer}))
        elif shuffle_buffer is not None:
            pipeline = copy.copy(pipeline)
            pipeline.shuffle_buffer = shuffle_buffer
        return self.data(pipeline.loader(manifest, "train", mode="train", batch_size=batch_size, seed=seed,
                                         rank=self.info.rank, world_size=self.info.world_size, device=self.device))

    def data(self, source):
        """``source`` (an iterable with ``state_dict`` / ``load_state_dict``: the data
        pipeline's loader or :class:`CountedBatches`) positioned where the checkpoint left it."""
        if self.state is not None and self.state.get("data") is not None:
            source.load_state_dict(self.state["data"])
        if self.run is not None and isinstance(source, PipelineLoader):   # a run stopped for lost data names them
            source.on_data_loss = lambda: record_skips(self.run, source)
        self.source = source
        return source

    # ------------------------------------------------------------ the loop

    def fit(self, step: StepFunction, batches: Iterable[dict], after_step: AfterStep | None = None,
            description: str | None = None, work: WorkFunction | None = None) -> dict:
        """Trains from the resumed step to ``settings.steps``. ``step(batch, step)`` runs the
        forward under autocast on a device batch and returns (losses with a ``loss`` term,
        outputs for ``after_step``); ``after_step(step, batch, losses, outputs)`` may return
        more tensors to log (read only on logging steps); ``work(batch, outputs)`` counts what
        a micro-batch processed (tokens, model FLOPs) for the ``eff/`` metrics (default: clips)."""
        settings, info = self.settings, self.info
        self.logger.bar.set_description(description or self.command)
        stream = iter(batches)
        nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        last_save = self.clock()
        meter = EfficiencyMeter(self.device, info.world_size, device_peak_tflops(self.device), self.clock)
        self.wrapped.train()
        for index in range(self.start_step + 1, settings.steps + 1):
            self.optimizer.zero_grad(set_to_none=True)
            for micro in range(settings.accum_steps):
                batch = to_device(meter.next_batch(stream), self.device)
                sync = micro == settings.accum_steps - 1 or not hasattr(self.wrapped, "no_sync")
                with (contextlib.nullcontext() if sync else self.wrapped.no_sync()), autocast(self.device, self.bf16):
                    try:
                        losses, outputs = step(batch, index)
                    except ContractError as error:      # a plugin broke its contract at this step
                        raise self._stopped(index, str(error)) from error
                (losses["loss"] / settings.accum_steps).backward()
                meter.add(work(batch, outputs) if work is not None else StepWork(_clips_in(batch)))
            grad_norm = (torch.nn.utils.clip_grad_norm_(self.wrapped.parameters(), settings.clip_grad)
                         if settings.clip_grad else None)
            lr_now = self.scheduler.get_last_lr()[self.lr_group]
            self.optimizer.step()
            self.scheduler.step()
            nonfinite |= ~torch.isfinite(losses["loss"].detach())
            extra = after_step(index, batch, losses, outputs) if after_step is not None else None
            meter.step_done()
            if self.logger.due(index):
                self._guard(nonfinite, index)
                scalars = {f"train/{k}": mean_across_ranks(v, info) for k, v in {**losses, **(extra or {})}.items()}
                if grad_norm is not None:
                    scalars["train/grad_norm"] = float(grad_norm)
                scalars["train/lr"] = lr_now
                scalars.update(meter.scalars())     # eff/: the steps since the last logging step
                for monitor in self.monitors:       # every rank (a sharded model needs them all)
                    if monitor.due(index):
                        with autocast(self.device, self.bf16), self._root_unsharded():
                            scalars.update(monitor(index, batch))
                meter.restart()                     # the monitors' time is not the steps'
                self.logger.log(index, **scalars)
            if self._checkpoint_due(index, last_save):
                self._guard(nonfinite, index)
                self.save(index)
                last_save = self.clock()
            if index == settings.exit_after_step:
                os._exit(CRASH_STATUS)    # simulate a kill: no clean-up, no observer completion
            self.logger.bar.update()
        self.logger.close()
        if self.start_step >= settings.steps:
            print(f"checkpoint {self.checkpoint_path} is already at step {self.start_step} ≥ steps={settings.steps}")
        elif info.is_main and settings.save_checkpoints:
            run_folder.publish(self.workdir, self.stage, os.path.basename(self.folder))
        if self.run is not None and isinstance(getattr(self, "source", None), PipelineLoader):
            record_skips(self.run, self.source)     # clips the pipeline left out, by reason
        history = self.logger.history.get("train/loss", [(self.start_step, float("nan"))])
        return {"first_loss": history[0][1], "final_loss": history[-1][1], "checkpoint": self.checkpoint_path,
                "resumed_from": self.start_step, "run_folder": self.folder, "run_id": self.run_id}

    @contextlib.contextmanager
    def _root_unsharded(self):
        """Under FSDP2, the root's own parameters (patch embedding, final norm) gathered, so that a
        monitor may call a submodule such as the encoder directly; the blocks, sharded on their
        own, gather theirs in their forward. A collective: every rank runs the monitors."""
        if not (self.info.enabled and self.parallel == "fsdp2"):
            yield
            return
        self.wrapped.unshard()
        try:
            yield
        finally:
            self.wrapped.reshard()

    def log(self, step: int, **scalars: float) -> None:
        self.logger.log(step, **scalars)

    def log_due(self, step: int) -> bool:
        return self.logger.due(step)

    def _guard(self, nonfinite: torch.Tensor, step: int) -> None:
        """Stops the run when the loss, or a value the model's ``finite_watch`` follows (scores,
        targets, predictions), was not finite: host reads, on logging and checkpoint steps only."""
        watch = getattr(self.model, "finite_watch", None)
        sources = watch.nonfinite() if watch is not None else []
        if bool(nonfinite) or sources:
            origin = (f": they came first from {sources[0]}" + (f" (then {', '.join(sources[1:])})" if sources[1:]
                                                               else "")) if sources else ""
            raise NonFiniteValue(f"{self.command}: values were not finite at or before step {step}{origin}; "
                                 f"{self._last_good()}")

    def _stopped(self, step: int, problem: str) -> RunStopped:
        """The one-paragraph error of a run stopped at ``step``."""
        return RunStopped(f"{self.command} stopped at step {step}: {problem}; {self._last_good()}")

    def _last_good(self) -> str:
        """Where the run can be resumed from, for the messages of a stopped run."""
        if not os.path.isfile(self.checkpoint_path):
            return f"no checkpoint was written yet (it would be {self.checkpoint_path})"
        return (f"the last good checkpoint is {self.checkpoint_path} "
                f"(steps saved: {self.saved_steps or 'none in this process'})")

    def _checkpoint_due(self, step: int, last_save: float) -> bool:
        settings = self.settings
        if not settings.save_checkpoints:
            return False
        if step == settings.steps or (settings.checkpoint_every and step % settings.checkpoint_every == 0):
            return True
        if not settings.checkpoint_minutes:
            return False
        due = self.clock() - last_save >= settings.checkpoint_minutes * SECONDS_PER_MINUTE
        if self.info.enabled:       # every rank must take part in the same checkpoints
            if not self.logger.due(step):
                return False
            due = self._shared("1" if due else "") == "1"
        return due

    def save(self, step: int, **extra) -> str:
        """Writes the checkpoint of ``step`` (a collective under FSDP2; rank 0 writes)."""
        model_state, optimizer_state = full_state(self.wrapped, self.optimizer, self.info, self.parallel)
        rng = gather_objects(rng_state(), self.info)
        data = self._data_state()
        if not self.info.is_main:
            return self.checkpoint_path
        from lvmae.experiments.engine.gin_config import operative_config
        state = {"format": checkpoints.FORMAT, "version": checkpoints.FORMAT_VERSION, "command": self.command,
                 "run_id": self.run_id, "seed": self.seed, "step": step, "model": model_state,
                 "optimizer": optimizer_state, "scheduler": self.scheduler.state_dict(), "rng": rng,
                 "data": data, "micro_batches": _batches_read(data), **self.layout,
                 "tracked": {name: _state_of(obj) for name, obj in self.tracked.items()},
                 "gin_config": operative_config(), "bindings": checkpoints.flat_bindings(),
                 **self.extra_state(), **extra}
        self.checkpoint_path = checkpoints.save_rotating(self.folder, state)
        self.saved_steps.append(step)
        emit = getattr(self.run, "_emit_heartbeat", None)
        if emit is not None:
            emit()
        return self.checkpoint_path

    def _data_state(self) -> dict | None:
        """The data position of every rank in one state (a collective with several processes:
        each rank's pipeline readers are at their own positions)."""
        source = getattr(self, "source", None)
        if source is None:
            return None
        if not self.info.enabled:
            return source.state_dict()
        states = gather_objects(source.state_dict(), self.info)
        return merge_states(states) if isinstance(source, PipelineLoader) else states[self.info.rank]

    def extra_state(self) -> dict:
        """Top-level entries a command's readers need (set ``trainer.extra_state``)."""
        return {}

    def unwrapped(self) -> nn.Module:
        return unwrap(self.wrapped)

"""Efficiency of a training run, measured on the host between logging steps.

What one interval (the steps since the last logging step) did, from what the host knows
without waiting for the device — batch shapes, token counts, an analytic FLOP count — and
from the wall clock, whose interval ends at a logging step (where the engine reads the loss,
so the device has caught up):

- ``eff/clips_per_s``: clips the loader delivered (all ranks) per second of wall time;
- ``eff/encoder_tokens_per_s``, ``eff/decoder_tokens_per_s``: tokens the encoder and the
  decoder processed per second (all ranks);
- ``eff/step_tflop``: model FLOPs of one optimizer step (all ranks), from the same analytic
  model the planner uses (``memory_model.step_shape``: matmul FLOPs, forward + backward);
- ``eff/tflop_per_s``: model FLOPs per second, per device; ``eff/mfu``: that over the
  device's dense bf16 peak (:data:`PEAK_TFLOPS`, or ``device_peak.tflops``); on a CPU or an
  unknown device there is no peak, only ``eff/tflop_per_s``;
- ``eff/data_wait_fraction``: time spent waiting for the next batch over the interval's
  wall time (0: the loader is never the bottleneck; near 1: the device idles);
- ``eff/peak_memory_gib``: peak device memory so far (CUDA: ``max_memory_allocated``; CPU:
  the process's peak resident set, which counts everything the process holds).
"""
from __future__ import annotations

import copy
import dataclasses
import resource
import sys
import time
from collections.abc import Callable

import gin
import torch

GIB = 2**30
TERA = 1e12
# forward + backward ≈ 3 forwards (memory_model.StepShape.step_flops counts the same)
TRAINING_PASSES = 3
# ru_maxrss is KiB on Linux and bytes on macOS.
_RSS_UNIT_BYTES = 1 if sys.platform == "darwin" else 1024

#: Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, by a substring of
#: ``torch.cuda.get_device_name()``; the first match wins (more specific names first).
#: Vendors' data sheets; override with ``device_peak.tflops = ...``.
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),          # SXM5
    ("H800", 989.4),
    ("H200", 989.4),          # also GH200
    ("B200", 2250.0),
    ("A100", 312.0),          # SXM4 and PCIe
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
    ("V100", 125.0),          # fp16: the V100 has no bf16
    ("T4", 65.0),             # fp16
    ("MI300X", 1307.4),
)


@gin.configurable("device_peak")
def device_peak_tflops(device: torch.device, tflops: float | None = None) -> float | None:
    """The device's peak TFLOP/s: ``tflops`` when bound (gin ``device_peak.tflops``), else the
    table's entry for the GPU's name; None on a CPU or an unknown GPU (no MFU then)."""
    if tflops is not None:
        if not tflops > 0:
            raise ValueError(f"device_peak.tflops must be > 0, got {tflops}")
        return float(tflops)
    if device.type != "cuda":
        return None
    return peak_for_name(torch.cuda.get_device_name(device))


def peak_for_name(name: str) -> float | None:
    """The table's peak for a device name (the first entry whose key it contains), or None."""
    for key, tflops in PEAK_TFLOPS:
        if key in name:
            return tflops
    return None


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA: the allocator's peak since the process started; elsewhere: peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _RSS_UNIT_BYTES


@dataclasses.dataclass(frozen=True)
class StepWork:
    """What one micro-batch processed on this rank: clip, token and model-FLOP counts (host
    integers from shapes; never a device read). ``flops`` None: the model has no FLOP count."""

    clips: int
    encoder_tokens: int = 0
    decoder_tokens: int = 0
    flops: int | None = None


class EfficiencyMeter:
    """Accumulates :class:`StepWork` and data-wait time between logging steps; ``scalars()``
    turns them into the ``eff/`` metrics and starts the next interval.

    ``world_size``: ranks doing the same work (counts are this rank's, multiplied);
    ``clock``: seconds (injectable for tests)."""

    def __init__(self, device: torch.device, world_size: int = 1, peak_tflops: float | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.device, self.world_size, self.peak_tflops, self.clock = device, world_size, peak_tflops, clock
        self._reset(clock())

    def _reset(self, now: float) -> None:
        self.started = now
        self.wait_s = 0.0
        self.clips = self.encoder_tokens = self.decoder_tokens = self.flops = self.steps = 0
        self.flops_known = True

    def restart(self) -> None:
        """Starts the interval now (what ran since ``scalars()`` is left out)."""
        self.started = self.clock()

    def next_batch(self, stream):
        """``next(stream)``, timing the wait."""
        start = self.clock()
        batch = next(stream)
        self.wait_s += self.clock() - start
        return batch

    def add(self, work: StepWork) -> None:
        self.clips += work.clips
        self.encoder_tokens += work.encoder_tokens
        self.decoder_tokens += work.decoder_tokens
        if work.flops is None:
            self.flops_known = False
        else:
            self.flops += work.flops

    def step_done(self) -> None:
        self.steps += 1

    def scalars(self) -> dict[str, float]:
        """The interval's ``eff/`` metrics (see the module docstring); starts a new interval."""
        now = self.clock()
        elapsed = max(now - self.started, 1e-9)
        ranks = self.world_size
        out = {"eff/clips_per_s": self.clips * ranks / elapsed,
               "eff/data_wait_fraction": min(self.wait_s / elapsed, 1.0),
               "eff/peak_memory_gib": peak_memory_bytes(self.device) / GIB}
        if self.encoder_tokens:
            out["eff/encoder_tokens_per_s"] = self.encoder_tokens * ranks / elapsed
        if self.decoder_tokens:
            out["eff/decoder_tokens_per_s"] = self.decoder_tokens * ranks / elapsed
        if self.flops_known and self.flops and self.steps:
            per_device = self.flops / elapsed / TERA
            out["eff/step_tflop"] = self.flops * ranks / self.steps / TERA
            out["eff/tflop_per_s"] = per_device
            if self.peak_tflops:
                out["eff/mfu"] = per_device / self.peak_tflops
        self._reset(now)
        return out


# ---------------------------------------------------------------- what each command's step does

def mae_work(model) -> Callable[[dict, object], StepWork]:
    """``work`` of a ``model.mae`` step whose outputs are (plan, prediction): the encoder sees
    the plan's k kept tokens, the decoder k + q; FLOPs from ``memory_model.step_shape`` (the
    planner's model), computed once per (k, q)."""
    from lvmae.experiments.engine.memory_model import step_shape
    flops_per_clip: dict[tuple[int, int], int] = {}

    def work(batch: dict, outputs) -> StepWork:
        plan = outputs[0]
        clips, kept = plan.enc_keep_idx.shape
        targets = plan.dec_target_idx.shape[1]
        if (kept, targets) not in flops_per_clip:
            flops_per_clip[kept, targets] = step_shape(model, kept, targets).step_flops
        return StepWork(clips, clips * kept, clips * (kept + targets), clips * flops_per_clip[kept, targets])
    return work


def counted_forward_flops(model: torch.nn.Module, clip_shape: tuple[int, ...]) -> int | None:
    """FLOPs of one forward of ``model`` on one clip of ``clip_shape`` (c, t, h, w) as torch's
    FlopCounterMode counts them (convolutions and matmuls), on a meta-device copy: nothing is
    computed or allocated and the model itself is untouched. For models without an analytic FLOP
    model (the tokenizer's 3-D CNN). None when the copy cannot run on the meta device (e.g.
    parameters sharded across ranks): the run then logs no FLOPs rather than wrong ones."""
    from torch.utils.flop_counter import FlopCounterMode
    try:
        meta = copy.deepcopy(model).to("meta").eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            meta(torch.empty((1, *clip_shape), device="meta"))
    except Exception:        # noqa: BLE001 — any failure means "no FLOP count", never a failed run
        return None
    return int(counter.get_total_flops())


def counted_work(model: torch.nn.Module, tokens_of: Callable[[object], tuple[int, int]]
                 ) -> Callable[[dict, object], StepWork]:
    """``work`` of a step of a model without a FLOP model: clips and (encoded, decoded) tokens
    per clip from ``tokens_of(outputs)``, FLOPs counted once per clip shape
    (:func:`counted_forward_flops`, forward + backward as TRAINING_PASSES forwards)."""
    per_clip: dict[tuple[int, ...], int | None] = {}

    def work(batch: dict, outputs) -> StepWork:
        video = batch["video"]
        clips, shape = int(video.shape[0]), tuple(video.shape[1:])
        if shape not in per_clip:
            forward = counted_forward_flops(model, shape)
            per_clip[shape] = None if forward is None else TRAINING_PASSES * forward
        encoded, decoded = tokens_of(outputs)
        flops = per_clip[shape]
        return StepWork(clips, clips * encoded, clips * decoded, None if flops is None else clips * flops)
    return work


def classifier_work(classifier) -> Callable[[dict, object], StepWork]:
    """``work`` of a fine-tuning step: the encoder on the tokens its token drop keeps (matmul
    FLOPs of the encoder, forward + backward; the head's are negligible)."""
    encoder, dropper = classifier.encoder, classifier.token_dropper
    kept = dropper.count(encoder.grid) if dropper is not None else encoder.grid.n
    flops = TRAINING_PASSES * encoder.flops(kept)

    def work(batch: dict, outputs) -> StepWork:
        clips = int(batch["video"].shape[0])
        return StepWork(clips, clips * kept, 0, clips * flops)
    return work

"""``python run.py profile``: parameters, analytic FLOPs and memory, and (where the device
allows) measured peak memory and step time, over frame counts × decoder budgets; plus the
paper's Figure 1 (right): memory and FLOPs per device against the decoder mask ratio.

FLOPs are matmul FLOPs (2 per multiply-add; conv patch embedding, linears, attention scores
and weighted sums), forward; a training step is 3× forward. Memory is the planner's model
(``experiments/engine/memory_model.py``, bf16 autocast): activations saved for backward with
flash attention and with materialised ("dense") attention, and the training state (weights,
gradients, AdamW's moments). Measured peak memory: ``max_memory_allocated`` on a GPU, the CPU
allocator's profiled total on the CPU (``experiments/engine/peak_memory.py``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable

import gin
import torch

from lvmae.components.masking.decoder_random import RandomDecoderMasking
from lvmae.components.masking.encoder_random import RandomMasking
from lvmae.components.masking.plan import count_from_ratio
from lvmae.components.models.mae import VideoMAE
from lvmae.components.targets.pixels import PixelTarget
from lvmae.experiments.commands.experiment import attach_operative_config, ex
from lvmae.experiments.engine.gin_config import gin_applies
from lvmae.experiments.engine.memory_model import GIB, Precision, step_memory, step_shape
from lvmae.experiments.engine.peak_memory import mae_training_step, peak_bytes, training_state
from lvmae.experiments.engine.training import build_optimizer


@dataclasses.dataclass
class ProfileRow:
    frames: int
    decoder_budget: float
    tokens: int
    encoder_tokens: int
    decoder_targets: int
    decoder_tokens: int
    params_m: float
    encoder_gflops: float
    decoder_gflops: float
    train_tflops: float
    act_gib_dense: float
    act_gib_flash: float
    state_gib: float
    predicted_peak_gib: float
    measured_ms: float | None = None
    measured_peak_gib: float | None = None
    note: str = ""

    @property
    def decoder_mask_ratio(self) -> float:
        return 1.0 - self.decoder_targets / self.tokens


def build_mae(encoder: Callable, decoder: Callable, frames: int, image_size: int,
              tubelet: tuple[int, int, int], keep_ratio: float, budget: float) -> VideoMAE:
    return VideoMAE(encoder(clip_frames=frames, image_size=image_size, tubelet=tuple(tubelet)), decoder,
                    RandomMasking(keep_ratio), RandomDecoderMasking(budget), PixelTarget())


def analytic_row(model: VideoMAE, frames: int, keep_ratio: float, budget: float, batch_size: int,
                 precision: Precision = "bf16", device_type: str = "cuda") -> ProfileRow:
    """Counts for one configuration from a model's shapes (works on the meta device);
    memory at ``precision`` (bf16 autocast as on a GPU, or float32 as on the CPU)."""
    grid = model.encoder.grid
    kept = count_from_ratio(keep_ratio, grid.n, "profile_job.encoder_keep_ratio")
    targets = min(count_from_ratio(budget, grid.n, "profile_job.decoder_budgets"), grid.n - kept)
    enc, dec = model.encoder, model.decoder
    enc_flops, dec_flops = enc.flops(kept), dec.flops(kept, targets, enc.dim)
    shape = step_shape(model, kept, targets)
    flash, dense = (step_memory(shape, batch_size, precision, attention, device_type=device_type)
                    for attention in ("flash", "dense"))
    return ProfileRow(frames=frames, decoder_budget=budget, tokens=grid.n, encoder_tokens=kept,
                      decoder_targets=targets, decoder_tokens=kept + targets, params_m=shape.params / 1e6,
                      encoder_gflops=enc_flops / 1e9, decoder_gflops=dec_flops / 1e9,
                      train_tflops=batch_size * shape.step_flops / 1e12,
                      act_gib_dense=dense.activations / GIB, act_gib_flash=flash.activations / GIB,
                      state_gib=(flash.weights + flash.optimizer + flash.gradients) / GIB,
                      predicted_peak_gib=flash.peak / GIB)


def time_steps(step, steps: int, device: torch.device) -> tuple[float, float | None]:
    """Runs ``step`` once to warm up, then ``steps`` times: (ms per step, peak GiB or None on CPU)."""
    step()                                                     # warm-up (allocations, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed_ms = (time.perf_counter() - start) * 1000 / steps
    return elapsed_ms, (torch.cuda.max_memory_allocated() / GIB if device.type == "cuda" else None)


def measure_step(model: VideoMAE, frames: int, image_size: int, batch_size: int, steps: int,
                 device: torch.device) -> tuple[float, float]:
    """(ms per training step, peak GiB of one more step), bf16 autocast on GPU."""
    model = model.to(device).train()
    optimizer = build_optimizer(model, 1e-4, 0.05)
    batch = {"video": torch.randn(batch_size, model.encoder.in_channels, frames, image_size, image_size,
                                  device=device)}
    step = mae_training_step(model, optimizer, batch, torch.Generator(device=device), device.type == "cuda")
    elapsed_ms, _ = time_steps(step, steps, device)
    optimizer.zero_grad(set_to_none=True)            # the step's first line: measure without them
    peak = peak_bytes(step, device, training_state(model, optimizer) + [batch["video"]])
    return elapsed_ms, peak / GIB


def plot_figure(rows: list[ProfileRow], frames: int, path: str, title: str) -> str:
    """Figure 1 (right) of the paper: memory and FLOPs per device vs decoder mask ratio."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = sorted((r for r in rows if r.frames == frames), key=lambda r: r.decoder_mask_ratio)
    ratios = [r.decoder_mask_ratio for r in chosen]
    figure, (memory_axis, flops_axis) = plt.subplots(1, 2, figsize=(10, 4))
    memory_axis.plot(ratios, [r.act_gib_dense + r.state_gib for r in chosen], "o-",
                     label="analytic, dense attention")
    memory_axis.plot(ratios, [r.act_gib_flash + r.state_gib for r in chosen], "s--",
                     label="analytic, flash attention")
    memory_axis.plot(ratios, [r.predicted_peak_gib for r in chosen], "x:", label="planner's peak (flash)")
    measured = [(r.decoder_mask_ratio, r.measured_peak_gib) for r in chosen if r.measured_peak_gib]
    if measured:
        memory_axis.plot(*zip(*measured), "^-", label="measured peak")
    memory_axis.set(xlabel="decoder mask ratio", ylabel="memory per device (GiB)", title="Memory")
    memory_axis.legend()
    flops_axis.plot(ratios, [r.train_tflops for r in chosen], "o-", label="training step (3× forward)")
    flops_axis.plot(ratios, [3 * r.decoder_gflops / 1e3 for r in chosen], "s--", label="of which decoder")
    flops_axis.set(xlabel="decoder mask ratio", ylabel="TFLOPs per step per device", title="FLOPs")
    flops_axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


@gin_applies
def profile_job(run, encoder: Callable = gin.REQUIRED, decoder: Callable = gin.REQUIRED,
                frames: tuple[int, ...] = (16, 32, 64, 128), image_size: int = 224,
                tubelet: tuple[int, int, int] = (2, 16, 16), encoder_keep_ratio: float = 0.1,
                decoder_budgets: tuple[float, ...] = (0.05, 0.1, 0.15, 0.25, 0.5, 0.75, 0.9),
                batch_size: int = 1, measure: str = "auto", measure_steps: int = 3,
                plot_frames: int = 128, workdir: str = "outputs/profile") -> list[ProfileRow]:
    """Profiles ``encoder``/``decoder`` factories (gin: ``@backbone.vit_b``, ``@decoder.mae_b``).

    ``measure``: ``auto`` measures on a GPU only, ``cpu``/``cuda`` force a device, ``none``
    gives analytic numbers only.
    """
    if measure not in ("auto", "cpu", "cuda", "none"):
        raise ValueError(f"profile_job.measure must be 'auto', 'cpu', 'cuda' or 'none', got {measure!r}")
    device = None
    if measure == "cuda" or (measure == "auto" and torch.cuda.is_available()):
        device = torch.device("cuda")
    elif measure == "cpu":
        device = torch.device("cpu")
    rows = []
    for count in frames:
        for budget in decoder_budgets:
            with torch.device("meta"):
                meta_model = build_mae(encoder, decoder, count, image_size, tubelet, encoder_keep_ratio, budget)
            # the CPU measures float32 steps (pretrain_loop's choice there): predict the same
            precision = "fp32" if device is not None and device.type == "cpu" else "bf16"
            row = analytic_row(meta_model, count, encoder_keep_ratio, budget, batch_size, precision,
                               "cpu" if precision == "fp32" else "cuda")
            if device is not None:
                try:
                    model = build_mae(encoder, decoder, count, image_size, tubelet, encoder_keep_ratio, budget)
                    row.measured_ms, row.measured_peak_gib = measure_step(
                        model, count, image_size, batch_size, measure_steps, device)
                except torch.OutOfMemoryError:
                    row.note = "OOM"
                finally:
                    model = None
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
            rows.append(row)
            print(_format(row))
    os.makedirs(workdir, exist_ok=True)
    table = os.path.join(workdir, "profile.json")
    with open(table, "w", encoding="utf-8") as handle:
        json.dump([dataclasses.asdict(r) | {"decoder_mask_ratio": r.decoder_mask_ratio} for r in rows], handle, indent=1)
    if plot_frames in frames:
        figure = plot_figure(rows, plot_frames, os.path.join(workdir, f"figure1_right_{plot_frames}f.png"),
                             f"{plot_frames} frames, batch {batch_size}, encoder keeps {encoder_keep_ratio:.0%}")
        if run is not None:
            run.add_artifact(figure)
    if run is not None:
        run.add_artifact(table)
    return rows


def _format(row: ProfileRow) -> str:
    measured = "" if row.measured_ms is None else f"  {row.measured_ms:8.1f} ms"
    if row.measured_peak_gib is not None:
        measured += f"  peak {row.measured_peak_gib:6.2f} GiB (predicted {row.predicted_peak_gib:6.2f})"
    return (f"T={row.frames:4d} budget={row.decoder_budget:4.2f} tokens={row.tokens:6d} "
            f"enc={row.encoder_tokens:5d} dec={row.decoder_tokens:6d} params={row.params_m:6.1f}M "
            f"train={row.train_tflops:7.3f} TFLOP act(dense/flash)={row.act_gib_dense:7.2f}/"
            f"{row.act_gib_flash:5.2f} GiB{measured} {row.note}")


@ex.command
def profile(_run):
    """Parameters, FLOPs, memory and step time over frames × decoder budgets (+ Figure 1 right)."""
    rows = profile_job(_run)
    attach_operative_config(_run)
    return {"rows": len(rows)}

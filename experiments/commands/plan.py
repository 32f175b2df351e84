"""``python run.py plan -g FILE --gpu-memory 80GiB``: how many frames and clips fit on one GPU.

Reads the pre-training model of an experiment's gin files (``pretrain_loop.model``, its
``CLIP_FRAMES`` macro and ``pretrain_loop.batch_size``), builds it on the meta device for
each frame count, draws one mask plan for the token counts, and predicts the peak memory and
matmul FLOPs of one training step with the analytic model of
``experiments/engine/memory_model.py`` — with activation checkpointing off and on. Prints
the largest batch at the frames asked (or configured) and the largest frame count at the
batch asked (or configured) that fit in the GPU's memory less ``--headroom``.

  python run.py plan -g gin/experiments/lvmae_b_128f.gin --gpu-memory 80GiB
  python run.py plan -g gin/experiments/lvmae_b_128f.gin --gpu-memory 141GiB --frames 256
  python run.py plan -g gin/experiments/lvmae_b_128f.gin --gpu-memory 24GiB --batch 4 --json plan.json

Not a Sacred run (nothing is recorded); nothing is allocated on a device.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import sys
from collections.abc import Callable

from lvmae.experiments import program

MACRO_FRAMES = "CLIP_FRAMES"
# Kept free of the device's memory for what the model does not count: the CUDA context,
# the caching allocator's fragmentation, cuDNN/cuBLAS workspaces.
DEFAULT_HEADROOM = 0.10
_UNITS = {"": 2**30, "gib": 2**30, "gb": 10**9, "mib": 2**20, "mb": 10**6, "tib": 2**40, "tb": 10**12}
_MAX_SEARCH_BATCH = 1 << 16
_MAX_SEARCH_FRAMES = 1 << 16


class PlanError(ValueError):
    """A plan that cannot be made; the message names the option or gin key at fault."""


def parse_memory(text: str) -> int:
    """'80GiB', '80 GB', '141', '512MiB' → bytes (a bare number is GiB)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise PlanError(f"--gpu-memory must be a positive size like 80GiB, 80GB or 512MiB, got {text!r}")
    return int(float(match.group(1)) * _UNITS[unit])


@dataclasses.dataclass(frozen=True)
class Point:
    """The prediction for one frames × batch × checkpointing."""

    frames: int
    batch: int
    checkpointing: bool
    tokens: int
    encoder_tokens: int
    decoder_targets: int
    peak_gib: float
    activations_gib: float
    state_gib: float
    step_tflops: float


class Planner:
    """Predictions for the gin-configured pre-training model at any frame count."""

    def __init__(self, gin_files: list[str], gin_bindings: list[str], precision: str, attention: str):
        import gin

        from lvmae.experiments.commands import load_all
        from lvmae.experiments.engine import gin_config
        load_all()                                  # every configurable the files may name
        gin_config.parse(gin_files, gin_bindings)
        self.files = gin_files
        self.precision, self.attention = precision, attention
        try:
            self._model_reference = gin.query_parameter("pretrain_loop.model")
        except ValueError:
            raise PlanError(f"{' '.join(gin_files)}: no pretrain_loop.model is configured; plan reads the "
                            "pre-training model of an experiment file") from None
        try:
            self.frames = int(_value(gin.query_parameter(f"%{MACRO_FRAMES}")))
        except ValueError:
            raise PlanError(f"{' '.join(gin_files)}: the macro {MACRO_FRAMES} is not defined; plan varies the "
                            f"clip length through it (gin/backbones/*.gin read it)") from None
        self.batch = int(_bound_or_default("pretrain_loop.batch_size"))
        self._shapes: dict[int, object] = {}
        self.frame_step = 1                         # the temporal tubelet, known once built
        self.shape(self.frames)

    def shape(self, frames: int):
        """The step shape at ``frames`` (the model built on the meta device, one mask plan)."""
        if frames not in self._shapes:
            import gin
            import torch

            from lvmae.experiments.engine.memory_model import step_shape
            gin.bind_parameter(f"{MACRO_FRAMES}/macro.value", frames)
            try:
                with torch.device("meta"):
                    model = self._model_reference.scoped_configurable_fn()
            except Exception as error:    # a component's own check, e.g. frames not divisible
                raise PlanError(f"{MACRO_FRAMES}={frames}: the model cannot be built "
                                f"({type(error).__name__}: {error})") from error
            finally:
                gin.bind_parameter(f"{MACRO_FRAMES}/macro.value", self.frames)
            grid = model.encoder.grid
            self.frame_step = model.encoder.tubelet[0]
            generator = torch.Generator().manual_seed(0)
            scores = torch.rand(1, grid.t, grid.h, grid.w, generator=generator)
            plan = model.plan(1, generator, scores if model.decoder_masking.needs_scores else None)
            self._shapes[frames] = step_shape(model, plan.enc_keep_idx.shape[1], plan.dec_target_idx.shape[1])
        return self._shapes[frames]

    def point(self, frames: int, batch: int, checkpointing: bool) -> Point:
        from lvmae.experiments.engine.memory_model import GIB, step_memory, step_tflops
        shape = self.shape(frames)
        memory = step_memory(shape, batch, self.precision, self.attention, checkpointing)
        state = memory.weights + memory.buffers + memory.optimizer + memory.gradients
        return Point(frames, batch, checkpointing, shape.grid_tokens, shape.encoder_tokens,
                     shape.decoder_targets, memory.peak / GIB, memory.activations / GIB, state / GIB,
                     step_tflops(shape, batch))


def _value(bound):
    """A gin value with macros (``%NAME``) resolved."""
    import gin
    while isinstance(bound, gin.config.ConfigurableReference):
        bound = bound.scoped_configurable_fn()
    return bound


def _bound_or_default(key: str):
    import gin
    try:
        return _value(gin.query_parameter(key))
    except ValueError:
        from lvmae.experiments.commands.pretrain import pretrain_loop
        function = getattr(pretrain_loop, "__wrapped__", pretrain_loop)
        return inspect.signature(function).parameters[key.split(".")[1]].default


def largest(fits: Callable[[int], bool], low: int, high: int) -> int:
    """The largest v in [low, high] with ``fits(v)`` for a monotone ``fits``; low − 1 if none."""
    if not fits(low):
        return low - 1
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _table(points: list[Point], usable_gib: float) -> list[str]:
    header = ("| frames | batch | checkpointing | tokens (encoder / decoder targets) | peak GiB | "
              "activations GiB | state GiB | step TFLOPs | fits |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p.frames} | {p.batch} | {'on' if p.checkpointing else 'off'} | {p.tokens} "
                     f"({p.encoder_tokens} / {p.decoder_targets}) | {p.peak_gib:.2f} | "
                     f"{p.activations_gib:.2f} | {p.state_gib:.2f} | {p.step_tflops:.2f} | "
                     f"{'yes' if p.peak_gib <= usable_gib else 'no'} |")
    return lines


def make_plan(planner: Planner, gpu_bytes: int, headroom: float, frames: int | None,
              batch: int | None) -> dict:
    """The table and the largest batch / frames that fit, checkpointing off and on."""
    from lvmae.experiments.engine.memory_model import GIB
    if not 0.0 <= headroom < 1.0:
        raise PlanError(f"--headroom must be a fraction in [0, 1), got {headroom}")
    for name, value in (("--frames", frames), ("--batch", batch)):
        if value is not None and value < 1:
            raise PlanError(f"{name} must be ≥ 1, got {value}")
    if frames is not None and frames % planner.frame_step:
        raise PlanError(f"--frames {frames} is not a multiple of the encoder's temporal tubelet "
                        f"({planner.frame_step})")
    usable = gpu_bytes * (1.0 - headroom) / GIB
    at_frames = frames or planner.frames
    at_batch = batch or planner.batch
    result = {"gin_files": planner.files, "gpu_gib": gpu_bytes / GIB, "usable_gib": usable,
              "headroom": headroom, "precision": planner.precision, "attention": planner.attention,
              "frames": at_frames, "batch": at_batch, "points": [], "largest_batch": {},
              "largest_frames": {}}
    step = planner.frame_step
    for checkpointing in (False, True):
        key = "on" if checkpointing else "off"
        result["largest_batch"][key] = largest(
            lambda b, c=checkpointing: planner.point(at_frames, b, c).peak_gib <= usable, 1, _MAX_SEARCH_BATCH)
        multiple = largest(lambda m, c=checkpointing: planner.point(m * step, at_batch, c).peak_gib <= usable,
                           1, _MAX_SEARCH_FRAMES // step)
        result["largest_frames"][key] = multiple * step
    frame_counts = sorted({at_frames, *(f for f in (16, 32, 64, 128, 256, 512) if f % step == 0),
                           *(f for f in result["largest_frames"].values() if f > 0)})
    points = [planner.point(f, at_batch, c) for f in frame_counts for c in (False, True)]
    result["points"] = [dataclasses.asdict(p) for p in points]
    result["table"] = _table(points, usable)
    return result


def render(result: dict) -> str:
    def fits(count: int, what: str) -> str:
        return f"{count} {what}" if count > 0 else "nothing fits"

    title = (f"# plan for {' '.join(result['gin_files'])}: {result['gpu_gib']:.1f} GiB GPU, "
             f"{result['usable_gib']:.1f} GiB usable ({result['headroom']:.0%} headroom), "
             f"{result['precision']}, {result['attention']} attention, one process")
    lines = [title, ""]
    lines += result["table"]
    lines.append("")
    for key in ("off", "on"):
        lines.append(f"activation checkpointing {key}: largest batch at {result['frames']} frames: "
                     f"{fits(result['largest_batch'][key], 'clips')}; largest clip at batch "
                     f"{result['batch']}: {fits(result['largest_frames'][key], 'frames')}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"{program.name()} plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-g", "--gin", action="append", default=[], metavar="FILE", help="gin file (repeatable)")
    parser.add_argument("-b", "--bind", action="append", default=[], metavar="BINDING", help="gin binding (repeatable)")
    parser.add_argument("--gpu-memory", required=True, help="the GPU's memory, e.g. 80GiB, 141GB")
    parser.add_argument("--frames", type=int, help="clip length to find the largest batch for "
                        "(default: the file's CLIP_FRAMES)")
    parser.add_argument("--batch", type=int, help="batch to find the longest clip for "
                        "(default: pretrain_loop.batch_size)")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                        help="bf16 autocast (pretrain_loop's choice on a GPU) or float32")
    parser.add_argument("--attention", choices=("flash", "dense"), default="flash",
                        help="flash/memory-efficient SDPA (the GPU default) or materialised attention")
    parser.add_argument("--headroom", type=float, default=DEFAULT_HEADROOM,
                        help=f"fraction of the memory kept free (default {DEFAULT_HEADROOM})")
    parser.add_argument("--json", help="also write the plan here")
    args = parser.parse_args(argv)
    if not args.gin:
        parser.error("give the experiment's gin file with -g FILE")
    from lvmae.experiments.engine.gin_config import GinConfigError
    try:
        gpu_bytes = parse_memory(args.gpu_memory)
        planner = Planner(args.gin, args.bind, args.precision, args.attention)
        result = make_plan(planner, gpu_bytes, args.headroom, args.frames, args.batch)
    except (PlanError, GinConfigError) as error:
        print(f"{program.name()} plan: {error}", file=sys.stderr)
        return 2
    print(render(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({k: v for k, v in result.items() if k != "table"}, handle, indent=1)
    return 0

"""Small functions gin files call to derive one value from another, because gin itself cannot
join strings or do arithmetic. Each is evaluated when the command reads the binding:

    WORKDIR = @workdir/path.join()
    workdir/path.join.parts = [%OUTPUTS, %EXPERIMENT]         # outputs/lvmae_b_128f
    LATENT_DIM = @latent_dim/fsq.dimension()
    latent_dim/fsq.dimension.levels = %FSQ_LEVELS             # [8]*6 → 6
    pretrain_loop.lr = @lr.scaled()
    lr.scaled.base = 1.5e-4                                   # per 256 clips
    lr.scaled.batch_size = %BATCH_SIZE
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import gin

# VideoMAE (and MAE) quote learning rates per 256 clips: lr = base × effective batch / 256.
REFERENCE_BATCH = 256
# The helpers' gin names (run records show their results, not these spellings).
SELECTORS = ("path.join", "fsq.dimension", "lr.scaled")


@gin.configurable("join", module="path")
def join(parts: Sequence[str] = gin.REQUIRED) -> str:
    """``os.path.join(*parts)``: paths derived from one root macro (``OUTPUTS``)."""
    if isinstance(parts, str) or not parts or not all(isinstance(part, str) and part for part in parts):
        raise ValueError(f"path.join.parts must be a non-empty list of non-empty strings, got {parts!r}")
    return os.path.join(*parts)


@gin.configurable("dimension", module="fsq")
def dimension(levels: Sequence[int] = gin.REQUIRED) -> int:
    """The FSQ code dimension, ``len(levels)``: one macro (``FSQ_LEVELS``) sets both the
    tokenizer's quantizer and the latent width its targets have."""
    if isinstance(levels, (str, int)) or not levels:
        raise ValueError(f"fsq.dimension.levels must be a non-empty list of levels, got {levels!r}")
    return len(levels)


@gin.configurable("scaled", module="lr")
def scaled(base: float = gin.REQUIRED, batch_size: int = gin.REQUIRED, accum_steps: int = 1,
           world_size: int | None = None, reference_batch: int = REFERENCE_BATCH) -> float:
    """``base × effective batch / reference_batch`` (VideoMAE's linear scaling rule), where the
    effective batch is ``batch_size × accum_steps × world_size`` and ``world_size`` defaults to
    torchrun's ``WORLD_SIZE`` (1 without torchrun) — the same numbers the training loop uses,
    so bind ``batch_size``/``accum_steps`` from the macros the loop reads."""
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
    for name, value in (("batch_size", batch_size), ("accum_steps", accum_steps),
                        ("world_size", world_size), ("reference_batch", reference_batch)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"lr.scaled.{name} must be an integer ≥ 1, got {value!r}")
    if not base > 0:
        raise ValueError(f"lr.scaled.base must be > 0, got {base!r}")
    return base * batch_size * accum_steps * world_size / reference_batch

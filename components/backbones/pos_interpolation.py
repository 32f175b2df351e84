"""Positional tables of a checkpoint resized to another token grid (frames or resolution).

Axis legend: t, h, w token grid axes; n tokens of a table; d width.

A learned positional table covers some of the grid's axes: all of them (n = t·h·w), time
only (n = t), space only (n = h·w), or one spatial axis. It is reshaped to a (t, h, w)
volume — size 1 on the axes it does not cover — resized trilinearly, and flattened back
(t-major, the order of ``MaskPlan``). Same sizes return the table unchanged. Fixed
(non-persistent) sin-cos buffers never reach a checkpoint: the model rebuilds them.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from einops import rearrange

from lvmae.components.masking.plan import TokenGrid

# The axes a positional table may cover; a table must fit exactly one on both grids.
AXES_CHOICES = ("thw", "hw", "t", "h", "w")


def grid_sizes(grid: TokenGrid, axes: str) -> tuple[int, int, int]:
    """(t, h, w) sizes of the table volume: the grid's size on covered axes, else 1."""
    return tuple(getattr(grid, a) if a in axes else 1 for a in "thw")


def _rows(grid: TokenGrid, axes: str) -> int:
    t, h, w = grid_sizes(grid, axes)
    return t * h * w


def resize_table(table: torch.Tensor, old: TokenGrid, new: TokenGrid, axes: str = "thw") -> torch.Tensor:
    """table (..., n_old, d) on ``old`` → (..., n_new, d) on ``new``; identity when equal.

    Args:
      axes: the grid axes the table covers (see ``AXES_CHOICES``).
    """
    if axes not in AXES_CHOICES:
        raise ValueError(f"axes must be one of {AXES_CHOICES}, got {axes!r}")
    old_size, new_size = grid_sizes(old, axes), grid_sizes(new, axes)
    n_old = old_size[0] * old_size[1] * old_size[2]
    if table.shape[-2] != n_old:
        raise ValueError(f"a positional table over {axes!r} of {old} has {n_old} rows, "
                         f"got shape {tuple(table.shape)}")
    if old_size == new_size:
        return table
    lead = table.shape[:-2]
    volume = rearrange(table.reshape(-1, n_old, table.shape[-1]).float(),
                       "m (t h w) d -> m d t h w", t=old_size[0], h=old_size[1], w=old_size[2])
    # align_corners=False keeps cell centres aligned, the convention of timm/VideoMAE resizes.
    resized = F.interpolate(volume, size=new_size, mode="trilinear", align_corners=False)
    flat = rearrange(resized, "m d t h w -> m (t h w) d").to(table.dtype)
    return flat.reshape(*lead, flat.shape[-2], flat.shape[-1])


def infer_grid(n: int, new: TokenGrid) -> TokenGrid:
    """The pre-training grid of a full (t·h·w) table of ``n`` rows, guessed from ``new``:
    same spatial grid (another frame count), else same frame count and a square grid."""
    if n % new.cells == 0:
        return TokenGrid(n // new.cells, new.h, new.w)
    if n % new.t == 0:
        side = round((n // new.t) ** 0.5)
        if side * side * new.t == n:
            return TokenGrid(new.t, side, side)
    raise ValueError(f"cannot tell the pre-training token grid of a {n}-row positional table "
                     f"for the grid {new}; pass pretrained_grid=(t, h, w)")


@dataclasses.dataclass(frozen=True)
class Resized:
    key: str
    axes: str
    old_shape: tuple[int, ...]
    new_shape: tuple[int, ...]


def adapt_state(state: dict[str, torch.Tensor], module: torch.nn.Module, new: TokenGrid,
                old: TokenGrid | None = None) -> tuple[dict[str, torch.Tensor], list[Resized]]:
    """Resizes every positional parameter of ``state`` whose shape differs from ``module``'s.

    Buffers of ``module`` (fixed tables) are dropped from ``state`` when their shape differs:
    the module's own, rebuilt for ``new``, are kept. Any other mismatch raises, naming the key.
    Returns the adapted state and what was resized.
    """
    own_params = dict(module.named_parameters())
    own_buffers = dict(module.named_buffers())
    adapted, resized = {}, []
    for key, value in state.items():
        target = own_params.get(key, own_buffers.get(key))
        if target is None or target.shape == value.shape:
            adapted[key] = value
            continue
        if key in own_buffers:
            continue
        if value.dim() < 2 or value.shape[:-2] != target.shape[:-2] or value.shape[-1] != target.shape[-1]:
            raise ValueError(f"checkpoint tensor {key!r} has shape {tuple(value.shape)}, the model "
                             f"expects {tuple(target.shape)}; only positional tables are resized")
        candidates = [a for a in AXES_CHOICES if _rows(new, a) == target.shape[-2]]
        if old is not None:
            candidates = [a for a in candidates if _rows(old, a) == value.shape[-2]]
        elif "thw" in candidates:
            candidates = ["thw"]
        else:
            raise ValueError(f"{key!r} is not a full t·h·w table; pass pretrained_grid=(t, h, w)")
        if len(candidates) != 1:
            raise ValueError(f"{key!r} of shape {tuple(value.shape)} → {tuple(target.shape)} fits "
                             f"{candidates or 'no'} axes of the grids; cannot resize it")
        axes = candidates[0]
        source = old if old is not None else infer_grid(value.shape[-2], new)
        adapted[key] = resize_table(value, source, new, axes)
        resized.append(Resized(key, axes, tuple(value.shape), tuple(adapted[key].shape)))
    return adapted, resized

"""Positional embeddings on the token grid: fixed sin-cos (3-D or VideoMAE's 1-D) or learned.

Axis legend: t, h, w grid axes; n = t·h·w (t-major flattening); d width.

Every table has shape (1, n, d) so that learned and fixed positions are interchangeable and a
fine-tuning job can interpolate ``pos_embed`` whatever its origin.
"""
from __future__ import annotations

from typing import Literal, get_args

import torch
from einops import rearrange
from torch import nn

from lvmae.components.masking.plan import TokenGrid

PositionKind = Literal["sincos_3d", "sincos_1d", "learned"]
POSITION_KINDS: tuple[str, ...] = get_args(PositionKind)
_MAX_PERIOD = 10_000.0
# Learned tables start small, like ViT/VideoMAE's trunc-normal(0.02).
_LEARNED_INIT_STD = 0.02


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """positions (m,) → (m, dim) with dim even: [sin(p·ω), cos(p·ω)] (MAE's block layout)."""
    omega = 1.0 / _MAX_PERIOD ** (torch.arange(dim // 2, dtype=torch.float64) / max(dim // 2, 1))
    angles = positions.double()[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_interleaved(n: int, dim: int) -> torch.Tensor:
    """(n, dim): VideoMAE's table over the *flattened* token index — channel 2i is
    sin(p / 10000^(2i/d)), channel 2i+1 the matching cosine. Needed for exact parity with
    checkpoints trained by VideoMAE / ``transformers``."""
    channel = torch.arange(dim, dtype=torch.float64)
    exponent = 2 * torch.div(channel, 2, rounding_mode="floor") / dim
    angles = torch.arange(n, dtype=torch.float64)[:, None] / _MAX_PERIOD ** exponent[None, :]
    table = torch.where(channel.long() % 2 == 0, angles.sin(), angles.cos())
    return table.float()


def sincos_3d(grid: TokenGrid, dim: int) -> torch.Tensor:
    """(n, dim): each axis gets an even share of the width; the remainder is zero."""
    share = (dim // 3) // 2 * 2
    if share == 0:
        raise ValueError(f"width {dim} is too small for 3-D sin-cos positions")
    t = sincos_1d(torch.arange(grid.t), share)
    h = sincos_1d(torch.arange(grid.h), share)
    w = sincos_1d(torch.arange(grid.w), share)
    table = torch.cat([
        rearrange(t, "t d -> t 1 1 d").expand(grid.t, grid.h, grid.w, share),
        rearrange(h, "h d -> 1 h 1 d").expand(grid.t, grid.h, grid.w, share),
        rearrange(w, "w d -> 1 1 w d").expand(grid.t, grid.h, grid.w, share),
        torch.zeros(grid.t, grid.h, grid.w, dim - 3 * share),
    ], dim=-1)
    return rearrange(table, "t h w d -> (t h w) d")


def check_position_kind(kind: str, parameter: str) -> str:
    if kind not in POSITION_KINDS:
        raise ValueError(f"{parameter} must be one of {POSITION_KINDS}, got {kind!r}")
    return kind


def attach_positions(module: nn.Module, kind: str, grid: TokenGrid, dim: int, parameter: str) -> None:
    """Gives ``module`` a ``pos_embed`` of shape (1, n, d): a trainable parameter for
    ``learned``, else a non-persistent buffer (recomputed, never stored in checkpoints)."""
    check_position_kind(kind, parameter)
    if kind == "learned":
        module.pos_embed = nn.Parameter(torch.zeros(1, grid.n, dim))
        nn.init.trunc_normal_(module.pos_embed, std=_LEARNED_INIT_STD)
        return
    table = sincos_3d(grid, dim) if kind == "sincos_3d" else sincos_interleaved(grid.n, dim)
    module.register_buffer("pos_embed", table[None], persistent=False)


def resize_pos_embed(pos_embed: torch.Tensor, old: TokenGrid, new: TokenGrid) -> torch.Tensor:
    """(1, old.n, d) → (1, new.n, d) by trilinear interpolation over (t, h, w): reuse a learned
    table on another clip length or resolution (fixed tables are simply rebuilt)."""
    if pos_embed.shape[1] != old.n:
        raise ValueError(f"pos_embed has {pos_embed.shape[1]} positions, the grid {old} has {old.n}")
    if old == new:
        return pos_embed
    volume = rearrange(pos_embed, "1 (t h w) d -> 1 d t h w", t=old.t, h=old.h, w=old.w)
    resized = torch.nn.functional.interpolate(volume.float(), size=(new.t, new.h, new.w),
                                              mode="trilinear", align_corners=False)
    return rearrange(resized, "1 d t h w -> 1 (t h w) d").to(pos_embed.dtype)

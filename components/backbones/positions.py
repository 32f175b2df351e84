"""Fixed 3-D sin-cos positional embeddings on the token grid.

Axis legend: t, h, w grid axes; n = t·h·w; d width.
"""
from __future__ import annotations

import torch
from einops import rearrange

from components.masking.plan import TokenGrid

_MAX_PERIOD = 10_000.0


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """positions (m,) → (m, dim) with dim even: [sin(p·ω), cos(p·ω)]."""
    omega = 1.0 / _MAX_PERIOD ** (torch.arange(dim // 2, dtype=torch.float64) / max(dim // 2, 1))
    angles = positions.double()[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


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

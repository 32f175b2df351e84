"""VideoMAE V2's running-cell pattern (Wang et al. 2023, ``RunningCellMaskingGenerator``).

Each 2×2 spatial cell holds a queue of 4 slots, ``hidden`` of them hidden; the queue's read
pointer advances by one slot per latent frame, so a hidden slot "runs" around the cell and
every spatial position is visible in some frame. The 2×2 unit is tiled over the frame. There
are 4 patterns (one per start pointer); a clip draws one of them.

Axis legend: p pattern (4), t/h/w grid, n = t·h·w, m selected tokens per clip.
"""
from __future__ import annotations

import torch
from einops import rearrange

from lvmae.components.masking.plan import TokenGrid

CELL_SLOTS = 4          # a 2×2 cell
CELL_SIDE = 2


def hidden_per_cell(fraction_hidden: float, parameter: str) -> int:
    """How many of the 4 slots are hidden; VideoMAE V2 allows 1, 2 or 3."""
    hidden = fraction_hidden * CELL_SLOTS
    if abs(hidden - round(hidden)) > 1e-6 or not 0 < round(hidden) < CELL_SLOTS:
        raise ValueError(f"{parameter}: a running cell hides 1, 2 or 3 of 4 slots, so the "
                         f"fraction must be 0.25, 0.5 or 0.75 (got hidden fraction {fraction_hidden})")
    return round(hidden)


def running_cell_hidden(grid: TokenGrid, hidden: int) -> torch.Tensor:
    """(p, t, h, w) bool: True where pattern p hides the token.

    Follows the published generator: the pointer starts at p and ``run_cell`` advances it once
    *before* each frame, so frame ti reads the queue from slot (p + ti + 1).
    """
    if grid.h % CELL_SIDE or grid.w % CELL_SIDE:
        raise ValueError(f"running-cell masking needs an even token grid, got h={grid.h}, w={grid.w}")
    queue = torch.tensor([True] * hidden + [False] * (CELL_SLOTS - hidden))
    slot = torch.arange(CELL_SLOTS)
    maps = []
    for pattern in range(CELL_SLOTS):
        frames = []
        for ti in range(grid.t):
            unit = queue[(slot + pattern + ti + 1) % CELL_SLOTS].reshape(CELL_SIDE, CELL_SIDE)
            frames.append(unit.repeat(grid.h // CELL_SIDE, grid.w // CELL_SIDE))
        maps.append(torch.stack(frames))
    return torch.stack(maps)


def running_cell_indices(grid: TokenGrid, hidden: int, select_hidden: bool) -> torch.Tensor:
    """(p, m) long, sorted: the hidden (or visible) token indices of each pattern."""
    hidden_maps = rearrange(running_cell_hidden(grid, hidden), "p t h w -> p (t h w)")
    chosen = hidden_maps if select_hidden else ~hidden_maps
    order = torch.arange(grid.n).expand_as(chosen)
    count = int(chosen[0].sum())
    # every pattern selects the same number of tokens (the cell is tiled), so this is rectangular
    return rearrange(order[chosen], "(p m) -> p m", p=CELL_SLOTS, m=count)


def draw_patterns(table: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """table (p, m) → (b, m): one pattern per clip, drawn from ``generator``."""
    pattern = torch.randint(CELL_SLOTS, (batch_size,), generator=generator, device=generator.device)
    return table.to(generator.device)[pattern]


__all__ = ["draw_patterns", "hidden_per_cell", "running_cell_hidden", "running_cell_indices"]

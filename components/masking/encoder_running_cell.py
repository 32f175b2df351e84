"""Running-cell encoder masking: the encoder sees the visible slots of VideoMAE V2's pattern."""
from __future__ import annotations

import functools

import torch

from lvmae.components.masking.base import EncoderMasking
from lvmae.components.masking.plan import TokenGrid
from lvmae.components.masking.running_cell import draw_patterns, hidden_per_cell, running_cell_indices
from lvmae.registry import register


@register("masking.encoder.running_cell")
class RunningCellEncoderMasking(EncoderMasking):
    """Keeps ``keep_ratio`` (0.25, 0.5 or 0.75) of the tokens, in a pattern that shifts by one
    cell slot per latent frame. The patterns are computed once per grid and sampled cheaply."""

    def __init__(self, keep_ratio: float = 0.25):
        self.hidden = hidden_per_cell(1.0 - keep_ratio, "masking.encoder.running_cell.keep_ratio")
        self.keep_ratio = float(keep_ratio)

    @functools.lru_cache(maxsize=8)
    def _table(self, grid: TokenGrid) -> torch.Tensor:
        return running_cell_indices(grid, self.hidden, select_hidden=False)

    def count(self, grid: TokenGrid) -> int:
        return self._table(grid).shape[1]

    def __call__(self, grid: TokenGrid, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return draw_patterns(self._table(grid), batch_size, generator)

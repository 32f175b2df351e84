"""Running-cell encoder masking: the encoder sees the visible slots of VideoMAE V2's pattern."""
from __future__ import annotations

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
        self._tables: dict[tuple[TokenGrid, str], torch.Tensor] = {}
        self.keep_ratio = float(keep_ratio)

    def _table(self, grid: TokenGrid, device: torch.device | str = "cpu") -> torch.Tensor:
        """(p, m) the 4 patterns' selected tokens on ``grid``, computed once per grid and
        device (no host-to-device copy per step)."""
        key = (grid, str(device))
        if key not in self._tables:
            self._tables[key] = running_cell_indices(grid, self.hidden, select_hidden=False).to(device)
        return self._tables[key]

    def count(self, grid: TokenGrid) -> int:
        return self._table(grid).shape[1]

    def __call__(self, grid: TokenGrid, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return draw_patterns(self._table(grid, generator.device), batch_size, generator)

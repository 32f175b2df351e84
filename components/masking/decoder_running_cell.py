"""Running-cell decoder masking (VideoMAE V2's dual masking)."""
from __future__ import annotations

import torch

from lvmae.components.masking.base import DecoderMasking
from lvmae.components.masking.plan import TokenGrid
from lvmae.components.masking.running_cell import draw_patterns, hidden_per_cell, running_cell_indices
from lvmae.registry import register


@register("masking.decoder.running_cell")
class RunningCellDecoderMasking(DecoderMasking):
    """Reconstructs the visible slots of VideoMAE V2's running-cell pattern: ``budget`` (0.25,
    0.5 or 0.75) of *all* tokens, chosen without looking at the encoder's mask.

    Policy for overlap: the pattern may select tokens the encoder kept. They are still decoded
    (the count stays fixed, as in VideoMAE V2) but get ``loss_weight`` 0 (MaskPlan), so the
    loss covers only targets the encoder did not see (docs/paper.md, MAE pre-training).
    """

    decodes_kept_tokens = True

    def __init__(self, budget: float = 0.5):
        # VideoMAE V2's decoder mask ratio 0.5 hides half of each cell → budget 0.5.
        self.hidden = hidden_per_cell(1.0 - budget, "masking.decoder.running_cell.budget")
        self._tables: dict[tuple[TokenGrid, str], torch.Tensor] = {}
        self.budget = float(budget)

    def _table(self, grid: TokenGrid, device: torch.device | str = "cpu") -> torch.Tensor:
        """(p, m) the 4 patterns' selected tokens on ``grid``, computed once per grid and
        device (no host-to-device copy per step)."""
        key = (grid, str(device))
        if key not in self._tables:
            self._tables[key] = running_cell_indices(grid, self.hidden, select_hidden=False).to(device)
        return self._tables[key]

    def count(self, grid: TokenGrid, kept: int) -> int:
        return self._table(grid).shape[1]

    def __call__(self, grid: TokenGrid, enc_keep_idx: torch.Tensor, generator: torch.Generator,
                 scores: torch.Tensor | None = None) -> torch.Tensor:
        return draw_patterns(self._table(grid, generator.device), enc_keep_idx.shape[0], generator)

"""Tube masking (VideoMAE): one random spatial mask shared by every latent frame."""
from __future__ import annotations

import torch
from einops import rearrange

from lvmae.components.masking.base import EncoderMasking, random_order
from lvmae.components.masking.plan import TokenGrid, count_from_ratio
from lvmae.registry import register


@register("masking.encoder.tube")
class TubeMasking(EncoderMasking):
    """Keeps the same ``keep_ratio`` of spatial cells in every latent frame.

    The number kept is ``t · round(keep_ratio · h·w)`` (whole tubes), so the count is a
    multiple of t and identical for every clip of the batch.
    """

    def __init__(self, keep_ratio: float = 0.1):
        count_from_ratio(keep_ratio, 1, "masking.encoder.tube.keep_ratio")
        self.keep_ratio = float(keep_ratio)

    def cells_kept(self, grid: TokenGrid) -> int:
        return count_from_ratio(self.keep_ratio, grid.cells, "masking.encoder.tube.keep_ratio")

    def count(self, grid: TokenGrid) -> int:
        return grid.t * self.cells_kept(grid)

    def __call__(self, grid: TokenGrid, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        cells_kept = self.cells_kept(grid)
        cell_idx = random_order(batch_size, grid.cells, generator)[:, :cells_kept]   # (b, c)
        frame_offset = torch.arange(grid.t, device=cell_idx.device) * grid.cells     # (t,)
        keep = rearrange(frame_offset, "t -> 1 t 1") + rearrange(cell_idx, "b c -> b 1 c")
        return rearrange(keep, "b t c -> b (t c)").sort(dim=1).values

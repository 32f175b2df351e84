"""Random encoder masking (MAE, ST-MAE): each clip keeps an independent random set of tokens."""
from __future__ import annotations

import torch

from lvmae.components.masking.base import EncoderMasking, random_order
from lvmae.components.masking.plan import TokenGrid, count_from_ratio
from lvmae.registry import register


@register("masking.encoder.random")
class RandomMasking(EncoderMasking):
    """Keeps ``round(keep_ratio · n)`` tokens drawn uniformly over space and time."""

    def __init__(self, keep_ratio: float = 0.1):
        count_from_ratio(keep_ratio, 1, "masking.encoder.random.keep_ratio")
        self.keep_ratio = float(keep_ratio)

    def count(self, grid: TokenGrid) -> int:
        return count_from_ratio(self.keep_ratio, grid.n, "masking.encoder.random.keep_ratio")

    def __call__(self, grid: TokenGrid, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return random_order(batch_size, grid.n, generator)[:, :self.count(grid)].sort(dim=1).values

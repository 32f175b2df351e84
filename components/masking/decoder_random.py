"""Random decoder masking: a uniformly random budget of the tokens the encoder did not see."""
from __future__ import annotations

import torch

from lvmae.components.masking.base import DecoderMasking
from lvmae.components.masking.plan import TokenGrid, count_from_ratio
from lvmae.registry import register


@register("masking.decoder.random")
class RandomDecoderMasking(DecoderMasking):
    """Reconstructs ``round(budget · n)`` tokens drawn uniformly from the encoder-masked ones.

    ``budget`` is a fraction of *all* tokens; it is capped at the number of masked tokens,
    so every target contributes to the loss.
    """

    def __init__(self, budget: float = 0.15):
        count_from_ratio(budget, 1, "masking.decoder.random.budget")
        self.budget = float(budget)

    def count(self, grid: TokenGrid, kept: int) -> int:
        return min(count_from_ratio(self.budget, grid.n, "masking.decoder.random.budget"), grid.n - kept)

    def __call__(self, grid: TokenGrid, enc_keep_idx: torch.Tensor, generator: torch.Generator,
                 scores: torch.Tensor | None = None) -> torch.Tensor:
        batch_size, kept = enc_keep_idx.shape
        targets = self.count(grid, kept)
        noise = torch.rand(batch_size, grid.n, generator=generator, device=generator.device)
        noise.scatter_(1, enc_keep_idx, float("inf"))      # kept tokens sort last
        return noise.argsort(dim=1)[:, :targets].sort(dim=1).values

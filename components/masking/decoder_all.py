"""Decode every masked token (VideoMAE v1; the paper's "None" baseline, 100% budget)."""
from __future__ import annotations

import torch

from lvmae.components.masking.base import DecoderMasking
from lvmae.components.masking.plan import TokenGrid
from lvmae.registry import register


@register("masking.decoder.all")
class AllMaskedDecoding(DecoderMasking):
    """dec_target_idx = every token the encoder did not keep, ascending (n − k per clip).

    This is the memory wall of the paper's Figure 1: at 128 frames the decoder attends over
    all 12,544 tokens."""

    def count(self, grid: TokenGrid, kept: int) -> int:
        return grid.n - kept

    def __call__(self, grid: TokenGrid, enc_keep_idx: torch.Tensor, generator: torch.Generator,
                 scores: torch.Tensor | None = None) -> torch.Tensor:
        batch_size, kept = enc_keep_idx.shape
        order = torch.arange(grid.n, device=enc_keep_idx.device, dtype=torch.float32)
        order = order.expand(batch_size, grid.n).clone()
        order.scatter_(1, enc_keep_idx, float("inf"))        # kept tokens sort last
        return order.argsort(dim=1)[:, :grid.n - kept]

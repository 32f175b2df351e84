"""Straight-through top-k: the hard top-k mask forward, the gradient of a sigmoid relaxation
backward (docs/paper.md, tokenizer and scorer; it trains the scorer within ~50 steps:
benchmarks/scorer_learns.py).

Axis legend: b batch, m candidate tokens.
"""
from __future__ import annotations

import torch

from lvmae.components.topk.base import TopK, hard_topk_mask
from lvmae.registry import register


@register("topk.straight_through")
class StraightThroughTopK(TopK):
    """forward: hard mask; backward: d sigmoid((s − τ)/temperature), τ the detached midpoint
    between the k-th and (k+1)-th largest score, so tokens near the cut get the gradient."""

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"topk.straight_through.temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def forward(self, scores: torch.Tensor, k: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """scores (b, m), k → selection (b, m), exactly k ones per row forward."""
        hard = hard_topk_mask(scores.detach(), k)
        ranked = scores.detach().topk(min(k + 1, scores.shape[-1]), dim=-1).values
        threshold = (ranked[:, k - 1] + ranked[:, -1]) / 2 if k < scores.shape[-1] else ranked[:, -1]
        soft = torch.sigmoid((scores - threshold[:, None]) / self.temperature)
        # (soft − soft.detach()) is exactly 0 forward, so the forward value is exactly 0/1.
        return hard + (soft - soft.detach())

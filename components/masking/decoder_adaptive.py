"""Adaptive decoder masking (LVMAE, docs/paper.md): the highest-scoring tokens plus a random part.

Axis legend: b batch, t/h/w token grid, n = t·h·w, k kept by the encoder, q decoder targets.

Policy: both parts are drawn among the tokens the encoder did *not* keep, so every target
carries loss (with tube 90% encoder masking, ranking all tokens would waste ~10% of the
budget on tokens the loss ignores). The top part is the ``top_ratio·n`` best-scoring masked
tokens; the random part is ``random_ratio·n`` tokens drawn uniformly from the remaining masked
ones. Scores come from a live scorer or from the shards' precomputed ``scores`` field.
"""
from __future__ import annotations

import torch
from einops import rearrange

from lvmae.components.masking.base import DecoderMasking
from lvmae.components.masking.plan import TokenGrid, count_from_ratio
from lvmae.registry import register


@register("masking.decoder.adaptive")
class AdaptiveDecoderMasking(DecoderMasking):
    """Top ``top_ratio`` of all tokens by score + ``random_ratio`` random (10% + 5% in the paper)."""

    needs_scores = True

    def __init__(self, top_ratio: float = 0.10, random_ratio: float = 0.05):
        count_from_ratio(top_ratio, 1, "masking.decoder.adaptive.top_ratio")
        if not isinstance(random_ratio, (int, float)) or not 0.0 <= float(random_ratio) < 1.0:
            raise ValueError("masking.decoder.adaptive.random_ratio must be a fraction in [0, 1), "
                             f"got {random_ratio!r}")
        if top_ratio + random_ratio > 1.0:
            raise ValueError("masking.decoder.adaptive: top_ratio + random_ratio must not exceed 1, "
                             f"got {top_ratio} + {random_ratio}")
        self.top_ratio = float(top_ratio)
        self.random_ratio = float(random_ratio)

    def counts(self, grid: TokenGrid, kept: int) -> tuple[int, int]:
        """(top, random) target counts, capped by the number of encoder-masked tokens."""
        masked = grid.n - kept
        top = min(count_from_ratio(self.top_ratio, grid.n, "masking.decoder.adaptive.top_ratio"), masked)
        extra = min(int(self.random_ratio * grid.n + 0.5), masked - top)
        return top, extra

    def count(self, grid: TokenGrid, kept: int) -> int:
        return sum(self.counts(grid, kept))

    def __call__(self, grid: TokenGrid, enc_keep_idx: torch.Tensor, generator: torch.Generator,
                 scores: torch.Tensor | None = None) -> torch.Tensor:
        if scores is None:
            raise ValueError("masking.decoder.adaptive needs token scores (b, t, h, w)")
        if tuple(scores.shape[1:]) != (grid.t, grid.h, grid.w):
            raise ValueError(f"masking.decoder.adaptive: scores of shape {tuple(scores.shape)} do not "
                             f"match the token grid {grid}")
        batch_size, kept = enc_keep_idx.shape
        top, extra = self.counts(grid, kept)
        flat = rearrange(scores.float(), "b t h w -> b (t h w)").clone()
        flat.scatter_(1, enc_keep_idx.to(flat.device), float("-inf"))      # kept tokens rank last
        top_idx = flat.topk(top, dim=1).indices                              # (b, top)
        if extra == 0:
            return top_idx
        noise = torch.rand(batch_size, grid.n, generator=generator, device=generator.device)
        noise.scatter_(1, enc_keep_idx.to(noise.device), float("inf"))
        noise.scatter_(1, top_idx.to(noise.device), float("inf"))
        random_idx = noise.argsort(dim=1)[:, :extra]
        return torch.cat([top_idx, random_idx.to(top_idx.device)], dim=1)

"""The differentiable top-k contract, and top-k on a token grid with latent frame 0 kept.

Axis legend: b batch, m candidate tokens, s noise samples, t/h/w token grid, n = t·h·w.

A selector maps scores (b, m) and a count k to a selection mask (b, m) whose forward value has
exactly k ones per row (hard) and whose backward pass sends a gradient to the scores — the
scorer has no loss of its own (docs/paper.md, tokenizer and scorer).
"""
from __future__ import annotations

import abc

import torch
from einops import rearrange
from torch import nn

from lvmae.registry import set_contract, subclass_of


def hard_topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """scores (..., m) → float mask (..., m) with ones at the k largest scores."""
    mask = torch.zeros_like(scores)
    return mask.scatter_(-1, scores.topk(k, dim=-1).indices, 1.0)


class TopK(nn.Module, abc.ABC):
    """Hard top-k forward, a relaxation backward."""

    @abc.abstractmethod
    def forward(self, scores: torch.Tensor, k: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """scores (b, m), k → selection (b, m): exactly k ones per row forward."""

    def select_on_grid(self, scores: torch.Tensor, k: int, keep_first_frame: bool = True,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """scores (b, t, h, w) → selection (b, t, h, w): latent frame 0 entirely (when
        ``keep_first_frame``; it has no predecessor to be scored against) plus exactly ``k``
        tokens of the other frames, per clip."""
        if scores.dim() != 4:
            raise ValueError(f"select_on_grid expects scores (b, t, h, w), got {tuple(scores.shape)}")
        _, t, h, w = scores.shape
        first = 1 if keep_first_frame else 0
        candidates = (t - first) * h * w
        if not 1 <= k <= candidates:
            raise ValueError(f"top-k count k={k} must lie in [1, {candidates}] "
                             f"(the scorable tokens of a {t}×{h}×{w} grid)")
        flat = rearrange(scores[:, first:], "b t h w -> b (t h w)")
        selected = rearrange(self(flat, k, generator), "b (t h w) -> b t h w", h=h, w=w)
        if keep_first_frame:
            selected = torch.cat([torch.ones_like(scores[:, :1]), selected], dim=1)
        return selected


set_contract("topk", subclass_of(TopK, forward=("scores", "k", "generator")))

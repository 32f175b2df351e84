"""Token-id targets: classify each decoder target's codebook index (cross-entropy), either over
the whole codebook or factorised per FSQ level (one small softmax per latent dimension —
an 18-bit codebook has 262,144 entries, too many logits per token).

Axis legend: b batch, t/h/w token grid, q decoder targets, l FSQ levels, c logits.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange

from lvmae.components.masking.plan import MaskPlan
from lvmae.components.targets.base import Target
from lvmae.registry import register

INDICES_KEY = "indices"
_FACTORISATIONS = ("codebook", "per_level")


def level_digits(indices: torch.Tensor, levels: list[int]) -> torch.Tensor:
    """Mixed-radix digits of FSQ indices: (…,) → (…, l), digit i in [0, levels[i])
    (the first level is the least significant, as in FSQ's index ↔ code bijection)."""
    basis = torch.tensor([math.prod(levels[:i]) for i in range(len(levels))], device=indices.device)
    return (indices[..., None] // basis) % torch.tensor(levels, device=indices.device)


@register("target.token_ids")
class TokenIdTarget(Target):
    """Cross-entropy on the tokenizer's token ids.

    Args:
      levels: the FSQ levels (codebook size = product).
      factorisation: ``codebook`` (one softmax over every code) or ``per_level``.
    """

    def __init__(self, levels: tuple[int, ...] = (8, 8, 8, 8, 8, 8),
                 factorisation: Literal["codebook", "per_level"] = "per_level"):
        super().__init__()
        if factorisation not in _FACTORISATIONS:
            raise ValueError(f"target.token_ids.factorisation must be one of {_FACTORISATIONS}, "
                             f"got {factorisation!r}")
        if not levels or any(int(level) < 2 for level in levels):
            raise ValueError(f"target.token_ids.levels must be integers ≥ 2, got {levels!r}")
        self.levels = [int(level) for level in levels]
        self.factorisation = factorisation

    def channels(self, in_channels: int, tubelet: tuple[int, int, int]) -> int:
        return math.prod(self.levels) if self.factorisation == "codebook" else sum(self.levels)

    def forward(self, batch: dict, plan: MaskPlan, tubelet: tuple[int, int, int]) -> torch.Tensor:
        """→ (b, q) long codebook indices, or (b, q, l) per-level digits."""
        if INDICES_KEY not in batch:
            raise KeyError("the batch has no precomputed 'indices' field: run the `precompute` command first")
        indices = batch[INDICES_KEY]
        if tuple(indices.shape[-3:]) != (plan.grid.t, plan.grid.h, plan.grid.w):
            raise ValueError(f"batch['indices'] has grid {tuple(indices.shape[-3:])}, the MAE's token "
                             f"grid is {plan.grid}")
        flat = rearrange(indices.long(), "b t h w -> b (t h w)")
        target = torch.gather(flat, 1, plan.dec_target_idx)
        return target if self.factorisation == "codebook" else level_digits(target, self.levels)

    def per_token_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.factorisation == "codebook":
            return F.cross_entropy(rearrange(prediction, "b q c -> b c q"), target.long(), reduction="none")
        losses = []
        for level, logits in zip(range(len(self.levels)), prediction.split(self.levels, dim=-1)):
            losses.append(F.cross_entropy(rearrange(logits, "b q c -> b c q"), target[..., level].long(),
                                          reduction="none"))
        return torch.stack(losses, dim=-1).mean(dim=-1)

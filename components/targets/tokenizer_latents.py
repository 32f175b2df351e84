"""Tokenizer-latent targets (LVMAE's default, docs/paper.md): regress the frozen tokenizer's
quantized latents at the decoder targets with a per-token MSE.

Axis legend: b batch, d latent width, t/h/w token grid, n = t·h·w, q decoder targets.
"""
from __future__ import annotations

import torch
from einops import rearrange

from lvmae.components.backbones.mae_decoder import gather_tokens
from lvmae.components.masking.plan import MaskPlan
from lvmae.components.targets.base import Target
from lvmae.registry import register

LATENTS_KEY = "latents"


def grid_tokens(batch: dict, key: str, plan: MaskPlan) -> torch.Tensor:
    """batch[key] (b, d, t, h, w) → tokens (b, n, d) in the plan's t-major order."""
    if key not in batch:
        raise KeyError(f"the batch has no precomputed {key!r} field: run the `precompute` command "
                       "for this dataset (or configure a live tokenizer)")
    grid = batch[key]
    if tuple(grid.shape[-3:]) != (plan.grid.t, plan.grid.h, plan.grid.w):
        raise ValueError(f"batch[{key!r}] has grid {tuple(grid.shape[-3:])}, the MAE's token grid is "
                         f"{plan.grid}: tokenizer stride and MAE tubelet must agree")
    return rearrange(grid, "b d t h w -> b (t h w) d")


@register("target.tokenizer_latents")
class TokenizerLatentTarget(Target):
    """MSE to the tokenizer's quantized latents (``latent_dim`` channels per token)."""

    def __init__(self, latent_dim: int = 6):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"target.tokenizer_latents.latent_dim must be ≥ 1, got {latent_dim}")
        self.latent_dim = int(latent_dim)

    def channels(self, in_channels: int, tubelet: tuple[int, int, int]) -> int:
        return self.latent_dim

    def forward(self, batch: dict, plan: MaskPlan, tubelet: tuple[int, int, int]) -> torch.Tensor:
        tokens = grid_tokens(batch, LATENTS_KEY, plan)
        if tokens.shape[-1] != self.latent_dim:
            raise ValueError(f"batch['latents'] has {tokens.shape[-1]} channels; "
                             f"target.tokenizer_latents.latent_dim is {self.latent_dim}")
        return gather_tokens(tokens.float(), plan.dec_target_idx)

    def per_token_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (prediction - target).pow(2).mean(dim=-1)

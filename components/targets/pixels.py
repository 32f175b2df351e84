"""Pixel targets (VideoMAE): each token's tubelet of pixels, optionally normalised per patch.

Axis legend: b batch, c colour channels, t/h/w token grid, pt/ph/pw tubelet, q targets.
"""
from __future__ import annotations

import torch
from einops import rearrange

from components.backbones.mae_decoder import gather_tokens
from components.masking.plan import MaskPlan
from components.targets.base import Target
from registry import register


def patchify(video: torch.Tensor, tubelet: tuple[int, int, int]) -> torch.Tensor:
    """video (b, c, T, H, W) → tokens (b, n, pt·ph·pw·c), n in t-major grid order."""
    pt, ph, pw = tubelet
    return rearrange(video, "b c (t pt) (h ph) (w pw) -> b (t h w) (pt ph pw c)", pt=pt, ph=ph, pw=pw)


@register("target.pixels")
class PixelTarget(Target):
    """Regress raw (or per-patch normalised, ``norm_pix``) pixels with a per-token MSE."""

    def __init__(self, norm_pix: bool = True, eps: float = 1e-6):
        super().__init__()
        self.norm_pix = bool(norm_pix)
        self.eps = eps

    def channels(self, in_channels: int, tubelet: tuple[int, int, int]) -> int:
        return in_channels * tubelet[0] * tubelet[1] * tubelet[2]

    def forward(self, batch: dict, plan: MaskPlan, tubelet: tuple[int, int, int]) -> torch.Tensor:
        patches = gather_tokens(patchify(batch["video"].float(), tubelet), plan.dec_target_idx)
        if self.norm_pix:
            mean = patches.mean(dim=-1, keepdim=True)
            var = patches.var(dim=-1, unbiased=True, keepdim=True)
            patches = (patches - mean) / (var + self.eps).sqrt()
        return patches

    def per_token_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (prediction - target).pow(2).mean(dim=-1)

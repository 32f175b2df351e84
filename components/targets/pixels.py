"""Pixel targets (VideoMAE): each token's tubelet of pixels, optionally normalised per patch.

Axis legend: b batch, c colour channels, t/h/w token grid, pt/ph/pw tubelet, q targets,
v voxels per channel (pt·ph·pw).
"""
from __future__ import annotations

from typing import Literal, get_args

import torch
from einops import rearrange

from lvmae.components.backbones.mae_decoder import gather_tokens
from lvmae.components.masking.plan import MaskPlan
from lvmae.components.targets.base import Target
from lvmae.registry import register

NormPix = Literal["none", "patch", "patch_channel"]


def patchify(video: torch.Tensor, tubelet: tuple[int, int, int]) -> torch.Tensor:
    """video (b, c, T, H, W) → tokens (b, n, pt·ph·pw·c), n in t-major grid order."""
    pt, ph, pw = tubelet
    return rearrange(video, "b c (t pt) (h ph) (w pw) -> b (t h w) (pt ph pw c)", pt=pt, ph=ph, pw=pw)


def unpatchify(tokens: torch.Tensor, tubelet: tuple[int, int, int], grid_thw: tuple[int, int, int],
               channels: int) -> torch.Tensor:
    """tokens (b, n, pt·ph·pw·c) → video (b, c, T, H, W); inverse of ``patchify``."""
    pt, ph, pw = tubelet
    t, h, w = grid_thw
    return rearrange(tokens, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)",
                     t=t, h=h, w=w, pt=pt, ph=ph, pw=pw, c=channels)


@register("target.pixels")
class PixelTarget(Target):
    """Regress pixels with a per-token MSE.

    Args:
      norm_pix: ``True``/``"patch"`` normalise each token's voxels to zero mean, unit variance
        (MAE); ``"patch_channel"`` does so per colour channel (VideoMAE / ``transformers``);
        ``False``/``"none"`` regress the (dataset-normalised) pixels.
      eps: added to the variance before the square root.
    """

    term = "pixels"

    def __init__(self, norm_pix: bool | NormPix = True, eps: float = 1e-6):
        super().__init__()
        if isinstance(norm_pix, bool):
            norm_pix = "patch" if norm_pix else "none"
        if norm_pix not in get_args(NormPix):
            raise ValueError(f"target.pixels.norm_pix must be a bool or one of {get_args(NormPix)}, "
                             f"got {norm_pix!r}")
        self.norm_pix = norm_pix
        self.eps = eps

    def channels(self, in_channels: int, tubelet: tuple[int, int, int]) -> int:
        return in_channels * tubelet[0] * tubelet[1] * tubelet[2]

    def normalise(self, patches: torch.Tensor, channels: int) -> torch.Tensor:
        """patches (b, q, v·c) → the same, normalised as configured."""
        if self.norm_pix == "none":
            return patches
        groups = rearrange(patches, "b q (v c) -> b q v c", c=channels)
        axis = (-2,) if self.norm_pix == "patch_channel" else (-2, -1)
        mean = groups.mean(dim=axis, keepdim=True)
        var = groups.var(dim=axis, unbiased=True, keepdim=True)
        return rearrange((groups - mean) / (var + self.eps).sqrt(), "b q v c -> b q (v c)")

    def denormalise(self, prediction: torch.Tensor, patches: torch.Tensor, channels: int) -> torch.Tensor:
        """Predictions (b, q, v·c) back to pixel space using the true patches' statistics
        (how MAE visualises norm-pix reconstructions)."""
        if self.norm_pix == "none":
            return prediction
        groups = rearrange(patches, "b q (v c) -> b q v c", c=channels)
        axis = (-2,) if self.norm_pix == "patch_channel" else (-2, -1)
        mean = groups.mean(dim=axis, keepdim=True)
        std = (groups.var(dim=axis, unbiased=True, keepdim=True) + self.eps).sqrt()
        pred = rearrange(prediction, "b q (v c) -> b q v c", c=channels)
        return rearrange(pred * std + mean, "b q v c -> b q (v c)")

    def forward(self, batch: dict, plan: MaskPlan, tubelet: tuple[int, int, int]) -> torch.Tensor:
        video = batch["video"].float()
        patches = gather_tokens(patchify(video, tubelet), plan.dec_target_idx)
        return self.normalise(patches, video.shape[1])

    def per_token_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (prediction - target).pow(2).mean(dim=-1)

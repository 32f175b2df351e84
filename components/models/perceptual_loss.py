"""An optional perceptual term computed by a network the user supplies as a local
``torch.export`` file (``.pt2``, e.g. an exported LPIPS/VGG trunk). Nothing is downloaded:
without a file there is no term.

Axis legend: b batch, C channels, T/H/W pixels, f frames sampled per clip.
"""
from __future__ import annotations

import os

import torch
from einops import rearrange
from torch import nn

from lvmae.registry import register


@register("model.perceptual_loss")
class PerceptualLoss(nn.Module):
    """Mean squared distance between the features of reconstructed and original frames.

    Args:
      checkpoint: path to a ``torch.export.save``d program mapping images (n, C, H, W) to a
        feature tensor or a list/tuple of feature tensors (compared level by level, each
        averaged); export it with a dynamic first axis, n = 2·b·frames_per_clip.
      frames_per_clip: frames sampled evenly per clip (image networks cost per frame).
    The network is frozen (an exported program keeps the mode it was exported in: export
    it in eval mode)."""

    def __init__(self, checkpoint: str, frames_per_clip: int = 4):
        super().__init__()
        if not checkpoint or not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"model.perceptual_loss.checkpoint: no file at {checkpoint!r} "
                                    f"(the perceptual network is never downloaded; export one "
                                    f"with torch.export.save)")
        if frames_per_clip < 1:
            raise ValueError(f"model.perceptual_loss.frames_per_clip must be ≥ 1, got {frames_per_clip}")
        try:
            network = torch.export.load(checkpoint).module()
        except Exception as error:
            raise ValueError(f"model.perceptual_loss.checkpoint {checkpoint!r} is not a "
                             f"torch.export program: {error}") from error
        self.network = network.requires_grad_(False)
        self.frames_per_clip = frames_per_clip

    def forward(self, recon: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """recon, video (b, C, T, H, W) → scalar."""
        frames = video.shape[2]
        picked = torch.linspace(0, frames - 1, min(self.frames_per_clip, frames)).round().long()
        pair = torch.cat([recon[:, :, picked], video[:, :, picked]])
        features = self.network(rearrange(pair, "b c f h w -> (b f) c h w"))
        levels = list(features) if isinstance(features, (list, tuple)) else [features]
        total = recon.new_zeros(())
        for level in levels:
            fake, real = level.float().chunk(2)
            total = total + (fake - real.detach()).pow(2).mean()
        return total / len(levels)

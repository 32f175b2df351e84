"""An optional 3-D video discriminator with the non-saturating GAN loss and the R1 penalty
(MAGVIT's recipe, docs/paper.md, lvmae's choice: generator weight 0.1, R1 cost 10).

Axis legend: b batch, C channels, T/H/W pixels, c width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lvmae.components.tokenizers.blocks3d import Downsample3D
from lvmae.registry import register

_LEAK = 0.2   # StyleGAN's leaky-ReLU slope


@register("model.video_discriminator")
class VideoDiscriminator(nn.Module):
    """Conv stem → ``stages`` × (conv, leaky ReLU, stride-2 down-sampling) → one logit per clip.

    video (b, C, T, H, W) → logits (b,); T, H, W must be ≥ 2**stages."""

    def __init__(self, in_channels: int = 3, base_channels: int = 32, stages: int = 3):
        super().__init__()
        if stages < 1 or base_channels < 1:
            raise ValueError("model.video_discriminator.stages and base_channels must be ≥ 1")
        layers: list[nn.Module] = [nn.Conv3d(in_channels, base_channels, 3, padding=1),
                                   nn.LeakyReLU(_LEAK)]
        width = base_channels
        for _ in range(stages):
            layers += [nn.Conv3d(width, 2 * width, 3, padding=1), nn.LeakyReLU(_LEAK),
                       Downsample3D(2 * width, (2, 2, 2)), nn.LeakyReLU(_LEAK)]
            width *= 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        features = self.body(video).mean(dim=(2, 3, 4))                       # (b, c)
        return self.head(features)[:, 0]


def generator_gan_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: −log σ(D(fake))."""
    return F.softplus(-fake_logits).mean()


def discriminator_gan_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """−log σ(D(real)) − log(1 − σ(D(fake)))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_video: torch.Tensor) -> torch.Tensor:
    """½·E‖∇_x D(x)‖² on real clips (Mescheder et al. 2018); ``real_video`` must require grad."""
    (gradient,) = torch.autograd.grad(real_logits.sum(), real_video, create_graph=True)
    return 0.5 * gradient.pow(2).flatten(1).sum(dim=1).mean()

"""EVEREST-like scores (Hwang et al., ICML 2024): the distance between a token's patch
embedding and the embedding of the same cell one latent frame earlier.

Axis legend: b batch, C channels, T/H/W pixels, d embedding width, t/h/w token grid.

EVEREST uses the MAE's own (learned) patch embedding; standalone we use a fixed random
tubelet embedding drawn from ``seed`` (random projections roughly preserve distances), or
any module the caller passes, e.g. a pre-trained encoder's ``patch_embed``.
"""
from __future__ import annotations

import torch
from torch import nn

from lvmae.components.scorers.base import FirstFrame, Scorer, adjacent_distance, check_choice, check_stride
from lvmae.registry import register


@register("scorer.feature_distance")
class FeatureDistanceScorer(Scorer):
    """score = ‖embed(x)[t] − embed(x)[t−1]‖₂ with a (frozen) tubelet embedding."""

    def __init__(self, in_channels: int = 3, stride: tuple[int, int, int] = (2, 16, 16),
                 embed_dim: int = 64, seed: int = 0, embedding: nn.Module | None = None,
                 first_frame: FirstFrame = "zero"):
        super().__init__()
        self.stride = check_stride(stride, "scorer.feature_distance.stride")
        self.first_frame = check_choice(first_frame, FirstFrame, "scorer.feature_distance.first_frame")
        if embedding is None:
            embedding = nn.Conv3d(in_channels, embed_dim, kernel_size=self.stride, stride=self.stride)
            generator = torch.Generator().manual_seed(seed)
            fan_in = in_channels * self.stride[0] * self.stride[1] * self.stride[2]
            with torch.no_grad():
                embedding.weight.copy_(torch.randn(embedding.weight.shape, generator=generator)
                                       / fan_in ** 0.5)
                embedding.bias.zero_()
        self.embedding = embedding.requires_grad_(False)
        # A caller-supplied embedding is not rebuilt from the config; its weights travel in
        # the state dict, so it must have the default embedding's shape to be reloaded.
        self._config = dict(in_channels=in_channels, stride=list(self.stride), embed_dim=embed_dim,
                            seed=seed, first_frame=first_frame)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (b, C, T, H, W) → scores (b, t, h, w) ≥ 0."""
        self.check_video(video)
        return self.with_first_frame(adjacent_distance(self.embedding(video).float()))

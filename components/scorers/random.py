"""Uniformly random scores: top-k of them is a random selection (the paper's "Random"
baseline, and the control of the scorer-learns test).

Axis legend: b batch, t/h/w token grid of stride (st, sh, sw).
"""
from __future__ import annotations

import torch

from lvmae.components.scorers.base import FirstFrame, Scorer, check_choice, check_stride
from lvmae.registry import register


@register("scorer.random")
class RandomScorer(Scorer):
    """Scores ~ U(0, 1) from the scorer's own generator (seeded, so a run is repeatable)."""

    def __init__(self, stride: tuple[int, int, int] = (2, 16, 16), seed: int = 0,
                 first_frame: FirstFrame = "zero"):
        super().__init__()
        self.stride = check_stride(stride, "scorer.random.stride")
        self.first_frame = check_choice(first_frame, FirstFrame, "scorer.random.first_frame")
        self.generator = torch.Generator().manual_seed(seed)
        self._config = dict(stride=list(self.stride), seed=seed, first_frame=first_frame)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (b, C, T, H, W) → scores (b, t, h, w) in [0, 1)."""
        self.check_video(video)
        b = video.shape[0]
        t, h, w = (n // s for n, s in zip(video.shape[2:], self.stride))
        later = torch.rand(b, t - 1, h, w, generator=self.generator).to(video.device)
        return self.with_first_frame(later)

"""Frame-difference energy per token — our stand-in for the paper's optical-flow baseline
(docs/paper.md, baselines "Flow": moving regions score high; like flow it also fires on camera motion and
flicker, which is what the learned scorer is meant to ignore).

Axis legend: b batch, C channels, T/H/W pixels, t/h/w token grid of stride (st, sh, sw).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lvmae.components.scorers.base import FirstFrame, Scorer, check_choice, check_stride
from lvmae.registry import register


@register("scorer.motion")
class MotionScorer(Scorer):
    """score(token) = mean over its tubelet of Σ_C (x[f] − x[f−1])²; parameter-free.

    Frame 0 of the clip has no predecessor, so latent frame 0 lacks its first difference and
    follows ``first_frame`` like every scorer."""

    def __init__(self, stride: tuple[int, int, int] = (2, 16, 16), first_frame: FirstFrame = "zero"):
        super().__init__()
        self.stride = check_stride(stride, "scorer.motion.stride")
        self.first_frame = check_choice(first_frame, FirstFrame, "scorer.motion.first_frame")
        self._config = dict(stride=list(self.stride), first_frame=first_frame)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (b, C, T, H, W) → scores (b, t, h, w) ≥ 0."""
        self.check_video(video)
        energy = (video[:, :, 1:] - video[:, :, :-1]).float().pow(2).sum(dim=1, keepdim=True)
        energy = F.pad(energy, (0, 0, 0, 0, 1, 0))                # (b, 1, T, H, W), frame 0 = 0
        pooled = F.avg_pool3d(energy, kernel_size=self.stride, stride=self.stride)[:, 0]
        return self.with_first_frame(pooled[:, 1:])

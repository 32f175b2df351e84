"""The LVMAE token scorer (docs/paper.md, tokenizer and scorer): two strided 3-D convs on the
raw clip whose output grid equals the token grid; a token's score is the L2 distance between its feature and the
feature of the same spatial cell one latent frame earlier. Trained jointly with the tokenizer
through a differentiable top-k (``model.adaptive_tokenizer``).

Axis legend: b batch, C channels, T/H/W pixels, c feature width, t/h/w token grid.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lvmae.components.scorers.base import FirstFrame, Scorer, adjacent_distance, check_choice, check_stride
from lvmae.registry import register


def _split_stride(value: int) -> tuple[int, int]:
    """A stride s → (s1, s2) with s1·s2 = s and s1 ≤ s2 (both layers shrink the grid)."""
    first = 2 ** (int(math.log2(value)) // 2) if value & (value - 1) == 0 else 1
    return first, value // first


class _TimeReplicateConv3d(nn.Conv3d):
    """Pads time by repeating the clip's edge frames and space with zeros: a zero frame beyond
    the clip would look like motion, so the last latent frame of every window scored high."""

    def __init__(self, *args, time_padding: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.time_padding = time_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_padding:
            x = F.pad(x, (0, 0, 0, 0, self.time_padding, self.time_padding), mode="replicate")
        return super().forward(x)


def _conv(in_channels: int, out_channels: int, stride: tuple[int, int, int]) -> nn.Conv3d:
    """Kernel 2s with padding s/2 (3 and 1 when s = 1): output length exactly input/s, and each
    cell sees its neighbours' half-cells, so a moving edge is not lost at a cell border."""
    kernel = tuple(3 if s == 1 else 2 * s for s in stride)
    padding = tuple(1 if s == 1 else s // 2 for s in stride)
    return _TimeReplicateConv3d(in_channels, out_channels, kernel, stride=stride,
                                padding=(0, *padding[1:]), time_padding=padding[0])


@register("scorer.learned")
class LearnedScorer(Scorer):
    """Conv3d(C→c, stride (1, sh1, sw1)) → GELU → Conv3d(c→c, stride (st, sh2, sw2)).

    Args:
      in_channels: video channels C.
      channels: feature width c.
      stride: the tokenizer's (st, sh, sw); each spatial stride is split across the two layers,
        the time stride is taken by the second one (so the first sees full frame rate).
      first_frame: score given to latent frame 0 (see ``components.scorers.base``).
    """

    def __init__(self, in_channels: int = 3, channels: int = 32,
                 stride: tuple[int, int, int] = (2, 16, 16), first_frame: FirstFrame = "zero"):
        super().__init__()
        self.stride = check_stride(stride, "scorer.learned.stride")
        self.first_frame = check_choice(first_frame, FirstFrame, "scorer.learned.first_frame")
        st, sh, sw = self.stride
        (sh1, sh2), (sw1, sw2) = _split_stride(sh), _split_stride(sw)
        self.conv1 = _conv(in_channels, channels, (1, sh1, sw1))
        self.conv2 = _conv(channels, channels, (st, sh2, sw2))
        self._config = dict(in_channels=in_channels, channels=channels, stride=list(self.stride),
                            first_frame=first_frame)

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """video (b, C, T, H, W) → features (b, c, t, h, w)."""
        self.check_video(video)
        return self.conv2(F.gelu(self.conv1(video)))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (b, C, T, H, W) → scores (b, t, h, w) ≥ 0."""
        return self.with_first_frame(adjacent_distance(self.features(video)))

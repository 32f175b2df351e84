"""3-D convolution blocks of the MAGVIT-style autoencoder: residual blocks with GroupNorm and
swish (MAGVIT, Yu et al. 2023), strided down-sampling and nearest up-sampling + conv.

Axis legend: b batch, c channels, t/h/w (latent) frames, height, width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# MAGVIT's GroupNorm uses 32 groups; narrow CPU-sized models get as many as divide them.
_MAX_GROUPS = 32


def group_norm(channels: int) -> nn.GroupNorm:
    groups = max(g for g in range(1, min(_MAX_GROUPS, channels) + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=1e-6)


def conv3(in_channels: int, out_channels: int) -> nn.Conv3d:
    """3×3×3 'same' convolution (non-causal: each frame sees one frame either side)."""
    return nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)


class ResBlock3D(nn.Module):
    """x → x + conv(swish(norm(conv(swish(norm(x)))))); a 1×1×1 conv on the skip when the
    width changes. (b, c_in, t, h, w) → (b, c_out, t, h, w)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = conv3(in_channels, out_channels)
        self.norm2 = group_norm(out_channels)
        self.conv2 = conv3(out_channels, out_channels)
        self.skip = (nn.Identity() if in_channels == out_channels
                     else nn.Conv3d(in_channels, out_channels, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Downsample3D(nn.Module):
    """Strided 3-D conv: (b, c, t, h, w) → (b, c, t/st, h/sh, w/sw), stride entries 1 or 2.

    The kernel is 3 along a strided axis with asymmetric padding (0 before, 1 after), so an
    even length halves exactly and no frame leaks across the halving boundary's start."""

    def __init__(self, channels: int, stride: tuple[int, int, int]):
        super().__init__()
        self.stride = tuple(stride)
        self.conv = nn.Conv3d(channels, channels, kernel_size=3, stride=self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.pad order: (w_before, w_after, h_before, h_after, t_before, t_after).
        pad = []
        for s in reversed(self.stride):
            pad += [0, 1] if s == 2 else [1, 1]
        return self.conv(F.pad(x, pad))


class Upsample3D(nn.Module):
    """Nearest up-sampling then a 3×3×3 conv (avoids transposed-conv checkerboards):
    (b, c, t, h, w) → (b, c, t·st, h·sh, w·sw)."""

    def __init__(self, channels: int, scale: tuple[int, int, int]):
        super().__init__()
        self.scale = tuple(float(s) for s in scale)
        self.conv = conv3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))

"""The MAGVIT-style 3-D CNN autoencoder (Yu et al., CVPR 2023) with a pluggable quantizer.

Axis legend: b batch, C channels, T/H/W pixels, c width, d latent dimension, t/h/w token grid.

Encoder: 3×3×3 stem → per stage: residual blocks (GroupNorm, swish) then a stride-2 conv
along the axes that still need down-sampling → residual blocks → norm, swish, 1×1×1 conv to
d = quantizer.dim. Decoder mirrors it with nearest up-sampling. The stride (st, sh, sw) —
(2, 16, 16) by default, so a 16-frame 224² window gives the MAE's 8×14×14 tubelet grid —
must be powers of two; there are log2(max stride) stages, time being halved in the first
log2(st) of them (MAGVIT halves time early too).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lvmae.components.tokenizers.base import Tokenizer, component_config
from lvmae.components.tokenizers.blocks3d import Downsample3D, ResBlock3D, Upsample3D, conv3, group_norm
from lvmae.components.tokenizers.fsq import FSQ
from lvmae.components.tokenizers.quantizer import Quantizer
from lvmae.registry import register


def stage_strides(stride: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """(st, sh, sw) → per-stage strides of 1 or 2, e.g. (2, 4, 4) → [(2, 2, 2), (1, 2, 2)]."""
    halvings = []
    for axis, value in zip("thw", stride):
        if value < 1 or value & (value - 1):
            raise ValueError(f"tokenizer stride along {axis} must be a power of two, got {value} "
                             f"(stride={tuple(stride)})")
        halvings.append(int(math.log2(value)))
    stages = max(halvings)
    return [tuple(2 if i < n else 1 for n in halvings) for i in range(stages)]


class MagvitEncoder(nn.Module):
    """video (b, C, T, H, W) → latents (b, d, T/st, H/sh, W/sw)."""

    def __init__(self, in_channels: int, latent_dim: int, widths: list[int],
                 strides: list[tuple[int, int, int]], num_res_blocks: int):
        super().__init__()
        self.stem = conv3(in_channels, widths[0])
        layers: list[nn.Module] = []
        width = widths[0]
        for stage_width, stride in zip(widths[1:], strides):
            for _ in range(num_res_blocks):
                layers.append(ResBlock3D(width, stage_width))
                width = stage_width
            if width != stage_width:
                layers.append(nn.Conv3d(width, stage_width, kernel_size=1))
                width = stage_width
            layers.append(Downsample3D(width, stride))
        layers += [ResBlock3D(width, width) for _ in range(num_res_blocks)]
        self.body = nn.Sequential(*layers)
        self.norm = group_norm(width)
        self.head = nn.Conv3d(width, latent_dim, kernel_size=1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.head(F.silu(self.norm(self.body(self.stem(video)))))


class MagvitDecoder(nn.Module):
    """latents (b, d, t, h, w) → video (b, C, t·st, h·sh, w·sw); mirrors the encoder."""

    def __init__(self, out_channels: int, latent_dim: int, widths: list[int],
                 strides: list[tuple[int, int, int]], num_res_blocks: int):
        super().__init__()
        width = widths[-1]
        layers: list[nn.Module] = [conv3(latent_dim, width)]
        layers += [ResBlock3D(width, width) for _ in range(num_res_blocks)]
        for stage_width, stride in zip(reversed(widths[:-1]), reversed(strides)):
            layers.append(Upsample3D(width, stride))
            for _ in range(num_res_blocks):
                layers.append(ResBlock3D(width, stage_width))
                width = stage_width
            if width != stage_width:
                layers.append(nn.Conv3d(width, stage_width, kernel_size=1))
                width = stage_width
        self.body = nn.Sequential(*layers)
        self.norm = group_norm(width)
        self.head = conv3(width, out_channels)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.head(F.silu(self.norm(self.body(latents))))


@register("tokenizer.magvit")
class MagvitTokenizer(Tokenizer):
    """MAGVIT 3-D CNN autoencoder + quantizer (FSQ ``[8]*6`` — 18 bits — by default).

    Args:
      in_channels: video channels C.
      base_channels: width of the stem; stage i has ``base_channels · channel_multipliers[i]``.
      channel_multipliers: one per down-sampling stage (log2 of the largest stride).
      num_res_blocks: residual blocks per stage (≥ 1).
      stride: (st, sh, sw), powers of two; the token grid is (T/st, H/sh, W/sw).
      window_frames: the clip length the tokenizer is trained on (multiple of st).
      quantizer: a built quantizer (``@quantizer.fsq()`` / ``@quantizer.lfq()``), or None for
        the default FSQ.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64,
                 channel_multipliers: tuple[int, ...] = (1, 2, 2, 4), num_res_blocks: int = 2,
                 stride: tuple[int, int, int] = (2, 16, 16), window_frames: int = 16,
                 quantizer: Quantizer | None = None):
        super().__init__()
        strides = stage_strides(tuple(stride))
        if len(channel_multipliers) != len(strides):
            raise ValueError(f"tokenizer.magvit.channel_multipliers needs one entry per "
                             f"down-sampling stage ({len(strides)} for stride {tuple(stride)}), "
                             f"got {tuple(channel_multipliers)}")
        if num_res_blocks < 1 or base_channels < 1:
            raise ValueError("tokenizer.magvit.num_res_blocks and base_channels must be ≥ 1")
        if window_frames < 1 or window_frames % stride[0]:
            raise ValueError(f"tokenizer.magvit.window_frames={window_frames} must be a positive "
                             f"multiple of the time stride {stride[0]}")
        self.quantizer = quantizer if quantizer is not None else FSQ()
        if not isinstance(self.quantizer, Quantizer):
            raise TypeError(f"tokenizer.magvit.quantizer must be a built quantizer, got {quantizer!r}")
        self.stride = tuple(int(s) for s in stride)
        self.window_frames = int(window_frames)
        self.in_channels = int(in_channels)
        widths = [base_channels] + [base_channels * m for m in channel_multipliers]
        self.encoder = MagvitEncoder(in_channels, self.latent_dim, widths, strides, num_res_blocks)
        self.decoder = MagvitDecoder(in_channels, self.latent_dim, widths, strides, num_res_blocks)
        self._config = dict(in_channels=in_channels, base_channels=base_channels,
                            channel_multipliers=list(channel_multipliers),
                            num_res_blocks=num_res_blocks, stride=list(self.stride),
                            window_frames=window_frames,
                            quantizer=component_config(self.quantizer))

    def encode_continuous(self, video: torch.Tensor) -> torch.Tensor:
        """video (b, C, T, H, W) → pre-quantisation latents (b, d, T/st, H/sh, W/sw)."""
        self.check_video(video)
        return self.encoder(video)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (b, d, t, h, w) → video (b, C, t·st, h·sh, w·sw)."""
        if latents.dim() != 5 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"tokenizer.magvit.decode expects (b, {self.latent_dim}, t, h, w), "
                             f"got {tuple(latents.shape)}")
        return self.decoder(latents)

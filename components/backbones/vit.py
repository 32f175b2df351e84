"""Video ViT encoder with tubelet embedding (VideoMAE), run on the kept tokens only.

Axis legend: b batch, c channels, T frames, H/W pixels, t/h/w token grid, n = t·h·w,
k kept tokens, d width.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from components.backbones.positions import sincos_3d
from components.backbones.transformer import Block
from components.masking.plan import TokenGrid
from registry import register, set_contract, subclass_of


class VideoViT(nn.Module):
    """Tubelet embedding → fixed 3-D sin-cos positions → pre-norm blocks → LayerNorm."""

    def __init__(self, clip_frames: int, image_size: int, tubelet: tuple[int, int, int] = (2, 16, 16),
                 dim: int = 768, depth: int = 12, heads: int = 12, mlp_ratio: float = 4.0,
                 in_channels: int = 3):
        super().__init__()
        tt, ph, pw = tubelet
        if clip_frames % tt or image_size % ph or image_size % pw:
            raise ValueError(f"clip_frames={clip_frames} and image_size={image_size} must be "
                             f"divisible by the tubelet {tuple(tubelet)}")
        self.tubelet = (tt, ph, pw)
        self.in_channels = in_channels
        self.dim = dim
        self.grid = TokenGrid(clip_frames // tt, image_size // ph, image_size // pw)
        self.patch_embed = nn.Conv3d(in_channels, dim, kernel_size=self.tubelet, stride=self.tubelet)
        self.register_buffer("pos_embed", sincos_3d(self.grid, dim), persistent=False)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """video (b, c, T, H, W) → tokens (b, n, d) with positions added."""
        tokens = rearrange(self.patch_embed(video), "b d t h w -> b (t h w) d")
        if tokens.shape[1] != self.grid.n:
            raise ValueError(f"clip gives {tokens.shape[1]} tokens, the encoder was built for "
                             f"{self.grid} ({self.grid.n}); check clip_frames/image_size")
        return tokens + self.pos_embed

    def forward(self, video: torch.Tensor, enc_keep_idx: torch.Tensor | None = None) -> torch.Tensor:
        """video (b, c, T, H, W)[, enc_keep_idx (b, k)] → features (b, k or n, d)."""
        tokens = self.embed(video)
        if enc_keep_idx is not None:
            tokens = torch.gather(tokens, 1, enc_keep_idx[..., None].expand(-1, -1, self.dim))
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)


set_contract("backbone", subclass_of(nn.Module))

_PRESETS = {"tiny": (192, 4, 3), "s": (384, 12, 6), "b": (768, 12, 12), "l": (1024, 24, 16)}


def _preset(name: str):
    dim, depth, heads = _PRESETS[name]

    def build(clip_frames: int = 16, image_size: int = 224,
              tubelet: tuple[int, int, int] = (2, 16, 16), in_channels: int = 3) -> VideoViT:
        return VideoViT(clip_frames, image_size, tuple(tubelet), dim, depth, heads,
                        in_channels=in_channels)

    build.__name__ = build.__qualname__ = f"vit_{name}"
    build.__doc__ = f"ViT-{name.upper()}: width {dim}, depth {depth}, {heads} heads."
    return build


register("backbone.vit")(VideoViT)
for _name in _PRESETS:
    register(f"backbone.vit_{_name}")(_preset(_name))

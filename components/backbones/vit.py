"""Video ViT encoder with tubelet embedding (VideoMAE), run on the kept tokens only.

Axis legend: b batch, c channels, T frames, H/W pixels, t/h/w token grid, n = t·h·w,
k kept tokens, d width.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from lvmae.components.backbones.positions import PositionKind, attach_positions
from lvmae.components.backbones.transformer import Block, init_weights, matmul_flops, run_blocks
from lvmae.components.masking.plan import TokenGrid
from lvmae.registry import register, set_contract, subclass_of


class VideoViT(nn.Module):
    """Tubelet embedding → positions → pre-norm blocks → LayerNorm.

    Args:
      clip_frames, image_size: the clip the encoder is built for (fixes the token grid).
      tubelet: (t, p, p) voxels per token; 2×16×16 gives 8×14×14 tokens per 16 frames at 224².
      positions: ``sincos_3d`` (fixed, per axis), ``sincos_1d`` (fixed, VideoMAE's table over
        the flattened index: exact ``transformers`` parity) or ``learned`` (parameter
        ``pos_embed`` (1, n, d)).
      norm_eps: LayerNorm epsilon (VideoMAE checkpoints use 1e-12).
      final_norm: LayerNorm after the last block (``transformers``' ``use_mean_pooling=False``).
      grad_checkpointing: recompute block activations in backward.
    """

    def __init__(self, clip_frames: int, image_size: int, tubelet: tuple[int, int, int] = (2, 16, 16),
                 dim: int = 768, depth: int = 12, heads: int = 12, mlp_ratio: float = 4.0,
                 in_channels: int = 3, positions: PositionKind = "sincos_3d", norm_eps: float = 1e-6,
                 qkv_bias: bool = True, final_norm: bool = True, grad_checkpointing: bool = False):
        super().__init__()
        tt, ph, pw = tubelet
        if clip_frames % tt or image_size % ph or image_size % pw:
            raise ValueError(f"clip_frames={clip_frames} and image_size={image_size} must be "
                             f"divisible by the tubelet {tuple(tubelet)}")
        self.tubelet = (tt, ph, pw)
        self.in_channels = in_channels
        self.dim = dim
        self.heads = heads
        self.mlp_ratio = mlp_ratio
        self.grad_checkpointing = grad_checkpointing
        self.grid = TokenGrid(clip_frames // tt, image_size // ph, image_size // pw)
        self.patch_embed = nn.Conv3d(in_channels, dim, kernel_size=self.tubelet, stride=self.tubelet)
        attach_positions(self, positions, self.grid, dim, "backbone.vit.positions")
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, qkv_bias, norm_eps) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if final_norm else nn.Identity()
        init_weights(self)

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.grad_checkpointing = enabled

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """video (b, c, T, H, W) → tokens (b, n, d) with positions added."""
        tokens = rearrange(self.patch_embed(video), "b d t h w -> b (t h w) d")
        if tokens.shape[1] != self.grid.n:
            raise ValueError(f"clip gives {tokens.shape[1]} tokens, the encoder was built for "
                             f"{self.grid} ({self.grid.n}); check clip_frames/image_size")
        return tokens + self.pos_embed.to(tokens.dtype)

    def forward(self, video: torch.Tensor, enc_keep_idx: torch.Tensor | None = None) -> torch.Tensor:
        """video (b, c, T, H, W)[, enc_keep_idx (b, k)] → features (b, k or n, d)."""
        tokens = self.embed(video)
        if enc_keep_idx is not None:
            tokens = torch.gather(tokens, 1, enc_keep_idx[..., None].expand(-1, -1, self.dim))
        return self.norm(run_blocks(self.blocks, tokens, self.grad_checkpointing))

    def forward_layers(self, video: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """video (b, c, T, H, W) → the outputs of blocks ``layers`` (0-based; negative counts
        from the last block), each through the final norm: a list of (b, n, d) in that order.
        Frozen evaluation reads intermediate layers this way (V-JEPA 2's ``out_layers``): an
        MAE's last blocks specialise in reconstruction, earlier ones often probe better."""
        depth = len(self.blocks)
        wanted = [layer % depth if -depth <= layer < depth else None for layer in layers]
        if None in wanted or not wanted:
            raise ValueError(f"layers {tuple(layers)} must be block indices in [-{depth}, {depth - 1}] "
                             f"(the encoder has {depth} blocks)")
        outputs, tokens = {}, self.embed(video)
        for index, block in enumerate(self.blocks[:max(wanted) + 1]):
            tokens = block(tokens)
            if index in wanted:
                outputs[index] = self.norm(tokens)
        return [outputs[index] for index in wanted]

    def flops(self, kept_tokens: int | None = None) -> int:
        """Forward matmul FLOPs for one clip with ``kept_tokens`` tokens (default: all)."""
        kept = self.grid.n if kept_tokens is None else kept_tokens
        voxels = self.in_channels * self.tubelet[0] * self.tubelet[1] * self.tubelet[2]
        patch = 2 * self.grid.n * voxels * self.dim
        return patch + len(self.blocks) * matmul_flops(kept, self.dim, self.mlp_ratio)


set_contract("backbone", subclass_of(nn.Module, forward=("video", "enc_keep_idx")))

#: name → (width, depth, heads); ViT-B and ViT-L as in VideoMAE.
PRESETS = {"tiny": (192, 4, 3), "s": (384, 12, 6), "b": (768, 12, 12), "l": (1024, 24, 16)}


def _preset(name: str):
    dim, depth, heads = PRESETS[name]

    def build(clip_frames: int = 16, image_size: int = 224,
              tubelet: tuple[int, int, int] = (2, 16, 16), in_channels: int = 3,
              positions: PositionKind = "sincos_3d", norm_eps: float = 1e-6,
              final_norm: bool = True, grad_checkpointing: bool = False) -> VideoViT:
        return VideoViT(clip_frames, image_size, tuple(tubelet), dim, depth, heads,
                        in_channels=in_channels, positions=positions, norm_eps=norm_eps,
                        final_norm=final_norm, grad_checkpointing=grad_checkpointing)

    build.__name__ = build.__qualname__ = f"vit_{name}"
    build.__doc__ = f"ViT-{name.upper()}: width {dim}, depth {depth}, {heads} heads."
    return build


register("backbone.vit")(VideoViT)
vit_tiny = register("backbone.vit_tiny")(_preset("tiny"))
vit_s = register("backbone.vit_s")(_preset("s"))
vit_b = register("backbone.vit_b")(_preset("b"))
vit_l = register("backbone.vit_l")(_preset("l"))

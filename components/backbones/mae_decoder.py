"""MAE decoder: runs on the encoder's kept tokens plus ``[MASK]`` queries at ``dec_target_idx``
only — never on every token (the point of dual masking, docs/paper.md).

Axis legend: b batch, k kept tokens, q decoder targets, d encoder width, e decoder width,
c target channels.
"""
from __future__ import annotations

import torch
from torch import nn

from lvmae.components.backbones.positions import PositionKind, attach_positions
from lvmae.components.backbones.transformer import Block, init_weights, matmul_flops, run_blocks
from lvmae.components.masking.plan import MaskPlan, TokenGrid
from lvmae.registry import register, set_contract, subclass_of


def gather_tokens(tokens: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """tokens (b, n, d), idx (b, m) → (b, m, d)."""
    return torch.gather(tokens, 1, idx[..., None].expand(-1, -1, tokens.shape[-1]))


@register("decoder.mae")
class MAEDecoder(nn.Module):
    """Light transformer decoder (VideoMAE: 4 blocks, 384 wide / 6 heads for ViT-B, 512 / 8 for L).

    Args:
      encoder_dim, out_dim, grid: given by ``model.mae``.
      positions: as for the encoder (``sincos_1d`` for ``transformers`` parity).
      norm_eps: LayerNorm epsilon inside the blocks; head_norm_eps: before the head
        (``transformers`` uses 1e-12 and PyTorch's default 1e-5 respectively).
      proj_bias: bias of the encoder→decoder projection (VideoMAE has none).
    """

    def __init__(self, encoder_dim: int, out_dim: int, grid: TokenGrid, dim: int = 384,
                 depth: int = 4, heads: int = 6, mlp_ratio: float = 4.0,
                 positions: PositionKind = "sincos_3d", norm_eps: float = 1e-6,
                 head_norm_eps: float = 1e-6, qkv_bias: bool = True, proj_bias: bool = True,
                 grad_checkpointing: bool = False):
        super().__init__()
        self.dim = dim
        self.mlp_ratio = mlp_ratio
        self.grad_checkpointing = grad_checkpointing
        self.proj_in = nn.Linear(encoder_dim, dim, bias=proj_bias)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        attach_positions(self, positions, grid, dim, "decoder.mae.positions")
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, qkv_bias, norm_eps) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=head_norm_eps)
        self.head = nn.Linear(dim, out_dim)
        init_weights(self)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.grad_checkpointing = enabled

    def forward(self, enc_features: torch.Tensor, plan: MaskPlan) -> torch.Tensor:
        """enc_features (b, k, d), plan → predictions (b, q, c) at ``plan.dec_target_idx``."""
        kept = self.proj_in(enc_features)
        pos = self.pos_embed.to(kept.dtype).expand(enc_features.shape[0], -1, -1)
        kept = kept + gather_tokens(pos, plan.enc_keep_idx)
        queries = self.mask_token.to(kept.dtype) + gather_tokens(pos, plan.dec_target_idx)
        x = run_blocks(self.blocks, torch.cat([kept, queries], dim=1), self.grad_checkpointing)
        return self.head(self.norm(x[:, kept.shape[1]:]))

    def flops(self, kept_tokens: int, target_tokens: int, encoder_dim: int) -> int:
        """Forward matmul FLOPs for one clip: projection, blocks on k + q tokens, head on q."""
        tokens = kept_tokens + target_tokens
        return (2 * kept_tokens * encoder_dim * self.dim
                + len(self.blocks) * matmul_flops(tokens, self.dim, self.mlp_ratio)
                + 2 * target_tokens * self.dim * self.head.out_features)


def _preset(name: str, dim: int, heads: int):
    def build(encoder_dim: int, out_dim: int, grid: TokenGrid, depth: int = 4,
              positions: PositionKind = "sincos_3d", grad_checkpointing: bool = False) -> MAEDecoder:
        return MAEDecoder(encoder_dim, out_dim, grid, dim=dim, depth=depth, heads=heads,
                          positions=positions, grad_checkpointing=grad_checkpointing)

    build.__name__ = build.__qualname__ = f"mae_{name}"
    build.__doc__ = f"VideoMAE decoder for ViT-{name.upper()}: {dim} wide, {heads} heads."
    return build


mae_b = register("decoder.mae_b")(_preset("b", dim=384, heads=6))
mae_l = register("decoder.mae_l")(_preset("l", dim=512, heads=8))

set_contract("decoder", subclass_of(nn.Module, forward=("enc_features", "plan")))

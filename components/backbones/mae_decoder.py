"""MAE decoder: runs on the encoder's kept tokens plus ``[MASK]`` queries at ``dec_target_idx``
only — never on every token (the point of dual masking, PAPER.md §1).

Axis legend: b batch, k kept tokens, q decoder targets, d encoder width, e decoder width,
c target channels.
"""
from __future__ import annotations

import torch
from torch import nn

from components.backbones.positions import sincos_3d
from components.backbones.transformer import Block
from components.masking.plan import MaskPlan, TokenGrid
from registry import register, set_contract, subclass_of


def gather_tokens(tokens: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """tokens (b, n, d), idx (b, m) → (b, m, d)."""
    return torch.gather(tokens, 1, idx[..., None].expand(-1, -1, tokens.shape[-1]))


@register("decoder.mae")
class MAEDecoder(nn.Module):
    """Light transformer decoder (VideoMAE: 4 blocks, 384 wide for ViT-B)."""

    def __init__(self, encoder_dim: int, out_dim: int, grid: TokenGrid, dim: int = 384,
                 depth: int = 4, heads: int = 6, mlp_ratio: float = 4.0):
        super().__init__()
        self.proj_in = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("pos_embed", sincos_3d(grid, dim)[None], persistent=False)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, enc_features: torch.Tensor, plan: MaskPlan) -> torch.Tensor:
        """enc_features (b, k, d), plan → predictions (b, q, c) at ``plan.dec_target_idx``."""
        pos = self.pos_embed.expand(enc_features.shape[0], -1, -1)
        kept = self.proj_in(enc_features) + gather_tokens(pos, plan.enc_keep_idx)
        queries = self.mask_token + gather_tokens(pos, plan.dec_target_idx)
        x = torch.cat([kept, queries], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, kept.shape[1]:]))


set_contract("decoder", subclass_of(nn.Module))

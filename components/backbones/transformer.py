"""Pre-norm transformer block with ``scaled_dot_product_attention`` (flash on GPU).

Axis legend: b batch, n tokens, d width, a heads, e head width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint


class Attention(nn.Module):
    """Multi-head self-attention; q, k, v come from one fused linear (``qkv``)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (b, n, d) → (b, n, d)."""
        q, k, v = rearrange(self.qkv(x), "b n (three a e) -> three b a n e", three=3, a=self.heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, "b a n e -> b n (a e)"))


class Block(nn.Module):
    """x + attn(norm(x)); x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, grad_checkpointing: bool) -> torch.Tensor:
    """Applies ``blocks`` in order; with ``grad_checkpointing`` each block's activations are
    recomputed in backward instead of stored (memory for ~30% more compute at long clips)."""
    for block in blocks:
        if grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(block, x, use_reentrant=False)
        else:
            x = block(x)
    return x


def init_weights(module: nn.Module) -> None:
    """MAE/VideoMAE initialisation: xavier-uniform linears with zero bias, unit LayerNorms,
    the patch projection initialised like a linear layer on the flattened tubelet."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.xavier_uniform_(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Conv3d):
            nn.init.xavier_uniform_(sub.weight.view(sub.weight.shape[0], -1))
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)


def matmul_flops(tokens: int, dim: int, mlp_ratio: float) -> int:
    """Forward multiply-add FLOPs (×2) of one block on ``tokens`` tokens: qkv 6nd², proj 2nd²,
    MLP 4·r·nd², attention scores and weighted sum 4n²d."""
    hidden = int(dim * mlp_ratio)
    linear = 2 * tokens * dim * (3 * dim) + 2 * tokens * dim * dim + 2 * 2 * tokens * dim * hidden
    return linear + 4 * tokens * tokens * dim

"""Classification heads on encoder features: pooling + linear.

Axis legend: b batch, n tokens, d width, k classes, a heads, e head width.

Every head maps features (b, n, d) → logits (b, k). ``needs_tokens`` says whether the head
looks at individual tokens (attention pooling) or only at their mean — probes use it to
cache (b, 1, d) means instead of (b, n, d) tokens.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lvmae.registry import register, set_contract, subclass_of

# timm / VideoMAE initialise classifier weights with a small std so that the first logits
# are near zero and a pre-trained encoder is not disturbed by a large random head.
_HEAD_INIT_STD = 0.02


def _init_linear(fc: nn.Linear) -> None:
    nn.init.trunc_normal_(fc.weight, std=_HEAD_INIT_STD)
    nn.init.zeros_(fc.bias)


def _check(dim: int, num_classes: int, dropout: float, owner: str) -> None:
    if dim < 1 or num_classes < 1:
        raise ValueError(f"{owner}: dim and num_classes must be ≥ 1, got {dim}, {num_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{owner}.dropout must lie in [0, 1), got {dropout!r}")


@register("head.mean_linear")
class MeanPoolLinear(nn.Module):
    """Mean over tokens → LayerNorm → dropout → linear (the paper's ViT-B head, §3.3)."""

    needs_tokens = False

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        _check(dim, num_classes, dropout, "head.mean_linear")
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)
        _init_linear(self.fc)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (b, n, d) → logits (b, k)."""
        return self.fc(self.dropout(self.norm(features.mean(dim=1))))


@register("head.class_attention")
class ClassAttentionPool(nn.Module):
    """One layer of class-attention pooling (CaiT), the paper's ViT-L head (docs/paper.md, fine-tuning).

    A learned class token attends to [class token; tokens] — only the class token is
    updated, so the cost is linear in n — then a residual MLP, LayerNorm, dropout, linear.
    """

    needs_tokens = True

    def __init__(self, dim: int, num_classes: int, heads: int = 0, mlp_ratio: float = 4.0,
                 dropout: float = 0.0):
        super().__init__()
        _check(dim, num_classes, dropout, "head.class_attention")
        # 64-wide attention heads are the ViT convention; 0 picks that (at least one head).
        heads = heads or max(1, dim // 64)
        if dim % heads:
            raise ValueError(f"head.class_attention.heads={heads} must divide the width {dim}")
        self.heads = heads
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=_HEAD_INIT_STD)
        self.norm_tokens = nn.LayerNorm(dim, eps=1e-6)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)
        _init_linear(self.fc)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """features (b, n, d) → pooled (b, d)."""
        cls = self.cls_token.expand(features.shape[0], -1, -1)                     # (b, 1, d)
        context = self.norm_tokens(torch.cat([cls, features], dim=1))             # (b, 1+n, d)
        q = rearrange(self.q(context[:, :1]), "b one (a e) -> b a one e", a=self.heads)
        k, v = rearrange(self.kv(context), "b n (two a e) -> two b a n e", two=2, a=self.heads)
        attended = rearrange(F.scaled_dot_product_attention(q, k, v), "b a one e -> b one (a e)")
        cls = cls + self.proj(attended)
        cls = cls + self.mlp(self.norm_mlp(cls))
        return self.norm(cls[:, 0])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (b, n, d) → logits (b, k)."""
        return self.fc(self.dropout(self.pool(features)))


set_contract("head", subclass_of(nn.Module, forward=("features",)))

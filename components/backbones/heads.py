"""Classification heads on encoder features: pooling + linear.

Axis legend: b batch, n tokens, d width, k classes, a heads, e head width.

Every head maps features (b, n, d) → logits (b, k). ``needs_tokens`` says whether the head
looks at individual tokens (attention pooling) or only at their mean — probes use it to
cache (b, 1, d) means instead of (b, n, d) tokens.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from lvmae.components.backbones.transformer import Block
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
    """Class-attention pooling (CaiT), the paper's ViT-L head (docs/paper.md, fine-tuning).

    A learned class token attends to [class token; tokens] — only the class token is
    updated, so the cost is linear in n — then a residual MLP, LayerNorm, dropout, linear.
    ``depth`` > 1 first runs depth − 1 self-attention blocks over the tokens: V-JEPA 2's
    attentive probe (depth 4 in its frozen evaluation) is this shape.
    """

    needs_tokens = True

    def __init__(self, dim: int, num_classes: int, heads: int = 0, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, depth: int = 1):
        super().__init__()
        _check(dim, num_classes, dropout, "head.class_attention")
        if depth < 1:
            raise ValueError(f"head.class_attention.depth must be ≥ 1, got {depth}")
        # 64-wide attention heads are the ViT convention; 0 picks that (at least one head).
        heads = heads or max(1, dim // 64)
        if dim % heads:
            raise ValueError(f"head.class_attention.heads={heads} must divide the width {dim}")
        self.heads = heads
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth - 1))
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
        for block in self.blocks:
            features = block(features)
        cls = self.cls_token.expand(features.shape[0], -1, -1)                     # (b, 1, d)
        context = self.norm_tokens(torch.cat([cls, features], dim=1))             # (b, 1+n, d)
        cls = cls + self.proj(self._attend(context))
        cls = cls + self.mlp(self.norm_mlp(cls))
        return self.norm(cls[:, 0])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (b, n, d) → logits (b, k)."""
        return self.fc(self.dropout(self.pool(features)))

    def _attend(self, context: torch.Tensor) -> torch.Tensor:
        """context (b, n, d) → the class token's attention output (b, 1, d).

        The same as softmax(q·Wk x / √e)·(Wv x) per attention head, computed in the input space:
        the one query is folded into the key weights (u = Wkᵀ q; the key bias adds the same q·bk
        to every score and cancels in the softmax) and the values are projected after pooling
        (softmax weights sum to 1, so the value bias passes through). That costs O(n·d) per
        attention head instead of O(n·d²) for projecting every token's keys and values — what
        makes a grid of attentive probes over thousands of tokens affordable.
        """
        q = rearrange(self.q(context[:, :1]), "b one (a e) -> b a (one e)", a=self.heads)
        w_k, w_v = rearrange(self.kv.weight, "(two a e) d -> two a e d", two=2, a=self.heads)
        b_v = rearrange(self.kv.bias, "(two a e) -> two a e", two=2, a=self.heads)[1]
        query = torch.einsum("bae,aed->bad", q, w_k) * q.shape[-1] ** -0.5       # (b, a, d)
        weights = torch.einsum("bad,bnd->ban", query, context).softmax(dim=-1)    # (b, a, n)
        pooled = torch.einsum("ban,bnd->bad", weights, context)                   # (b, a, d)
        values = torch.einsum("bad,aed->bae", pooled, w_v) + b_v                  # (b, a, e)
        return rearrange(values, "b a e -> b 1 (a e)")


set_contract("head", subclass_of(nn.Module, forward=("features",)))

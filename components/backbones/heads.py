"""Classification heads on encoder features. Axis legend: b batch, n tokens, d width, k classes."""
from __future__ import annotations

import torch
from torch import nn

from registry import register, set_contract, subclass_of


@register("head.mean_linear")
class MeanPoolLinear(nn.Module):
    """Mean over tokens → LayerNorm → dropout → linear."""

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (b, n, d) → logits (b, k)."""
        return self.fc(self.dropout(self.norm(features.mean(dim=1))))


set_contract("head", subclass_of(nn.Module))

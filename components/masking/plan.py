"""MaskPlan: which tokens the encoder sees and which the decoder reconstructs.

Axis legend: b batch, n all tokens of the grid (t·h·w), k kept by the encoder,
q decoder targets (queries).

Indices are the source of truth; boolean views are derived. Counts are fixed per batch so
that gathers stay rectangular. Budgets are fractions of *all* tokens (PAPER.md §1).
"""
from __future__ import annotations

import dataclasses
import math

import torch


@dataclasses.dataclass(frozen=True)
class TokenGrid:
    """The latent token grid (t, h, w) of a clip after tubelet embedding."""

    t: int
    h: int
    w: int

    @property
    def n(self) -> int:
        return self.t * self.h * self.w

    @property
    def cells(self) -> int:
        """Spatial cells per latent frame (h·w)."""
        return self.h * self.w


def count_from_ratio(ratio: float, total: int, parameter: str) -> int:
    """``round(ratio·total)``, at least 1; ``ratio`` must lie in (0, 1]."""
    if not isinstance(ratio, (int, float)) or not 0.0 < float(ratio) <= 1.0:
        raise ValueError(f"{parameter} must be a fraction in (0, 1], got {ratio!r}")
    return max(1, min(total, int(math.floor(ratio * total + 0.5))))


@dataclasses.dataclass(frozen=True)
class MaskPlan:
    """Dual-masking plan for one batch.

    Attributes:
      grid: the token grid the indices refer to (flattened t-major: i = (ti·h + hi)·w + wi).
      enc_keep_idx: (b, k) long, sorted, tokens the encoder sees.
      dec_target_idx: (b, q) long, tokens the decoder reconstructs.
    """

    grid: TokenGrid
    enc_keep_idx: torch.Tensor
    dec_target_idx: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("enc_keep_idx", "dec_target_idx"):
            idx = getattr(self, name)
            if idx.dim() != 2 or idx.dtype != torch.long:
                raise ValueError(f"MaskPlan.{name} must be a (b, count) long tensor, got "
                                 f"{tuple(idx.shape)} {idx.dtype}")
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.grid.n):
                raise ValueError(f"MaskPlan.{name} has indices outside [0, {self.grid.n})")
        if self.enc_keep_idx.shape[0] != self.dec_target_idx.shape[0]:
            raise ValueError("MaskPlan: enc_keep_idx and dec_target_idx differ in batch size")

    @property
    def batch_size(self) -> int:
        return self.enc_keep_idx.shape[0]

    def _as_bool(self, idx: torch.Tensor) -> torch.Tensor:
        view = torch.zeros(self.batch_size, self.grid.n, dtype=torch.bool, device=idx.device)
        return view.scatter_(1, idx, True)

    @property
    def enc_keep_mask(self) -> torch.Tensor:
        """(b, n) bool, True where the encoder sees the token."""
        return self._as_bool(self.enc_keep_idx)

    @property
    def dec_target_mask(self) -> torch.Tensor:
        """(b, n) bool, True where the decoder reconstructs the token."""
        return self._as_bool(self.dec_target_idx)

    @property
    def loss_weight(self) -> torch.Tensor:
        """(b, q) float: 1 for targets the encoder did not see, 0 for targets it kept.

        The loss covers decoder targets the encoder did not see (PAPER.md §1 C); a strategy
        that draws a kept token simply contributes nothing for it.
        """
        seen = torch.gather(self.enc_keep_mask, 1, self.dec_target_idx)
        return (~seen).float()

"""Finite Scalar Quantization (Mentzer et al., ICLR 2024), the LVMAE tokenizer's quantizer.

Axis legend: b batch, d code dimension = len(levels), t/h/w token grid (any trailing axes).

Each of the d channels is bounded with tanh to (−L/2, L/2) and rounded to one of L levels;
the codebook is implicit (the product of the levels), there is no codebook or commitment
loss and no collapse. The default ``[8]*6`` gives the paper's 18-bit codebook (its levels are
lvmae's choice; docs/paper.md, tokenizer and scorer).
Index convention (identical to vector-quantize-pytorch's): channel 0 is the least
significant digit, ``index = Σ_i level_index_i · Π_{j<i} L_j``.
"""
from __future__ import annotations

import torch
from einops import rearrange

from lvmae.components.tokenizers.quantizer import Quantized, Quantizer, no_autocast, round_ste
from lvmae.registry import register

# tanh reaches ±1 only asymptotically; widening the half-range by 0.1% lets the extreme
# levels be reached by finite inputs (the FSQ reference code's choice).
_BOUND_EPS = 1e-3
_MIN_LEVEL = 3   # a 2-level channel has no zero code and breaks the symmetric bound


@register("quantizer.fsq")
class FSQ(Quantizer):
    """FSQ with per-channel ``levels``; input channels must equal ``len(levels)``."""

    def __init__(self, levels: tuple[int, ...] | list[int] = (8, 8, 8, 8, 8, 8)):
        super().__init__()
        levels = [int(level) for level in levels]
        if not levels or any(level < _MIN_LEVEL for level in levels):
            raise ValueError(f"quantizer.fsq.levels must be a non-empty list of integers ≥ "
                             f"{_MIN_LEVEL}, got {levels!r}")
        self._config = {"levels": levels}
        self.dim = len(levels)
        self.codebook_size = int(torch.tensor(levels, dtype=torch.float64).prod().item())
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.long), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1], dtype=torch.long), dim=0)
        self.register_buffer("basis", basis, persistent=False)

    def _half_width(self) -> torch.Tensor:
        return (self.levels // 2).float()

    def bound(self, latents: torch.Tensor) -> torch.Tensor:
        """(..., d) → (..., d) in (−L/2, L/2) before rounding; even L get a half-step offset
        so that rounding yields exactly L integers (−L/2 … L/2−1)."""
        levels = self.levels.float()
        half_l = (levels - 1) * (1 + _BOUND_EPS) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(latents + shift) * half_l - offset

    def forward(self, latents: torch.Tensor) -> Quantized:
        """latents (b, d, ...) → Quantized(codes (b, d, ...) in [−1, 1], indices (b, ...))."""
        if latents.dim() < 2 or latents.shape[1] != self.dim:
            raise ValueError(f"quantizer.fsq expects (b, {self.dim}, ...) latents "
                             f"(one channel per level), got {tuple(latents.shape)}")
        with no_autocast(latents):
            channel_last = rearrange(latents.float(), "b d ... -> b ... d")
            codes = round_ste(self.bound(channel_last)) / self._half_width()
            indices = self.codes_to_indices(codes.detach())
            codes = rearrange(codes, "b ... d -> b d ...")
        return Quantized(codes=codes, indices=indices)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (..., d) → indices (...) long."""
        level_idx = self.codes_to_level_indices(codes)
        return (level_idx * self.basis).sum(dim=-1)

    def codes_to_level_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (..., d) → per-channel level indices (..., d) long in [0, L_i) — the
        factorised token ids (one classifier per FSQ channel)."""
        half_width = self._half_width()
        return (codes.float() * half_width + half_width).round().long()

    def indices_to_level_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (...) → level indices (..., d) long."""
        return (indices.long()[..., None] // self.basis) % self.levels

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (...) → codes (..., d) float32."""
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(f"quantizer.fsq: indices must lie in [0, {self.codebook_size})")
        half_width = self._half_width()
        return (self.indices_to_level_indices(indices).float() - half_width) / half_width

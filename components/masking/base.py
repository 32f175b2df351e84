"""The two masking contracts. Encoder and decoder strategies are separate gin slots, so any
pair composes.

Axis legend: b batch, n tokens (t·h·w), k kept by the encoder, q decoder targets.
"""
from __future__ import annotations

import abc

import torch

from lvmae.components.masking.plan import TokenGrid
from lvmae.registry import set_contract, subclass_of


class EncoderMasking(abc.ABC):
    """Chooses ``enc_keep_idx`` (b, k), sorted ascending, on the generator's device."""

    @abc.abstractmethod
    def __call__(self, grid: TokenGrid, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """(grid, b) → enc_keep_idx (b, k) long."""


class DecoderMasking(abc.ABC):
    """Chooses ``dec_target_idx`` (b, q) given the encoder's choice (and scores if needed)."""

    #: True when the strategy ranks tokens by a scorer's output (b, t, h, w).
    needs_scores: bool = False

    @abc.abstractmethod
    def __call__(self, grid: TokenGrid, enc_keep_idx: torch.Tensor, generator: torch.Generator,
                 scores: torch.Tensor | None = None) -> torch.Tensor:
        """(grid, enc_keep_idx (b, k)[, scores (b, t, h, w)]) → dec_target_idx (b, q) long."""


def random_order(batch_size: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """(b, n): an independent random permutation of range(n) per row, from ``generator``."""
    noise = torch.rand(batch_size, n, generator=generator, device=generator.device)
    return noise.argsort(dim=1)


set_contract("masking.encoder", subclass_of(EncoderMasking))
set_contract("masking.decoder", subclass_of(DecoderMasking))

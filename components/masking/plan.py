"""MaskPlan: which tokens the encoder sees and which the decoder reconstructs.

Axis legend: b batch, n all tokens of the grid (t·h·w), k kept by the encoder,
q decoder targets (queries).

Indices are the source of truth; boolean views are derived. Counts are fixed per batch so
that gathers stay rectangular. Budgets are fractions of *all* tokens (docs/paper.md).
"""
from __future__ import annotations

import dataclasses
import math

import torch

from lvmae.components.masking.contract import check_index_tensor, check_targets_not_kept


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
    return max(1, min(total, math.floor(ratio * total + 0.5)))


@dataclasses.dataclass(frozen=True)
class MaskPlan:
    """Dual-masking plan for one batch.

    Attributes:
      grid: the token grid the indices refer to (flattened t-major: i = (ti·h + hi)·w + wi).
      enc_keep_idx: (b, k) long, sorted, unique, tokens the encoder sees.
      dec_target_idx: (b, q) long, unique per row, tokens the decoder reconstructs.

    Building a plan checks both index tensors (shape and dtype at once; range, order and
    uniqueness per ``lvmae.components.masking.contract``: named errors on the CPU, in the
    preflight and in debug mode, asynchronous asserts on a device). ``MaskPlan.draw`` also
    checks each strategy's declared counts and the loss set, naming the strategy.
    """

    grid: TokenGrid
    enc_keep_idx: torch.Tensor
    dec_target_idx: torch.Tensor
    checked: bool = dataclasses.field(default=False, repr=False, compare=False)
    #: (b, q) bool, True where a target is not kept by the encoder — computed by ``draw``'s
    #: checks and reused by ``loss_weight`` (None: derived on demand).
    loss_set: torch.Tensor | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.checked:
            return
        batch_size = self.enc_keep_idx.shape[0] if isinstance(self.enc_keep_idx, torch.Tensor) else 0
        for name, ascending in (("enc_keep_idx", True), ("dec_target_idx", False)):
            check_index_tensor("MaskPlan", name, getattr(self, name), batch_size,
                               None, self.grid.n, ascending)

    @classmethod
    def draw(cls, grid: TokenGrid, encoder_masking, decoder_masking, batch_size: int,
             generator: torch.Generator, scores: torch.Tensor | None = None) -> MaskPlan:
        """Runs both strategies and checks their outputs against their contracts, naming the
        strategy at fault: declared ``count``s, dtype, range, order (encoder) and uniqueness,
        decoder targets among the encoder-masked tokens (unless the decoder declares
        ``decodes_kept_tokens``) and at least one loss token. Scores are passed only to a
        decoder strategy that declares ``needs_scores``."""
        enc_keep_idx = encoder_masking(grid, batch_size, generator)
        check_index_tensor(encoder_masking, "enc_keep_idx", enc_keep_idx, batch_size,
                           encoder_masking.count(grid), grid.n, ascending=True)
        kept = enc_keep_idx.shape[1]
        dec_target_idx = decoder_masking(grid, enc_keep_idx, generator,
                                         scores if decoder_masking.needs_scores else None)
        check_index_tensor(decoder_masking, "dec_target_idx", dec_target_idx, batch_size,
                           decoder_masking.count(grid, kept), grid.n, ascending=False)
        loss_set = check_targets_not_kept(decoder_masking, grid.n, enc_keep_idx, dec_target_idx,
                                          decoder_masking.decodes_kept_tokens)
        return cls(grid, enc_keep_idx, dec_target_idx, checked=True, loss_set=loss_set)

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

        The loss covers decoder targets the encoder did not see (docs/paper.md); a strategy
        that draws a kept token simply contributes nothing for it.
        """
        if self.loss_set is not None:
            return self.loss_set.float()
        seen = torch.gather(self.enc_keep_mask, 1, self.dec_target_idx)
        return (~seen).float()

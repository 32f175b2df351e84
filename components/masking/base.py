"""The two masking contracts. Encoder and decoder strategies are separate gin slots, so any
pair composes.

Axis legend: b batch, n tokens (t·h·w), k kept by the encoder, q decoder targets.

What a strategy promises, and where it is checked (``MaskPlan.draw`` and the contract kit,
``lvmae.components.kit``):

- ``count`` declares how many indices ``__call__`` returns per clip for a grid; the output is
  a (b, count) long tensor — free shape checks on every step.
- encoder indices are sorted ascending and unique; decoder indices are unique per row and lie
  in [0, n); decoder targets are tokens the encoder did not keep, unless the strategy sets
  ``decodes_kept_tokens = True`` (then kept targets get loss weight 0 and are not counted in
  ``loss_tokens``) — value checks, see ``lvmae.components.masking.checks``.
- ratios and budgets are fractions, validated when the strategy is built (also for plugins
  that forget to: the base class checks every attribute named ``budget``, ``keep_ratio``,
  ``*_budget`` or ``*_ratio`` after ``__init__``).
"""
from __future__ import annotations

import abc
import numbers

import torch

from lvmae.components.masking.plan import TokenGrid
from lvmae.registry import ContractError, set_contract, subclass_of

#: Attributes that are fractions of all tokens: in (0, 1] ...
_BUDGETS = ("budget", "keep_ratio")
_BUDGET_SUFFIX = "_budget"
#: ... and attributes that are shares which may be 0: in [0, 1].
_RATIO_SUFFIX = "_ratio"


def fraction_problem(name: str, value: object) -> str | None:
    """Why attribute ``name`` = ``value`` is not a valid budget or ratio (None when it is, or
    when the name is not one of the fraction names)."""
    positive = name in _BUDGETS or name.endswith(_BUDGET_SUFFIX)
    if not positive and not name.endswith(_RATIO_SUFFIX):
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"{name} must be a number (a fraction of all tokens), got {value!r}"
    low_ok = value > 0.0 if positive else value >= 0.0
    if not (low_ok and value <= 1.0):
        interval = "(0, 1]" if positive else "[0, 1]"
        return f"{name} must be a fraction in {interval}, got {value!r}"
    return None


class ValidatedOnConstruction(abc.ABCMeta):
    """Metaclass of the masking bases: after a strategy's ``__init__`` returns, its fraction
    attributes are validated, so a plugin that stores ``budget = 1.5`` fails when built —
    at gin parse/build time, before any run — with its registered name."""

    def __call__(cls, *args, **kwargs):
        strategy = super().__call__(*args, **kwargs)
        for name, value in vars(strategy).items():
            problem = fraction_problem(name, value)
            if problem:
                raise ContractError(strategy, problem)
        return strategy


class EncoderMasking(metaclass=ValidatedOnConstruction):
    """Chooses ``enc_keep_idx`` (b, k), sorted ascending, on the generator's device."""

    @abc.abstractmethod
    def count(self, grid: TokenGrid) -> int:
        """k: how many tokens every clip keeps on ``grid``."""

    @abc.abstractmethod
    def __call__(self, grid: TokenGrid, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """(grid, b) → enc_keep_idx (b, k) long, sorted, unique, k = ``count(grid)``."""


class DecoderMasking(metaclass=ValidatedOnConstruction):
    """Chooses ``dec_target_idx`` (b, q) given the encoder's choice (and scores if needed)."""

    #: True when the strategy ranks tokens by a scorer's output (b, t, h, w); without it the
    #: strategy is called with ``scores=None``.
    needs_scores: bool = False
    #: True when targets may include tokens the encoder kept (whole frames, fixed patterns):
    #: they are decoded with loss weight 0. False: every target must be encoder-masked.
    decodes_kept_tokens: bool = False

    @abc.abstractmethod
    def count(self, grid: TokenGrid, kept: int) -> int:
        """q: how many targets every clip gets on ``grid`` when the encoder keeps ``kept``."""

    @abc.abstractmethod
    def __call__(self, grid: TokenGrid, enc_keep_idx: torch.Tensor, generator: torch.Generator,
                 scores: torch.Tensor | None = None) -> torch.Tensor:
        """(grid, enc_keep_idx (b, k)[, scores (b, t, h, w)]) → dec_target_idx (b, q) long,
        unique per row, q = ``count(grid, k)``."""


def random_order(batch_size: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """(b, n): an independent random permutation of range(n) per row, from ``generator``."""
    noise = torch.rand(batch_size, n, generator=generator, device=generator.device)
    return noise.argsort(dim=1)


set_contract("masking.encoder", subclass_of(
    EncoderMasking, __call__=("grid", "batch_size", "generator"), count=("grid",)))
set_contract("masking.decoder", subclass_of(
    DecoderMasking, __call__=("grid", "enc_keep_idx", "generator", "scores"), count=("grid", "kept")))

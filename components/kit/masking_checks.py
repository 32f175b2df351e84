"""Kit checks of the masking strategies: encoder (``enc_keep_idx``) and decoder
(``dec_target_idx``) contracts on a token grid."""
from __future__ import annotations

import numbers

import torch

from lvmae import registry

#: Token grid of the checks when none is given: 4 latent frames of 4×4 cells (n = 64), even
from lvmae.components.kit.support import (
    DEFAULT_BATCH,
    DEFAULT_GRID,
    _calling,
    _contract,
    _generator,
    _quiet_rng,
    _resolve,
)
from lvmae.components.masking.base import DecoderMasking, EncoderMasking, fraction_problem
from lvmae.components.masking.contract import check_index_tensor, check_targets_not_kept
from lvmae.components.masking.plan import TokenGrid
from lvmae.registry import ContractError

#: How far a decoder strategy's count may exceed its declared budget (besides one latent frame).
BUDGET_SLACK = 2.0


def _encoder_plan(strategy: EncoderMasking, grid: TokenGrid, batch_size: int,
                  generator: torch.Generator) -> torch.Tensor:
    with _calling(strategy, f"count({grid})"):
        count = strategy.count(grid)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ContractError(strategy, f"count({grid}) must return a positive int, got {count!r}")
    with _calling(strategy, f"__call__({grid}, batch_size={batch_size}, generator)"):
        keep = strategy(grid, batch_size, generator)
    check_index_tensor(strategy, "enc_keep_idx", keep, batch_size, count, grid.n, ascending=True)
    return keep


def check_encoder_masking(strategy: EncoderMasking | str, grid: TokenGrid = DEFAULT_GRID,
                          batch_size: int = DEFAULT_BATCH) -> None:
    """An encoder masking strategy: its declared count, (b, k) long sorted unique indices in
    range for batch sizes 1 and ``batch_size``, and the same indices for the same seed."""
    strategy = _resolve(strategy, "masking.encoder")
    _contract(strategy, "masking.encoder")
    with _quiet_rng():
        _encoder_plan(strategy, grid, 1, _generator(0))
        first = _encoder_plan(strategy, grid, batch_size, _generator(0))
        again = _encoder_plan(strategy, grid, batch_size, _generator(0))
    if not torch.equal(first, again):
        raise ContractError(strategy, "the same generator seed gave different indices: draw every "
                            "random number from the generator argument")


def _reference_encoders() -> list[EncoderMasking]:
    """Built-in encoder strategies a decoder strategy must compose with."""
    return [registry.build("masking.encoder.tube", keep_ratio=0.25),
            registry.build("masking.encoder.random", keep_ratio=0.1)]


def declared_budget(strategy: DecoderMasking) -> float | None:
    """The fraction of all tokens a decoder strategy declares it decodes: the sum of its
    fraction attributes (``budget``, ``*_budget``, ``*_ratio``: the parts of a budget split in
    two, as adaptive's top and random parts); None when it declares none."""
    parts = [value for name, value in vars(strategy).items()
             if fraction_problem(name, value) is None and isinstance(value, numbers.Real)
             and not isinstance(value, bool) and (name == "budget" or name.endswith(("_budget", "_ratio")))]
    return float(sum(parts)) if parts else None


def _check_budget(strategy: DecoderMasking, grid: TokenGrid, kept: int, count: int) -> None:
    """``count`` may exceed the declared budget of all tokens by :data:`BUDGET_SLACK` times and
    one latent frame (strategies that decode whole frames or cells round up), no more."""
    budget = declared_budget(strategy)
    if budget is None:
        return
    allowed = BUDGET_SLACK * budget * grid.n + grid.cells
    if count > allowed:
        raise ContractError(strategy, (
            f"count({grid}, kept={kept}) = {count} targets per clip, but its declared budget {budget:g} of "
            f"the n = {grid.n} tokens is {budget * grid.n:.0f} (at most {allowed:.0f} allowed: {BUDGET_SLACK:g}× "
            "the budget plus one latent frame); count() must follow the budget, not return every masked token"))


def _decoder_plan(strategy: DecoderMasking, grid: TokenGrid, keep: torch.Tensor,
                  generator: torch.Generator, scores: torch.Tensor | None) -> torch.Tensor:
    batch_size, kept = keep.shape
    with _calling(strategy, f"count({grid}, kept={kept})"):
        count = strategy.count(grid, kept)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ContractError(strategy, f"count({grid}, kept={kept}) must return a positive int, got {count!r}")
    _check_budget(strategy, grid, kept, count)
    shown = "scores (b, t, h, w)" if scores is not None else "scores=None"
    try:
        targets = strategy(grid, keep, generator, scores)
    except Exception as error:
        hint = ""
        if scores is None and not strategy.needs_scores and "NoneType" in str(error):
            hint = (" — a strategy that reads scores must declare needs_scores = True (it is called "
                    "with scores=None otherwise)")
        raise ContractError(strategy, f"__call__({grid}, enc_keep_idx, generator, {shown}) raised "
                            f"{type(error).__name__}: {error}{hint}") from error
    check_index_tensor(strategy, "dec_target_idx", targets, batch_size, count, grid.n, ascending=False)
    check_targets_not_kept(strategy, grid.n, keep, targets, strategy.decodes_kept_tokens)
    return targets


def _scores(grid: TokenGrid, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.rand(batch_size, grid.t, grid.h, grid.w, generator=_generator(7), device="cpu").to(device)


def check_decoder_masking(strategy: DecoderMasking | str, grid: TokenGrid = DEFAULT_GRID,
                          batch_size: int = DEFAULT_BATCH,
                          encoders: list[EncoderMasking] | None = None) -> None:
    """A decoder masking strategy, after each reference encoder strategy (tube and random by
    default): declared count, (b, q) long unique in-range indices, targets among the
    encoder-masked tokens (or ``decodes_kept_tokens``), a loss token, seeded results, and a
    call with ``scores=None`` unless it declares ``needs_scores``."""
    strategy = _resolve(strategy, "masking.decoder")
    _contract(strategy, "masking.decoder")
    with _quiet_rng():
        for encoder in encoders or _reference_encoders():
            for size in (1, batch_size):
                keep = _encoder_plan(encoder, grid, size, _generator(0))
                scores = _scores(grid, size) if strategy.needs_scores else None
                first = _decoder_plan(strategy, grid, keep, _generator(1), scores)
                again = _decoder_plan(strategy, grid, keep, _generator(1), scores)
                if not torch.equal(first, again):
                    raise ContractError(strategy, "the same generator seed gave different targets: draw "
                                        "every random number from the generator argument")

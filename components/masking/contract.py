"""Value checks of mask indices, cheap enough for every step.

Axis legend: b batch, n tokens of the grid, k kept by the encoder, q decoder targets.

Shape and dtype checks read only tensor metadata and always raise at once. Value checks
(range, order, uniqueness, overlap with the encoder's tokens) depend on the tensor's content:

- host mode — tensors on the CPU, inside ``full_checks()`` (the preflight and the contract
  kit use it) or with the environment variable ``LVMAE_DEBUG_CHECKS=1``: the check reads the
  result and raises a ``ContractError`` naming the component, the row and the token at fault.
- device mode — tensors on an accelerator otherwise: ``torch._assert_async`` queues the
  check without a host-device synchronisation; a violation stops the process at a later
  synchronisation point with a device-side assert. The preflight has already run the same
  strategy on the same grid in host mode, so this is a backstop, not the way authors learn
  of a mistake (rerun with ``LVMAE_DEBUG_CHECKS=1`` for the named message).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch

from lvmae.registry import ContractError

DEBUG_ENV = "LVMAE_DEBUG_CHECKS"
_FULL_DEPTH = 0


@contextlib.contextmanager
def full_checks() -> Iterator[None]:
    """Inside the block every value check reads its result on the host and names the fault."""
    global _FULL_DEPTH
    _FULL_DEPTH += 1
    try:
        yield
    finally:
        _FULL_DEPTH -= 1


def debug_checks() -> bool:
    """True when ``LVMAE_DEBUG_CHECKS`` asks for host checks everywhere."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def host_checks(tensor: torch.Tensor) -> bool:
    """Whether value checks on ``tensor`` may read their result on the host."""
    return tensor.device.type == "cpu" or _FULL_DEPTH > 0 or debug_checks()


def require(ok: torch.Tensor, fail: Callable[[], Exception]) -> None:
    """Asserts the 0-d bool tensor ``ok``: at once in host mode, asynchronously on a device."""
    if host_checks(ok):
        if not bool(ok):
            raise fail()
    else:
        torch._assert_async(ok)   # pylint: disable=protected-access


def _first_bad_row(bad_rows: torch.Tensor) -> int:
    return int(bad_rows.nonzero()[0, 0])


def check_index_tensor(component: Any, name: str, idx: Any, batch_size: int, count: int | None,
                       n: int, ascending: bool) -> None:
    """Checks one index output: a (b, count) long tensor, entries in [0, n), unique per row
    (and ascending when ``ascending``). ``component`` is the strategy (named in errors) or a
    string used as is."""
    def error(problem: str) -> Exception:
        if isinstance(component, str):
            return ValueError(f"{component}: {problem}")
        return ContractError(component, problem)

    if not isinstance(idx, torch.Tensor):
        raise error(f"{name} must be a torch.Tensor (b, count) of dtype long, got {type(idx).__name__}")
    if idx.dim() != 2:
        raise error(f"{name} must be 2-D (b, count), got shape {tuple(idx.shape)}")
    if idx.dtype != torch.long:
        raise error(f"{name} must have dtype torch.long (int64), got {idx.dtype}")
    if idx.shape[0] != batch_size:
        raise error(f"{name} has batch size {idx.shape[0]}, expected {batch_size} (one row per clip)")
    if count is not None and idx.shape[1] != count:
        raise error(f"{name} has {idx.shape[1]} indices per clip but count() declares {count} "
                    f"for this grid (n = {n})")
    if idx.shape[1] == 0:
        raise error(f"{name} is empty: at least one token per clip is required")
    low, high = idx.amin(dim=1), idx.amax(dim=1)
    require((low >= 0).all() & (high < n).all(), lambda: error(
        f"{name} has indices outside [0, {n}): row {_first_bad_row((low < 0) | (high >= n))} "
        f"spans [{int(low.min())}, {int(high.max())}]"))
    steps = torch.diff(idx if ascending else idx.sort(dim=1).values, dim=1)
    if ascending:
        require((steps > 0).all(), lambda: error(_order_problem(name, idx)))
    else:
        require((steps != 0).all(), lambda: error(_duplicate_problem(name, idx)))


def _duplicate_problem(name: str, idx: torch.Tensor) -> str:
    for row, values in enumerate(idx.cpu()):
        tokens, counts = values.unique(return_counts=True)
        if (counts > 1).any():
            worst = int(counts.argmax())
            return (f"{name} repeats token {int(tokens[worst])} {int(counts[worst])} times in row "
                    f"{row} (indices must be unique per clip; {len(tokens)} distinct of {len(values)})")
    return f"{name} has repeated indices"


def _order_problem(name: str, idx: torch.Tensor) -> str:
    values = idx.cpu()
    steps = torch.diff(values, dim=1)
    row = _first_bad_row((steps <= 0).any(dim=1))
    if (torch.diff(values[row].sort().values) == 0).any():
        return _duplicate_problem(name, values) + " — encoder indices must also be sorted ascending"
    return f"{name} row {row} is not sorted ascending (encoder indices must be; use .sort(dim=1).values)"


def check_targets_not_kept(component: Any, n: int, enc_keep_idx: torch.Tensor,
                           dec_target_idx: torch.Tensor, allows_kept: bool) -> torch.Tensor:
    """The loss set: (b, q) bool, True where a target was not kept by the encoder. Checks
    that no target was kept (unless ``allows_kept``) and that the batch has a loss token."""
    kept = torch.zeros(enc_keep_idx.shape[0], n, dtype=torch.bool, device=enc_keep_idx.device)
    kept.scatter_(1, enc_keep_idx, True)
    seen = torch.gather(kept, 1, dec_target_idx.to(kept.device))           # (b, q)
    if not allows_kept:
        require(~seen.any(), lambda: ContractError(component, (
            f"{int(seen.sum())} of {seen.numel()} decoder targets are tokens the encoder kept "
            f"(row {_first_bad_row(seen.any(dim=1))} first); they carry no loss. Draw targets "
            "among the encoder-masked tokens, or set decodes_kept_tokens = True to decode them "
            "with loss weight 0")))
    else:
        require((~seen).any(), lambda: ContractError(component, (
            "every decoder target is a token the encoder kept: the batch has no loss token "
            "(loss 0, no gradient)")))
    return ~seen

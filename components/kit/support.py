"""Shared pieces of the contract kit: default sizes, resolving a component by name, calling it
with errors that name it, checking the tensors it returns, quiet RNG."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from lvmae import registry
from lvmae.components.masking.contract import full_checks
from lvmae.components.masking.plan import TokenGrid
from lvmae.registry import ContractError

#: Token grid of the checks when none is given: 4 latent frames of 4×4 cells (n = 64), even
#: sides (running-cell patterns need them).
DEFAULT_GRID = TokenGrid(4, 4, 4)
#: Clips per check batch: > 1 so per-clip rows and batch-size mix-ups show.
DEFAULT_BATCH = 3
#: Tokens the preflight runs the backbone and decoder on (a prefix of the real plan): enough
#: to exercise signatures and output shapes without a full forward at 128 frames.
PREFLIGHT_TOKENS = 8


def _resolve(component: Any, kind: str) -> Any:
    """A registry name is built with its gin defaults; anything else is returned as is."""
    registry.discover()           # the reference strategies the checks compose with
    if isinstance(component, str):
        entry = registry.get(component)
        if entry.kind != kind:
            raise ValueError(f"{component!r} is a {entry.kind} component, not a {kind}")
        return registry.build(component)
    return component


def _contract(component: Any, kind: str) -> None:
    """The kind's registration contract, also for an instance that never registered."""
    problem = registry.get_kind(kind).contract
    problem = problem(type(component)) if problem else None
    if problem:
        raise ContractError(component, problem)


@contextlib.contextmanager
def _calling(component: Any, call: str) -> Iterator[None]:
    """Turns any exception raised inside a component call into a ContractError naming it."""
    try:
        yield
    except ContractError:
        raise
    except Exception as error:  # the plugin's own exception, whatever it is
        raise ContractError(component, f"{call} raised {type(error).__name__}: {error}") from error


@contextlib.contextmanager
def _quiet_rng() -> Iterator[None]:
    """Restores the global CPU (and CUDA) RNG afterwards: a preflight changes no seed stream."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices), torch.no_grad(), full_checks():
        yield


def _generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device).manual_seed(seed)


def _video(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Pixels in [0, 1) normalised as the data pipeline normalises real frames (ImageNet's mean
    and std): the range components see in a run, negative values included (a ``video ** 2.2``
    is NaN there, not on [0, 1))."""
    from lvmae.components.data.reading.reader import IMAGENET_MEAN, IMAGENET_STD  # pylint: disable=import-outside-toplevel
    mean, std = sum(IMAGENET_MEAN) / len(IMAGENET_MEAN), sum(IMAGENET_STD) / len(IMAGENET_STD)
    return (torch.rand(shape, generator=generator) - mean) / std


def _tensor(component: Any, what: str, value: Any, shape: tuple[int, ...] | None = None,
            floating: bool | None = None) -> torch.Tensor:
    """Checks an output's type, shape (None entries match anything) and dtype family."""
    if not isinstance(value, torch.Tensor):
        raise ContractError(component, f"{what} must be a torch.Tensor, got {type(value).__name__}")
    if shape is not None and (value.dim() != len(shape) or any(
            want is not None and got != want for got, want in zip(value.shape, shape))):
        legend = tuple("·" if s is None else s for s in shape)
        raise ContractError(component, f"{what} must have shape {legend}, got {tuple(value.shape)}")
    if floating is True and not value.is_floating_point():
        raise ContractError(component, f"{what} must be floating point, got {value.dtype}")
    if floating is False and value.is_floating_point():
        raise ContractError(component, f"{what} must be an integer tensor, got {value.dtype}")
    if value.is_floating_point() and not torch.isfinite(value).all():
        raise ContractError(component, f"{what} has non-finite values")
    return value


def _int_attribute(component: Any, name: str, length: int | None = None) -> Any:
    value = getattr(component, name, None)
    values = value if length else (value,)
    try:
        ok = (len(values) == (length or 1)
              and all(int(v) == v and int(v) >= 1 for v in values))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        want = f"{length} positive integers" if length else "a positive integer"
        raise ContractError(component, f"attribute {name} must be {want}, got {value!r}")
    return tuple(int(v) for v in values) if length else int(value)

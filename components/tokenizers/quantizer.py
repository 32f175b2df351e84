"""The quantizer contract and its one result type (FSQ and LFQ return the same thing).

Axis legend: b batch, d code dimension (channels), t/h/w token grid (any number of trailing
axes is accepted), k codebook size.
"""
from __future__ import annotations

import abc
import dataclasses
from contextlib import nullcontext

import torch
from torch import nn

from lvmae.registry import set_contract, subclass_of


@dataclasses.dataclass
class Quantized:
    """What every quantizer returns.

    Attributes:
      codes: (b, d, ...) float32, the quantized latents; gradients pass straight through to
        the continuous input (forward value = the code, backward = identity).
      indices: (b, ...) long, the code's index in the implicit codebook.
      losses: named scalars, e.g. LFQ's entropy terms; FSQ has none. Names ending in
        ``_loss`` are added to the training loss, the others are diagnostics to log.
    """

    codes: torch.Tensor
    indices: torch.Tensor
    losses: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


def no_autocast(tensor: torch.Tensor):
    """A context that disables autocast on ``tensor``'s device: rounding a bf16 value to a
    level grid loses codes (bf16 has 8 bits of mantissa), so quantisation runs in float32."""
    device_type = tensor.device.type
    if device_type in ("cuda", "cpu", "xpu"):
        return torch.autocast(device_type=device_type, enabled=False)
    return nullcontext()


def round_ste(values: torch.Tensor) -> torch.Tensor:
    """Rounds forward, identity backward (straight-through estimator). Written as
    round(x) + (x − x.detach()) so the forward value is exactly an integer (x + (round(x) − x)
    can miss it by one ulp)."""
    return values.round() + (values - values.detach())


class Quantizer(nn.Module, abc.ABC):
    """Maps continuous latents (b, d, ...) to codes of an implicit codebook of ``codebook_size``.

    ``dim`` is the code dimension d the encoder must output; ``codes_to_indices`` and
    ``indices_to_codes`` are inverse bijections over the whole codebook.
    """

    dim: int
    codebook_size: int

    @abc.abstractmethod
    def forward(self, latents: torch.Tensor) -> Quantized:
        """latents (b, d, ...) → Quantized(codes (b, d, ...), indices (b, ...))."""

    @abc.abstractmethod
    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (..., d) channel-last → indices (...) long."""

    @abc.abstractmethod
    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (...) long → codes (..., d) channel-last float32."""

    def config(self) -> dict:
        """Constructor arguments as plain values (saved in checkpoints to rebuild it)."""
        return dict(self._config)


set_contract("quantizer", subclass_of(Quantizer, forward=("latents",), codes_to_indices=("codes",),
                                                 indices_to_codes=("indices",)))

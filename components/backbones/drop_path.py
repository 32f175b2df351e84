"""Stochastic depth (drop-path) added to an existing encoder without touching its code.

Axis legend: b batch, n tokens, d width.

Each pre-norm block computes ``x + attn(norm1(x))`` and ``x + mlp(norm2(x))``; zeroing the
*output* of ``attn``/``mlp`` for a random subset of clips (and rescaling the others by
1/keep) is exactly drop-path on that residual branch. Forward hooks do it, so the encoder's
state-dict keys — and therefore checkpoints — are unchanged.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

BRANCHES = ("attn", "mlp")


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Linearly increasing rates, 0 for the first block and ``rate`` for the last (timm)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"drop_path must lie in [0, 1), got {rate!r}")
    if depth <= 1:
        return [rate] * depth
    return [rate * i / (depth - 1) for i in range(depth)]


def _hook(rate: float):
    keep = 1.0 - rate

    def drop(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor | None:
        if not module.training or rate == 0.0:
            return None
        shape = (output.shape[0],) + (1,) * (output.dim() - 1)          # one draw per clip
        survive = torch.empty(shape, device=output.device, dtype=output.dtype).bernoulli_(keep)
        return output * survive / keep

    return drop


def add_drop_path(encoder: nn.Module, rate: float) -> list[RemovableHandle]:
    """Adds drop-path to every block of ``encoder.blocks``; returns the hook handles."""
    if rate == 0.0:
        return []
    blocks = getattr(encoder, "blocks", None)
    if blocks is None:
        raise ValueError(f"drop_path={rate} needs an encoder with a `blocks` list; "
                         f"{type(encoder).__name__} has none")
    handles = []
    for block, block_rate in zip(blocks, drop_path_rates(rate, len(blocks))):
        for branch in BRANCHES:
            module = getattr(block, branch, None)
            if module is None:
                raise ValueError(f"drop_path: block {type(block).__name__} has no '{branch}' "
                                 f"branch (expected {BRANCHES})")
            handles.append(module.register_forward_hook(_hook(block_rate)))
    return handles

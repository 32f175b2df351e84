"""AdamW parameter groups with layer-wise learning-rate decay (BEiT / VideoMAE fine-tuning).

Layer 0 is everything before the first block (patch embedding, positions), layer i+1 is
``blocks.i``, and the last layer (depth + 1) is the rest: final norm and heads. Layer l
trains at ``lr · layer_decay^(depth + 1 − l)``, so the heads get the full rate and the
embedding the smallest. Biases, norms and other 1-D parameters get no weight decay.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from lvmae.experiments.engine.training import fused_adamw_supported

_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")
# Parameters named like these come before the first block.
_EMBEDDING_NAMES = ("patch_embed", "pos_embed", "cls_token", "embed")


def layer_of(name: str, depth: int, encoder_prefix: str = "encoder.") -> int:
    """The layer id of a parameter name of a classifier whose encoder has ``depth`` blocks."""
    match = _BLOCK.search(name)
    if name.startswith(encoder_prefix) and match:
        return int(match.group(1)) + 1
    if name.startswith(encoder_prefix) and any(part in name for part in _EMBEDDING_NAMES):
        return 0
    return depth + 1


def param_groups(model: nn.Module, lr: float, weight_decay: float, layer_decay: float = 1.0,
                 depth: int | None = None) -> list[dict]:
    """Groups by (layer, decay?) with ``lr`` already scaled (``lr_scale`` kept for logging)."""
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must lie in (0, 1], got {layer_decay!r}")
    if depth is None:
        depth = len(getattr(getattr(model, "encoder", model), "blocks", ()))
    groups: dict[tuple[int, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer = layer_of(name, depth)
        decays = parameter.ndim > 1 and "pos_embed" not in name and "token" not in name
        scale = layer_decay ** (depth + 1 - layer)
        group = groups.setdefault((layer, decays), {
            "params": [], "names": [], "lr": lr * scale, "lr_scale": scale, "layer": layer,
            "weight_decay": weight_decay if decays else 0.0})
        group["params"].append(parameter)
        group["names"].append(name)
    return [groups[key] for key in sorted(groups)]


def build_finetune_optimizer(model: nn.Module, lr: float, weight_decay: float,
                             layer_decay: float = 1.0,
                             betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW over ``param_groups`` (betas 0.9/0.999: VideoMAE's fine-tuning default)."""
    groups = param_groups(model, lr, weight_decay, layer_decay)
    for group in groups:
        group.pop("names")
    params = [p for g in groups for p in g["params"]]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=fused_adamw_supported(params) or None)

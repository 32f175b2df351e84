"""Official VideoMAE weights (MCG-NJU/VideoMAE, also VideoMAE V2) → our ``VideoViT`` keys.

Their layout (pre-training checkpoints put it under ``encoder.``, fine-tuned ones at the
top level):

    patch_embed.proj.{weight,bias}        → patch_embed.{weight,bias}
    blocks.i.attn.qkv.weight              → blocks.i.attn.qkv.weight
    blocks.i.attn.{q_bias,v_bias}         → blocks.i.attn.qkv.bias = [q_bias; 0; v_bias]
    blocks.i.mlp.fc1 / fc2                → blocks.i.mlp.0 / blocks.i.mlp.2
    blocks.i.{norm1,norm2,attn.proj}      → unchanged
    norm (pre-training) or fc_norm        → norm

Their decoder, heads and ``mask_token`` are ignored. Positions: VideoMAE uses a fixed 1-D
sin-cos table over the flattened token index, never stored in checkpoints — build the
encoder with ``positions="sincos_1d"`` (``backbone.vit*.positions``) to match it exactly.
"""
from __future__ import annotations

import re

import torch

_MARKER = "patch_embed.proj.weight"
_RENAMES = [
    (re.compile(r"^patch_embed\.proj\."), "patch_embed."),
    (re.compile(r"^(blocks\.\d+\.mlp\.)fc1\."), r"\g<1>0."),
    (re.compile(r"^(blocks\.\d+\.mlp\.)fc2\."), r"\g<1>2."),
    (re.compile(r"^fc_norm\."), "norm."),
]
_KEEP = re.compile(r"^(patch_embed\.|blocks\.\d+\.|norm\.)")


def is_videomae(state: dict) -> bool:
    """True for a state dict in the official VideoMAE layout (with or without ``encoder.``)."""
    return any(key == _MARKER or key == f"encoder.{_MARKER}" for key in state)


def convert(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """VideoMAE encoder weights → ``VideoViT`` state dict keys (see the module docstring)."""
    prefix = "encoder." if f"encoder.{_MARKER}" in state else ""
    encoder = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    converted: dict[str, torch.Tensor] = {}
    for key, value in encoder.items():
        if key.endswith(("attn.q_bias", "attn.v_bias")):
            continue
        for pattern, replacement in _RENAMES:
            key = pattern.sub(replacement, key)
        if _KEEP.match(key):
            converted[key] = value
    for key, q_bias in encoder.items():
        if key.endswith("attn.q_bias"):
            stem = key[: -len("q_bias")]
            v_bias = encoder[f"{stem}v_bias"]
            # VideoMAE learns no key bias (it would cancel in the softmax): zeros in the middle.
            converted[f"{stem}qkv.bias"] = torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])
    if "norm.weight" not in converted:
        converted.pop("norm.bias", None)
    return converted

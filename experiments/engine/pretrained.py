"""Loading a pre-trained encoder into a classifier: our checkpoints or imported VideoMAE weights.

A checkpoint of ours holds ``{"model": state}`` with the encoder under ``encoder.``
(pre-training and fine-tuning alike). Official VideoMAE checkpoints (MCG-NJU layout, see
``components.models.videomae_import``) and ``transformers`` VideoMAE weights (any head, e.g. an
``lvmae export`` folder's ``model.safetensors``) are recognised by their key names and converted;
``.safetensors`` files are read as bare state dicts.
When the fine-tuning grid (frames, resolution) differs from the pre-training one, learned
positional tables are resized (``components.backbones.pos_interpolation``).
"""
from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn

from lvmae.components.backbones.pos_interpolation import Resized, adapt_state
from lvmae.components.masking.plan import TokenGrid
from lvmae.components.models import hf_videomae, videomae_import
from lvmae.experiments.engine.training import load_checkpoint

ENCODER_PREFIX = "encoder."
# transformers' VideoMAE: the patch embedding inside a task model (``videomae.``) or alone.
_HF_MARKERS = ("videomae.embeddings.", "embeddings.patch_embeddings.")


@dataclasses.dataclass(frozen=True)
class LoadReport:
    path: str
    source: str                  # "lvmae", "videomae" or "transformers"
    tensors: int
    resized: list[Resized]

    def describe(self) -> str:
        text = f"loaded {self.tensors} encoder tensors from {self.path} ({self.source})"
        for item in self.resized:
            text += f"\n  resized {item.key} over {item.axes}: {item.old_shape} → {item.new_shape}"
        return text


def _model_state(checkpoint: dict, path: str) -> dict[str, torch.Tensor]:
    for key in ("model", "module", "state_dict"):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint
    raise ValueError(f"checkpoint {path!r} holds no model state (looked for 'model', 'module', "
                     f"'state_dict' or a bare state dict)")


def encoder_state(checkpoint: dict, path: str) -> tuple[dict[str, torch.Tensor], str]:
    """The encoder's tensors (keys relative to the encoder) and where they came from."""
    state = _model_state(checkpoint, path)
    if videomae_import.is_videomae(state):
        return videomae_import.convert(state), "videomae"
    if any(key.startswith(_HF_MARKERS) for key in state):
        return hf_videomae.encoder_from_hf(state), "transformers"
    encoder = {k[len(ENCODER_PREFIX):]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    if not encoder:
        raise ValueError(f"checkpoint {path!r} holds no '{ENCODER_PREFIX}*' weights")
    return encoder, "lvmae"


def load_pretrained_encoder(encoder: nn.Module, path: str,
                            pretrained_grid: tuple[int, int, int] | None = None,
                            parameter: str = "finetune_loop.pretrained") -> LoadReport:
    """Copies the pre-trained encoder weights of ``path`` into ``encoder`` (in place).

    Every persistent tensor of ``encoder`` must be present; positional tables of another grid
    are resized to ``encoder.grid`` (the old grid is ``pretrained_grid``, the checkpoint's
    ``grid`` entry, or inferred from a full table).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pre-trained checkpoint not found: {path!r} ({parameter})")
    checkpoint = hf_videomae.load_hf_checkpoint(path) if path.endswith(".safetensors") else load_checkpoint(path)
    state, source = encoder_state(checkpoint, path)
    old = pretrained_grid or checkpoint.get("grid")
    old_grid = TokenGrid(*old) if old is not None else None
    state, resized = adapt_state(state, encoder, encoder.grid, old_grid)
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {path!r} does not match the encoder: missing {missing}, "
                         f"unexpected {unexpected}")
    return LoadReport(path, source, len(state), resized)

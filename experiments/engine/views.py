"""Label lookup for a batch, and the fine-tuning loop's random window.

Axis legend: b batch, C channels, T/H/W frames and pixels of the loaded clip, F/S frames and
side of the model's input.

Evaluation views (the centred clip and crop — the paper's protocol — or windows spread evenly
over the clip × squares along its longer side, VideoMAE's multi-view test) are the data
pipeline's (components/data/reading/pipeline.py: ``temporal_views``, ``spatial_views``).
"""
from __future__ import annotations

import torch


def batch_labels(batch: dict, heads: list[str]) -> dict[str, torch.Tensor]:
    """The labels of every head in ``heads`` from a batch (contract: ``labels`` dict, or the
    primary ``label`` alone for single-head sets)."""
    labels = batch.get("labels") or {}
    if not labels and len(heads) == 1:
        return {heads[0]: batch["label"]}
    missing = [h for h in heads if h not in labels]
    if missing:
        raise KeyError(f"the batch has no labels for the heads {missing}; it has "
                       f"{sorted(labels) or ['label']} (heads come from the dataset manifest)")
    return {h: labels[h] for h in heads}


def random_window(video: torch.Tensor, frames: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Training counterpart of ``views``: one random window of ``frames`` and one random
    ``size`` crop, shared by the batch; a clip that already fits is returned as is.

    video (b, C, T, H, W) → (b, C, F, S, S). Lets a model fine-tune on fewer frames (or a
    smaller side) than the loader delivers, e.g. 32 of a 128-frame clip.
    """
    _, _, length, height, width = video.shape
    if (length, height, width) == (frames, size, size):
        return video
    if frames > length or size > min(height, width):
        raise ValueError(f"the model needs {frames} frames of {size}×{size}, the clip is "
                         f"{length} frames of {height}×{width}")
    t0, y0, x0 = (int(torch.randint(extent - window + 1, (), generator=generator))
                  for extent, window in ((length, frames), (height, size), (width, size)))
    return video[:, :, t0:t0 + frames, y0:y0 + size, x0:x0 + size]

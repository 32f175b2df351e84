"""Evaluation views: temporal clips × spatial crops of a batch of videos; label lookup.

Axis legend: b batch, C channels, T/H/W frames and pixels of the loaded clip, F/S frames and
side of the model's input.

Single view (the paper's protocol, docs/paper.md, fine-tuning) is the centred clip and the centred crop.
Multi-view spreads ``temporal_clips`` windows evenly over the loaded frames and
``spatial_crops`` squares evenly along the longer spatial side (VideoMAE's 3 crops); the
model's logits are averaged over all views.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch


def _starts(length: int, window: int, count: int, axis: str) -> list[int]:
    if window > length:
        raise ValueError(f"the model needs {window} along {axis}, the clip has only {length}")
    if count < 1:
        raise ValueError(f"views along {axis} must be ≥ 1, got {count}")
    if count == 1:
        return [(length - window) // 2]
    return [round(i * (length - window) / (count - 1)) for i in range(count)]


def views(video: torch.Tensor, frames: int, size: int, temporal_clips: int = 1,
          spatial_crops: int = 1) -> Iterator[torch.Tensor]:
    """video (b, C, T, H, W) → ``temporal_clips · spatial_crops`` views (b, C, F, S, S)."""
    _, _, length, height, width = video.shape
    t_starts = _starts(length, frames, temporal_clips, "time (frames)")
    along_width = width >= height
    s_starts = _starts(width if along_width else height, size, spatial_crops, "space (pixels)")
    other = ((height if along_width else width) - size) // 2
    if other < 0:
        raise ValueError(f"the model needs {size}×{size} pixels, the clip is {height}×{width}")
    for t0 in t_starts:
        clip = video[:, :, t0:t0 + frames]
        for s0 in s_starts:
            y0, x0 = (other, s0) if along_width else (s0, other)
            yield clip[:, :, :, y0:y0 + size, x0:x0 + size]


def model_input_size(encoder: torch.nn.Module) -> tuple[int, int]:
    """(frames, side) the encoder was built for: its grid times its tubelet."""
    tubelet = getattr(encoder, "tubelet", None)
    if tubelet is None:
        raise ValueError(f"{type(encoder).__name__} has no `tubelet`; set the view size explicitly")
    grid = encoder.grid
    return grid.t * tubelet[0], grid.h * tubelet[1]


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

"""Images attached to runs as PNG artifacts (Omniboard previews them): heat maps such as token
scores. (The masks + reconstruction grid is ``experiments/reporting/reconstruction_grid.py``.)

Axis legend: t/h/w the token grid; k maps.
"""
from __future__ import annotations

import os
import tempfile

import torch

MAX_COLUMNS = 8                  # latent time steps shown; longer clips are subsampled


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")   # no display on servers; must precede pyplot's import
    import matplotlib.pyplot as plt
    return plt


def attach_png(run, figure, name: str) -> None:
    """Saves ``figure`` as PNG and adds it to ``run`` as the artifact ``name`` (no-op without a run)."""
    plt = _pyplot()
    try:
        if run is None:
            return
        with tempfile.TemporaryDirectory() as folder:   # observers copy the file when it is added
            path = os.path.join(folder, name)
            figure.savefig(path, dpi=100)
            run.add_artifact(path, name, content_type="image/png")
    finally:
        plt.close(figure)


def heatmap_grid(maps: torch.Tensor, titles: list[str] | None = None):
    """maps (k, h, w) → a figure with one heat map per map."""
    plt = _pyplot()
    count = maps.shape[0]
    figure, axes = plt.subplots(1, count, figsize=(2.2 * count, 2.4), squeeze=False)
    for index, axis in enumerate(axes[0]):
        image = axis.imshow(maps[index].detach().float().cpu().numpy(), cmap="viridis")
        axis.set_title(titles[index] if titles else str(index), fontsize=8)
        axis.axis("off")
        figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    return figure


def attach_score_maps(run, batch: dict) -> None:
    """The first clip's token scores (b, t, h, w), when the batch has them, as ``scores.png``."""
    scores = batch.get("scores")
    if scores is None or run is None:
        return
    columns = torch.linspace(0, scores.shape[1] - 1, min(scores.shape[1], MAX_COLUMNS)).round().long()
    attach_png(run, heatmap_grid(scores[0, columns].float().cpu(), [f"t={int(t)}" for t in columns]), "scores.png")

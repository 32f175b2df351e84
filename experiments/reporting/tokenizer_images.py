"""PNG figures of a tokenizer run: reconstructions next to the originals, and score heat-maps
with the selection outlined. Saved with matplotlib's Agg backend (no display needed).

Axis legend: b batch, C channels, T/H/W pixels, t/h/w token grid.
"""
from __future__ import annotations

import torch

_CLIPS_SHOWN = 2
_FRAMES_SHOWN = 4


def _pyplot():
    """pyplot on the Agg backend, imported on first use: matplotlib costs ~0.5 s of start-up that
    every command importing this module (all of run.py's) would otherwise pay."""
    import matplotlib
    matplotlib.use("Agg")  # before pyplot is imported
    import matplotlib.pyplot as plt
    return plt


def _as_image(frame: torch.Tensor, low: float, high: float):
    """(C, H, W) → (H, W) grey or (H, W, 3) in [0, 1] using the original clip's range."""
    image = ((frame.float() - low) / max(high - low, 1e-6)).clamp(0, 1)
    return image[0].numpy() if image.shape[0] == 1 else image[:3].permute(1, 2, 0).numpy()


def save_reconstructions(path: str, video: torch.Tensor, recon: torch.Tensor) -> str:
    """Rows: original / reconstruction for the first clips; columns: evenly spaced frames."""
    clips = min(_CLIPS_SHOWN, video.shape[0])
    frames = torch.linspace(0, video.shape[2] - 1, _FRAMES_SHOWN).round().long().tolist()
    plt = _pyplot()
    figure, axes = plt.subplots(2 * clips, len(frames), figsize=(2 * len(frames), 2 * 2 * clips),
                                squeeze=False)
    for clip in range(clips):
        low, high = float(video[clip].min()), float(video[clip].max())
        for column, frame in enumerate(frames):
            for row, (name, source) in enumerate([("original", video), ("reconstruction", recon)]):
                axis = axes[2 * clip + row][column]
                axis.imshow(_as_image(source[clip, :, frame], low, high), cmap="gray")
                axis.set_title(f"clip {clip} {name} f{frame}", fontsize=7)
                axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def save_score_maps(path: str, video: torch.Tensor, scores: torch.Tensor,
                    selection: torch.Tensor) -> str:
    """Per latent frame: the first clip's frame, its score heat-map and the selection mask."""
    t = scores.shape[1]
    st = video.shape[2] // t
    low, high = float(video[0].min()), float(video[0].max())
    # One colour scale for every latent frame, so frames can be compared with each other.
    ranges = {"score": (float(scores[0].min()), float(scores[0].max())), "kept": (0.0, 1.0)}
    plt = _pyplot()
    figure, axes = plt.subplots(3, t, figsize=(1.6 * t, 5), squeeze=False)
    for latent_frame in range(t):
        panels = [(_as_image(video[0, :, latent_frame * st], low, high), "gray", "frame"),
                  (scores[0, latent_frame].float().numpy(), "magma", "score"),
                  (selection[0, latent_frame].float().numpy(), "gray", "kept")]
        for row, (image, cmap, name) in enumerate(panels):
            vmin, vmax = ranges.get(name, (None, None))
            axes[row][latent_frame].imshow(image, cmap=cmap, vmin=vmin, vmax=vmax)
            axes[row][latent_frame].set_title(f"{name} t{latent_frame}", fontsize=7)
            axes[row][latent_frame].axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path

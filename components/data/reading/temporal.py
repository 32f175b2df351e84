"""Temporal sampling: which stored frames make a clip of ``clip_frames`` frames at ``stride``.

A window spans ``clip_frames · stride`` stored frames. Training draws its start uniformly
(``random``); evaluation centres it (``center``). A video shorter than the span is handled by
``short_policy``:

- ``loop``: the frame numbers wrap around (t mod n) — the clip replays from the start;
- ``pad``: frames past the end repeat the last frame;
- ``resample``: ``clip_frames`` frames spread evenly over the whole video (stride shrinks);
- ``skip``: no sample — :class:`ShortClipError`; the data pipeline skips the clip and counts it.

Evaluation may take several windows (``windows(n, count)``): their starts spread evenly from
the first to the last possible start (VideoMAE's uniform multi-view test).
"""
from __future__ import annotations

from typing import Literal

import numpy as np

StartMode = Literal["random", "center"]
ShortPolicy = Literal["loop", "pad", "resample", "skip"]
START_MODES = ("random", "center")
SHORT_POLICIES = ("loop", "pad", "resample", "skip")


class ShortClipError(ValueError):
    """A clip shorter than the window under ``short_policy="skip"``."""


class TemporalSampler:
    """num_frames → frame numbers (clip_frames,), each in [0, num_frames)."""

    def __init__(self, clip_frames: int, stride: int = 1, start: StartMode = "random",
                 short_policy: ShortPolicy = "loop"):
        if clip_frames < 1:
            raise ValueError(f"clip_frames must be ≥ 1, got {clip_frames}")
        if stride < 1:
            raise ValueError(f"stride must be ≥ 1, got {stride}")
        if start not in START_MODES:
            raise ValueError(f"start must be one of {START_MODES}, got {start!r}")
        if short_policy not in SHORT_POLICIES:
            raise ValueError(f"short_policy must be one of {SHORT_POLICIES}, got {short_policy!r}")
        self.clip_frames, self.stride, self.start, self.short_policy = clip_frames, stride, start, short_policy

    @property
    def span(self) -> int:
        """Stored frames covered by one window (first to last sampled frame, inclusive)."""
        return (self.clip_frames - 1) * self.stride + 1

    def __call__(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        if num_frames >= self.span:
            room = num_frames - self.span
            first = int(rng.integers(room + 1)) if self.start == "random" else room // 2
            return first + np.arange(self.clip_frames) * self.stride
        return self._short(num_frames)

    def windows(self, num_frames: int, count: int) -> list[np.ndarray]:
        """``count`` windows, starts spread evenly (one: centred) → each (clip_frames,)."""
        if count < 1:
            raise ValueError(f"temporal views must be ≥ 1, got {count}")
        if num_frames < self.span:
            return [self._short(num_frames)] * count
        room = num_frames - self.span
        starts = [room // 2] if count == 1 else [round(i * room / (count - 1)) for i in range(count)]
        return [first + np.arange(self.clip_frames) * self.stride for first in starts]

    def _short(self, num_frames: int) -> np.ndarray:
        if num_frames < 1:
            raise ValueError(f"cannot sample from a video with {num_frames} frames")
        if self.short_policy == "skip":
            raise ShortClipError(f"clip has {num_frames} frames, the window spans {self.span} "
                                 f"({self.clip_frames} frames at stride {self.stride})")
        offsets = np.arange(self.clip_frames) * self.stride
        if self.short_policy == "resample":
            return np.floor(np.linspace(0, num_frames, self.clip_frames, endpoint=False)).astype(np.int64)
        if self.short_policy == "loop":
            return offsets % num_frames
        return np.minimum(offsets, num_frames - 1)

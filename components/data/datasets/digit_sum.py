"""Digit sum: K digits shown one per segment of the clip; label = their sum mod 10.

The clip is cut into ``num_digits`` equal segments; in each, one uniform random digit
(a procedural seven-segment glyph, no data files) is shown for ``show_frames`` frames at a
random time and place. Because every digit is uniform and independent, the sum mod 10 of all
but one is independent of the label: a window that misses any digit is at exactly chance.
Distractors are single lit segments flashing at random times — glyph parts, not digits.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from lvmae.components.data.datasets.procedural import ProceduralDataset
from lvmae.registry import register

# Seven segments, a–g, as which of them each digit lights (the usual display encoding).
SEGMENTS_OF_DIGIT = {0: "abcdef", 1: "bc", 2: "abdeg", 3: "abcdg", 4: "bcfg",
                     5: "acdfg", 6: "acdefg", 7: "abc", 8: "abcdefg", 9: "abcdfg"}
DIGITS = 10


def segment_boxes(height: int, width: int, thickness: int) -> dict[str, tuple[slice, slice]]:
    """Each segment's (rows, cols) inside a glyph box of ``height`` × ``width`` pixels."""
    mid = height // 2
    horizontal = slice(0, width)
    return {"a": (slice(0, thickness), horizontal),
            "g": (slice(mid - thickness // 2, mid - thickness // 2 + thickness), horizontal),
            "d": (slice(height - thickness, height), horizontal),
            "f": (slice(0, mid + 1), slice(0, thickness)),
            "b": (slice(0, mid + 1), slice(width - thickness, width)),
            "e": (slice(mid, height), slice(0, thickness)),
            "c": (slice(mid, height), slice(width - thickness, width))}


def glyph(digit: int, height: int, width: int, thickness: int) -> np.ndarray:
    """Boolean (height, width) seven-segment image of ``digit``."""
    image = np.zeros((height, width), dtype=bool)
    boxes = segment_boxes(height, width, thickness)
    for segment in SEGMENTS_OF_DIGIT[digit]:
        image[boxes[segment]] = True
    return image


@register("dataset.digit_sum")
class DigitSum(ProceduralDataset):
    """Label = (sum of the ``num_digits`` shown digits) mod 10; see the module docstring."""

    name = "digit_sum"
    # Seven-segment glyphs read as other digits under both (segments: SEGMENTS_OF_DIGIT).
    label_preserving_augmentations = ()
    label_changes: ClassVar[Mapping[str, str]] = {"flip": "a mirrored seven-segment 2 is a 5 (and a 5 a 2), so the sum changes under "
                             "a horizontal flip",
                     "crop": "a crop edge through a glyph leaves another digit's segments (an 8 cut "
                             "left of its vertical bars reads as a 3), so the sum changes"}

    def __init__(self, root: str = "data", clip_frames: int = 128, image_size: int = 32,
                 num_digits: int = 4, show_frames: int = 2, glyph_height: int = 14, glyph_width: int = 8,
                 thickness: int = 2, distractors: int = 4, noise: float = 4.0,
                 train_samples: int = 1024, val_samples: int = 1024, samples_per_shard: int = 128,
                 seed: int = 0, fps: float = 25.0, codec: str = "npy"):
        if num_digits < 1:
            raise ValueError(f"dataset.digit_sum: num_digits must be ≥ 1, got {num_digits}")
        segment = clip_frames // num_digits
        if not 1 <= show_frames <= segment:
            raise ValueError(f"dataset.digit_sum: show_frames must be in [1, clip_frames // num_digits = "
                             f"{segment}], got {show_frames}")
        if not (2 * thickness < glyph_width <= image_size and 3 * thickness < glyph_height <= image_size):
            raise ValueError(f"dataset.digit_sum: glyph {glyph_height}×{glyph_width} (thickness {thickness}) "
                             f"must fit image_size {image_size} and leave room between its segments")
        super().__init__(root, clip_frames, image_size, train_samples, val_samples, samples_per_shard,
                         seed, fps, codec, num_digits=num_digits, show_frames=show_frames,
                         glyph_height=glyph_height, glyph_width=glyph_width, thickness=thickness,
                         distractors=distractors, noise=noise)
        self.segment_frames = segment
        self.glyphs = [glyph(d, glyph_height, glyph_width, thickness) for d in range(DIGITS)]
        self.boxes = segment_boxes(glyph_height, glyph_width, thickness)

    @property
    def num_classes(self) -> int:
        return DIGITS

    def _corner(self, rng: np.random.Generator) -> tuple[int, int]:
        p = self.params
        return (int(rng.integers(p["image_size"] - p["glyph_height"] + 1)),
                int(rng.integers(p["image_size"] - p["glyph_width"] + 1)))

    def draw(self, rng: np.random.Generator) -> dict:
        p = self.params
        show, segment = p["show_frames"], self.segment_frames
        digits = [int(d) for d in rng.integers(DIGITS, size=p["num_digits"])]
        starts = [k * segment + int(rng.integers(segment - show + 1)) for k in range(p["num_digits"])]
        distractors = [(int(rng.integers(p["clip_frames"] - show + 1)), "abcdefg"[int(rng.integers(7))],
                        self._corner(rng)) for _ in range(p["distractors"])]
        return {"label": sum(digits) % DIGITS, "digits": digits,
                "events": [(s, s + show) for s in starts],
                "corners": [self._corner(rng) for _ in digits], "distractors": distractors,
                "colour": [float(c) for c in rng.uniform(160, 255, size=3)],
                "noise_seed": int(rng.integers(2**32))}

    def render(self, plan: dict) -> np.ndarray:
        p = self.params
        size, show, height, width = p["image_size"], p["show_frames"], p["glyph_height"], p["glyph_width"]
        noise_rng = np.random.default_rng(plan["noise_seed"])
        clip = 48.0 + noise_rng.normal(0.0, p["noise"], (p["clip_frames"], size, size, 3))
        colour = np.array(plan["colour"])
        for start, segment, (top, left) in plan["distractors"]:
            rows, cols = self.boxes[segment]
            box = clip[start:start + show, top:top + height, left:left + width]
            box[:, rows, cols] = colour
        for digit, (start, stop), (top, left) in zip(plan["digits"], plan["events"], plan["corners"]):
            clip[start:stop, top:top + height, left:left + width][:, self.glyphs[digit]] = colour
        return np.clip(clip, 0, 255).astype(np.uint8)

"""Cue–probe: a long-range benchmark where only a window spanning the whole clip can win.

A coloured ring flashes for ``flash_frames`` frames somewhere in the first ``event_fraction``
of the clip (the cue) and again in the last ``event_fraction`` (the probe). Cue colour c and
probe colour p are independent and uniform over a palette of C colours; the label is
(p − c) mod C, so either colour alone says nothing: a window that misses one flash is at
exactly chance. Distractors are filled discs in the same palette flashing at random times
and places — colour presence is no shortcut; the model must tell rings from discs and early
from late. With 128 frames and event_fraction 0.25, cue and probe are ≥ 64 frames apart, so
every 32-frame contiguous window is at chance (``run.py oracle_ceiling`` measures it).
"""
from __future__ import annotations

import colorsys

import numpy as np

from lvmae.components.data.datasets.procedural import ProceduralDataset
from lvmae.registry import register


def palette(colours: int) -> np.ndarray:
    """``colours`` saturated hues evenly spaced on the colour wheel, float (colours, 3) in [0, 255]."""
    return np.array([colorsys.hsv_to_rgb(i / colours, 1.0, 1.0) for i in range(colours)]) * 255.0


def ring_masks(size: int, centre: tuple[int, int], radius: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (size, size) masks of a ring and of the filled disc of the same outer radius."""
    rows, cols = np.ogrid[:size, :size]
    distance = np.hypot(rows - centre[0], cols - centre[1])
    return (distance <= radius) & (distance > radius - width), distance <= radius


@register("dataset.cue_probe")
class CueProbe(ProceduralDataset):
    """Label = (probe colour − cue colour) mod ``num_colours``; see the module docstring."""

    name = "cue_probe"
    # Colours and the early/late order decide the label, not where a ring is: a mirror keeps it;
    # a crop keeps a ring a ring (an arc, not a disc) or cuts the flash away (the label stays
    # right, unseen — the oracle ceiling's case, not a changed label).
    label_preserving_augmentations = ("crop", "flip")

    def __init__(self, root: str = "data", clip_frames: int = 128, image_size: int = 32,
                 num_colours: int = 4, flash_frames: int = 2, event_fraction: float = 0.25,
                 distractors: int = 2, ring_radius: float = 6.0, ring_width: float = 2.0,
                 noise: float = 4.0, train_samples: int = 1024, val_samples: int = 1024,
                 samples_per_shard: int = 128, seed: int = 0, fps: float = 25.0, codec: str = "npy"):
        if num_colours < 2:
            raise ValueError(f"dataset.cue_probe: num_colours must be ≥ 2, got {num_colours}")
        if not 0 < event_fraction < 0.5:
            raise ValueError(f"dataset.cue_probe: event_fraction must be in (0, 0.5), got {event_fraction}")
        window = int(clip_frames * event_fraction)
        if not 1 <= flash_frames <= window:
            raise ValueError(f"dataset.cue_probe: flash_frames must be in [1, {window}] "
                             f"(clip_frames · event_fraction), got {flash_frames}")
        if not 0 < ring_width <= ring_radius < image_size / 2:
            raise ValueError(f"dataset.cue_probe: need 0 < ring_width ≤ ring_radius < image_size/2, "
                             f"got ring_width={ring_width} ring_radius={ring_radius} image_size={image_size}")
        super().__init__(root, clip_frames, image_size, train_samples, val_samples, samples_per_shard,
                         seed, fps, codec, num_colours=num_colours, flash_frames=flash_frames,
                         event_fraction=event_fraction, distractors=distractors, ring_radius=ring_radius,
                         ring_width=ring_width, noise=noise)
        self.event_window = window
        self.colours = palette(num_colours)

    @property
    def num_classes(self) -> int:
        return self.params["num_colours"]

    def _place(self, rng: np.random.Generator) -> tuple[int, int]:
        low = int(np.ceil(self.params["ring_radius"]))
        high = self.params["image_size"] - low
        return int(rng.integers(low, high)), int(rng.integers(low, high))

    def draw(self, rng: np.random.Generator) -> dict:
        p = self.params
        frames, flash, window = p["clip_frames"], p["flash_frames"], self.event_window
        cue, probe = (int(c) for c in rng.integers(p["num_colours"], size=2))
        cue_start = int(rng.integers(window - flash + 1))
        probe_start = int(frames - window + rng.integers(window - flash + 1))
        distractors = [(int(rng.integers(frames - flash + 1)), int(rng.integers(p["num_colours"])), self._place(rng))
                       for _ in range(p["distractors"])]
        return {"label": (probe - cue) % p["num_colours"], "cue": cue, "probe": probe,
                "events": [(cue_start, cue_start + flash), (probe_start, probe_start + flash)],
                "positions": [self._place(rng), self._place(rng)], "distractors": distractors,
                "background": float(rng.uniform(32, 96)), "noise_seed": int(rng.integers(2**32))}

    def render(self, plan: dict) -> np.ndarray:
        p = self.params
        size, flash = p["image_size"], p["flash_frames"]
        noise_rng = np.random.default_rng(plan["noise_seed"])
        clip = plan["background"] + noise_rng.normal(0.0, p["noise"], (p["clip_frames"], size, size, 3))
        # Distractors first: a ring drawn over a disc stays visible as a ring.
        for start, colour, centre in plan["distractors"]:
            _, disc = ring_masks(size, centre, p["ring_radius"], p["ring_width"])
            clip[start:start + flash, disc] = self.colours[colour]
        for (start, stop), colour, centre in zip(plan["events"], (plan["cue"], plan["probe"]), plan["positions"]):
            ring, _ = ring_masks(size, centre, p["ring_radius"], p["ring_width"])
            clip[start:stop, ring] = self.colours[colour]
        return np.clip(clip, 0, 255).astype(np.uint8)

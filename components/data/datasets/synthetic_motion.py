"""A procedural video set for the tiny end-to-end job: which way does the square move?

Each clip is a coloured square drifting one step per frame in one of four directions
(wrapping at the borders) over low-amplitude noise; the label is the direction. A single
frame says nothing about the label; two frames say everything — a short-range task, enough
to check that pre-training and fine-tuning run and learn.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import ClassVar

import numpy as np

from lvmae.components.data.datasets.base import Dataset
from lvmae.components.data.formats.manifest import Manifest, Split
from lvmae.components.data.writing.writer import generated_folder, publish_generated, write_shards
from lvmae.registry import register

DIRECTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}


def motion_clip(rng: np.random.Generator, frames: int, size: int, label: int,
                square: int, noise: float) -> np.ndarray:
    """One uint8 clip (T, H, W, 3)."""
    dy, dx = list(DIRECTIONS.values())[label]
    speed = int(rng.integers(1, 3))
    y0, x0 = rng.integers(0, size, size=2)
    colour = rng.integers(96, 256, size=3)
    background = rng.integers(0, 64, size=3)
    clip = np.empty((frames, size, size, 3), dtype=np.float32)
    clip[:] = background
    clip += rng.normal(0.0, noise, size=clip.shape)
    ys = (y0 + dy * speed * np.arange(frames)[:, None] + np.arange(square)[None, :]) % size
    xs = (x0 + dx * speed * np.arange(frames)[:, None] + np.arange(square)[None, :]) % size
    for t in range(frames):
        clip[t, ys[t][:, None], xs[t][None, :]] = colour
    return np.clip(clip, 0, 255).astype(np.uint8)


@register("dataset.synthetic_motion")
class SyntheticMotion(Dataset):
    """Writes (once) and describes the moving-square set; deterministic by ``seed``.

    Shards go to ``root/synthetic_motion-<fingerprint>/`` where the fingerprint hashes
    every generation parameter, so changing one never overwrites shards already written.
    """

    # A crop (even one that cuts the wrapping square away) keeps the direction; a mirror does not.
    label_preserving_augmentations = ("crop",)
    label_changes: ClassVar[Mapping[str, str]] = {"flip": "direction labels change under a horizontal flip (a square moving left "
                             "moves right in the mirrored clip)"}

    def __init__(self, root: str = "data", clip_frames: int = 16, image_size: int = 32,
                 train_samples: int = 512, val_samples: int = 256, samples_per_shard: int = 128,
                 square: int = 6, noise: float = 8.0, seed: int = 0, fps: float = 8.0):
        if clip_frames < 2 or image_size < square or square < 1:
            raise ValueError("dataset.synthetic_motion: need clip_frames ≥ 2 and 1 ≤ square ≤ image_size")
        self.params = dict(clip_frames=clip_frames, image_size=image_size,
                           train_samples=train_samples, val_samples=val_samples,
                           samples_per_shard=samples_per_shard, square=square, noise=noise,
                           seed=seed, fps=fps)
        self.folder = generated_folder(root, "synthetic_motion", self.params)

    def _samples(self, split: str, count: int, seed: int) -> Iterator[dict]:
        rng = np.random.default_rng(seed)
        p = self.params
        for i in range(count):
            label = int(rng.integers(len(DIRECTIONS)))
            clip = motion_clip(rng, p["clip_frames"], p["image_size"], label, p["square"], p["noise"])
            yield {"__key__": f"{split}_{i:06d}", "npy": clip,
                   "json": {"label": label, "fps": p["fps"], "source": "synthetic_motion",
                            "frames": [0, p["clip_frames"]]}}

    def prepare(self) -> Manifest:
        return publish_generated(self.folder, self._write)

    def _write(self, staging: str) -> Manifest:
        p = self.params
        splits = {}
        for offset, (split, count) in enumerate([("train", p["train_samples"]), ("val", p["val_samples"])]):
            shards = write_shards(self._samples(split, count, p["seed"] * 1000 + offset),
                                  staging, split, p["samples_per_shard"])
            splits[split] = Split(shards=f"{split}-{{000000..{shards - 1:06d}}}.tar", samples=count)
        return Manifest(name="synthetic_motion", splits=splits, heads={"label": list(DIRECTIONS)},
                        fps=p["fps"], clip_frames=p["clip_frames"],
                        unsafe_augmentations=self.unsafe_augmentations())

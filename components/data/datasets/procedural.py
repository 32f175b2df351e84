"""Shared machinery of the procedural datasets: deterministic generation into shards, and the
oracle ceiling of a temporal sampler.

A procedural clip records its *events* — the frame ranges ``[start, stop)`` that carry the
label's information. The label is built so that a clip whose sampled frames miss any one
event is at exactly chance (the missing event is uniform and independent of the rest). If a
sampler sees every event in a fraction f of clips, its accuracy is at most
``f + (1 − f)/C`` for C classes: the *oracle ceiling*.
"""
from __future__ import annotations

import abc
from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from lvmae.components.data.datasets.base import Dataset
from lvmae.components.data.decoding.codec import encode_mp4
from lvmae.components.data.formats.manifest import FrameStats, Manifest, Split
from lvmae.components.data.formats.schema import make_sample
from lvmae.components.data.reading.temporal import StartMode
from lvmae.components.data.writing.writer import generated_folder, publish_generated, write_shards


def sees_every_event(events: list[tuple[int, int]], frame_idx: np.ndarray) -> bool:
    """True when some sampled frame falls in every event range."""
    return all(np.any((frame_idx >= start) & (frame_idx < stop)) for start, stop in events)


def window_fraction(events: list[tuple[int, int]], num_frames: int, clip_frames: int, stride: int,
                    start: StartMode = "random") -> float:
    """Fraction of a sampler's windows (all equally likely starts, or the centred one) that see
    every event of one clip; the window must fit in the clip."""
    span = (clip_frames - 1) * stride + 1
    if span > num_frames:
        raise ValueError(f"a window of {clip_frames} frames at stride {stride} spans {span} frames, "
                         f"longer than the {num_frames}-frame clip")
    offsets = np.arange(clip_frames) * stride
    starts = range(num_frames - span + 1) if start == "random" else [(num_frames - span) // 2]
    return float(np.mean([sees_every_event(events, first + offsets) for first in starts]))


class ProceduralDataset(Dataset):
    """Writes (once) a deterministic procedural set to ``root/<name>-<fingerprint>/``.

    Subclasses set ``name`` and implement ``draw(rng) → plan`` (every random choice of one clip:
    a dict with at least ``label`` and ``events``, plus a ``noise_seed``) and ``render(plan) →
    clip``; oracle ceilings need only the cheap ``draw``.
    The fingerprint hashes every generation parameter, so changing one never overwrites
    shards already written; the folder appears atomically (staging folder + rename).
    Each task declares the augmentations that keep its labels (``Dataset``); the base's
    declaration — all of them — is inherited until a task sets its own.
    """

    name: str = ""

    def __init__(self, root: str, clip_frames: int, image_size: int, train_samples: int,
                 val_samples: int, samples_per_shard: int, seed: int, fps: float, codec: str,
                 **generation):
        if codec not in ("npy", "mp4"):
            raise ValueError(f"dataset.{self.name}: codec must be 'npy' or 'mp4', got {codec!r}")
        for key, value in dict(clip_frames=clip_frames, image_size=image_size,
                               samples_per_shard=samples_per_shard).items():
            if value < 1:
                raise ValueError(f"dataset.{self.name}: {key} must be ≥ 1, got {value}")
        self.params = dict(clip_frames=clip_frames, image_size=image_size, train_samples=train_samples,
                           val_samples=val_samples, samples_per_shard=samples_per_shard, seed=seed,
                           fps=fps, codec=codec, **generation)
        self.folder = generated_folder(root, self.name, self.params)

    @property
    @abc.abstractmethod
    def num_classes(self) -> int:
        ...

    @abc.abstractmethod
    def draw(self, rng: np.random.Generator) -> dict:
        """Every random choice of one clip: {"label": int, "events": [(start, stop), ...], ...}."""

    @abc.abstractmethod
    def render(self, plan: dict) -> np.ndarray:
        """The clip of a plan, uint8 (t, h, w, c); deterministic given the plan."""

    def heads(self) -> dict[str, list[str]]:
        return {"label": [str(i) for i in range(self.num_classes)]}

    def _split_seed(self, split: str) -> list[int]:
        return [self.params["seed"], {"train": 0, "val": 1}[split]]

    def plans(self, split: str, count: int | None = None) -> Iterator[dict]:
        """The split's clip plans, in order, deterministic by seed."""
        rng = np.random.default_rng(self._split_seed(split))
        for _ in range(self.params[f"{split}_samples"] if count is None else count):
            yield self.draw(rng)

    def clips(self, split: str, count: int | None = None) -> Iterator[tuple[np.ndarray, int, list]]:
        """The split's (clip, label, events), in order (without writing anything)."""
        for plan in self.plans(split, count):
            yield self.render(plan), plan["label"], plan["events"]

    def _samples(self, split: str) -> Iterator[dict]:
        p = self.params
        for i, (clip, label, events) in enumerate(tqdm(self.clips(split), total=p[f"{split}_samples"],
                                                       desc=f"{self.name} {split}", unit="clip")):
            # yuv444p: 4:2:0 chroma subsampling smears thin coloured details.
            stored = encode_mp4(clip, p["fps"], crf=10, pix_fmt="yuv444p") if p["codec"] == "mp4" else clip
            sample = make_sample(f"{split}_{i:06d}", stored, {"label": label}, p["fps"], len(clip),
                                 clip.shape[1:3], source=self.name, frames=(0, len(clip)))
            sample["json"]["events"] = [list(e) for e in events]
            yield sample

    def prepare(self) -> Manifest:
        return publish_generated(self.folder, self._write)

    def _write(self, staging: str) -> Manifest:
        p, splits = self.params, {}
        for split in ("train", "val"):
            shards = write_shards(self._samples(split), staging, split, p["samples_per_shard"])
            n = p["clip_frames"]
            splits[split] = Split(shards=f"{split}-{{000000..{shards - 1:06d}}}.tar",
                                  samples=p[f"{split}_samples"], frames=FrameStats(n, float(n), n))
        return Manifest(name=self.name, splits=splits, heads=self.heads(), fps=p["fps"],
                        clip_frames=p["clip_frames"], codec=p["codec"],
                        unsafe_augmentations=self.unsafe_augmentations())

    def oracle_ceiling(self, clip_frames: int, stride: int = 1, start: StartMode = "random",
                       clips: int = 500, split: str = "val") -> dict[str, float]:
        """Estimated over the first ``clips`` clips of ``split``: the fraction f of windows that
        see every event, and the accuracy ceiling f + (1 − f)/C."""
        fractions = [window_fraction(plan["events"], self.params["clip_frames"], clip_frames, stride, start)
                     for plan in self.plans(split, clips)]
        seen = float(np.mean(fractions))
        return {"seen_fraction": seen, "ceiling": seen + (1 - seen) / self.num_classes,
                "chance": 1 / self.num_classes}

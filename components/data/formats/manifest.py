"""Dataset manifests: YAML read with OmegaConf against a typed schema.

    name: synthetic_motion
    fps: 8.0
    clip_frames: 16
    heads: {label: [right, left, down, up]}
    splits:
      train: {shards: "train-{000000..000003}.tar", samples: 512,
              frames: {min: 16, mean: 16.0, max: 16}}

docs/data.md documents every field; ``${oc.env:VAR}`` interpolation works in any string.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from omegaconf import MISSING, OmegaConf

from lvmae.components.data.formats.label_safety import check_reasons

CODECS = ("mp4", "npy")
PRECOMPUTED_FIELDS = ("latents", "indices", "scores")


@dataclasses.dataclass
class FrameStats:
    """Clip-length statistics of a split, in stored frames."""
    min: int = 0
    mean: float = 0.0
    max: int = 0


@dataclasses.dataclass
class WriteSummary:
    """What ``write_shards`` did for a split: clips written, skipped (count per reason), stored
    frames and hours of video."""
    written: int = 0
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    frames: int = 0
    hours: float = 0.0


@dataclasses.dataclass
class WrittenFrom:
    """The inputs ``write_shards`` wrote a split from (absolute paths), so ``validate_shards
    sources=True`` can recompute every sample's fingerprint; empty for other writers."""
    video_root: str = ""
    annotations: str = ""
    annotation_format: str = ""
    labels_path: str = ""
    options: str = ""              # the WriteOptions, as JSON


@dataclasses.dataclass
class Split:
    shards: str = MISSING          # brace pattern, relative to the manifest's folder or a URL
    samples: int = MISSING
    frames: FrameStats = dataclasses.field(default_factory=FrameStats)
    fingerprint: str = ""          # hash of the written samples' fingerprints ("" = not recorded)
    summary: WriteSummary = dataclasses.field(default_factory=WriteSummary)
    written_from: WrittenFrom = dataclasses.field(default_factory=WrittenFrom)
    # Per shard, in the pattern's order (components/data/formats/shard_index.py; [] = not recorded):
    shard_samples: list[int] = dataclasses.field(default_factory=list)
    shard_bytes: list[int] = dataclasses.field(default_factory=list)
    shard_sha1: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class View:
    """The fixed view precomputed fields (latents, indices, scores) were computed on:
    stored frames ``[start, start + frames·stride)`` at ``stride``, at the stored size."""
    frames: int = 0                # 0 = no precomputed fields
    stride: int = 1
    start: int = 0
    grid: list[int] = dataclasses.field(default_factory=list)   # token grid (t, h, w)


@dataclasses.dataclass
class Manifest:
    name: str = MISSING
    splits: dict[str, Split] = dataclasses.field(default_factory=dict)
    heads: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    fps: float = 0.0
    clip_frames: int = 0           # fixed clip length when every clip has one, else 0
    codec: str = "npy"             # "mp4" or "npy": how clips are stored
    short_side: int = 0            # stored short side in pixels (0 = as the source)
    fields: list[str] = dataclasses.field(default_factory=list)   # precomputed fields present
    view: View = dataclasses.field(default_factory=View)
    # augmentation → why it changes these labels (components/data/formats/label_safety.py); the data
    # pipeline refuses to apply them (e.g. {flip: "classes name left and right"} for SSv2)
    unsafe_augmentations: dict[str, str] = dataclasses.field(default_factory=dict)
    schema_version: int = 1
    root: str = ""                 # filled in when loaded: the manifest's folder

    def __post_init__(self):
        if self.codec not in CODECS:
            raise ValueError(f"manifest codec must be one of {CODECS}, got {self.codec!r}")
        unknown = [f for f in self.fields if f not in PRECOMPUTED_FIELDS]
        if unknown:
            raise ValueError(f"manifest fields {unknown} unknown; allowed: {PRECOMPUTED_FIELDS}")
        if self.fields and self.view.frames <= 0:
            raise ValueError("manifest declares precomputed fields but no view (view.frames > 0)")
        check_reasons(self.unsafe_augmentations, "manifest key unsafe_augmentations")

    @property
    def primary_head(self) -> str:
        """The head whose labels fill a batch's ``label`` (the first one declared)."""
        return next(iter(self.heads), "label")

    def urls(self, split: str) -> str:
        if split not in self.splits:
            raise KeyError(f"manifest {self.name!r} has no split {split!r}; "
                           f"splits: {', '.join(self.splits)}")
        pattern = self.splits[split].shards
        is_url = "://" in pattern or pattern.startswith("pipe:")   # anything webdataset opens
        return pattern if is_url or os.path.isabs(pattern) else os.path.join(self.root, pattern)

    def num_classes(self, head: str | None = None) -> int:
        head = head or self.primary_head
        if head not in self.heads:
            raise KeyError(f"manifest {self.name!r} has no label head {head!r}; heads: {list(self.heads)}")
        return len(self.heads[head])


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Reads and validates a manifest; errors name the file."""
    path = Path(path)
    try:
        raw = OmegaConf.load(path)
        merged = OmegaConf.merge(OmegaConf.structured(Manifest), raw)
        manifest = OmegaConf.to_object(merged)
    except FileNotFoundError:
        raise FileNotFoundError(f"dataset manifest not found: {path}") from None
    except Exception as error:
        raise ValueError(f"invalid dataset manifest {path}: {error}") from error
    manifest.root = str(path.parent)
    return manifest


def save_manifest(manifest: Manifest, path: str | os.PathLike) -> None:
    data = OmegaConf.to_container(OmegaConf.structured(manifest))
    data.pop("root")
    OmegaConf.save(OmegaConf.create(data), path)

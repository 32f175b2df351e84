"""Dataset manifests: YAML read with OmegaConf against a typed schema.

    name: synthetic_motion
    fps: 8.0
    clip_frames: 16
    heads: {label: [right, left, down, up]}
    splits:
      train: {shards: "train-{000000..000003}.tar", samples: 512}
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from omegaconf import MISSING, OmegaConf


@dataclasses.dataclass
class Split:
    shards: str = MISSING          # brace pattern, relative to the manifest's folder or a URL
    samples: int = MISSING


@dataclasses.dataclass
class Manifest:
    name: str = MISSING
    splits: dict[str, Split] = dataclasses.field(default_factory=dict)
    heads: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    fps: float = 0.0
    clip_frames: int = 0
    root: str = ""                 # filled in when loaded: the manifest's folder

    def urls(self, split: str) -> str:
        if split not in self.splits:
            raise KeyError(f"manifest {self.name!r} has no split {split!r}; "
                           f"splits: {', '.join(self.splits)}")
        pattern = self.splits[split].shards
        return pattern if "://" in pattern or os.path.isabs(pattern) else os.path.join(self.root, pattern)

    def num_classes(self, head: str = "label") -> int:
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

"""``dataset.manifest``: shards someone already wrote (``run.py write_shards``), by manifest path.

    DATASET = @dataset.manifest()
    dataset.manifest.path = 'data/epic100/manifest.yaml'     # or '${oc.env:DATA}/…' inside YAML

When the samples carry an oracle field — ``events``, the stored-frame ranges ``[start, stop)``
the label depends on (procedural sets write them; ``write_shards`` stores a generic CSV's
``events`` column) — ``oracle_ceiling`` works as for the procedural sets, so ``python run.py
oracle_ceiling`` runs on any such manifest.

The augmentations that change the labels are the manifest's ``unsafe_augmentations``
(``write_shards`` declares the flip there when class names speak of left or right, as SSv2's do).
"""
from __future__ import annotations

import json
import os

import numpy as np
import webdataset as wds
from webdataset.shardlists import expand_urls

from lvmae.components.data.datasets.base import Dataset
from lvmae.components.data.datasets.procedural import window_fraction
from lvmae.components.data.formats.manifest import Manifest, load_manifest
from lvmae.components.data.reading.temporal import StartMode
from lvmae.registry import register


@register("dataset.manifest")
class ManifestDataset(Dataset):
    """Describes existing shards; ``prepare`` only reads (and checks) the manifest."""

    def __init__(self, path: str):
        self.path = os.path.expandvars(os.path.expanduser(path))

    def prepare(self) -> Manifest:
        return load_manifest(self.path)

    def manifest_paths(self) -> list[str]:
        """The manifest it reads (preflight checks its shards: components/data/formats/shard_index.py)."""
        return [self.path]

    def unsafe_augmentations(self) -> dict[str, str]:
        """The class's declaration plus the manifest's ``unsafe_augmentations`` (reads only the
        manifest file)."""
        return {**super().unsafe_augmentations(), **self.prepare().unsafe_augmentations}

    @property
    def display_name(self) -> str:
        return f"{super().display_name} ({self.path})"

    def oracle_ceiling(self, clip_frames: int, stride: int = 1, start: StartMode = "random",
                       clips: int = 500, split: str | None = None) -> dict[str, float]:
        """Over the first ``clips`` samples of ``split`` (default: ``val`` if present, else the
        first) that carry ``events``: the fraction f of windows that see every event and the
        ceiling f + (1 − f)/C (C = classes of the first head). Samples shorter than the
        window are left out and counted (``too_short``)."""
        manifest = self.prepare()
        split = split or ("val" if "val" in manifest.splits else next(iter(manifest.splits)))
        fractions, too_short, without = [], 0, 0
        for url in expand_urls(manifest.urls(split)):
            for raw in wds.tarfile_samples([{"url": url}]):
                meta = json.loads(raw["json"])
                if "events" not in meta:
                    without += 1
                    continue
                span = (clip_frames - 1) * stride + 1
                if span > int(meta["num_frames"]):
                    too_short += 1
                    continue
                fractions.append(window_fraction([tuple(e) for e in meta["events"]], int(meta["num_frames"]),
                                                 clip_frames, stride, start))
                if len(fractions) >= clips:
                    break
            if len(fractions) >= clips:
                break
        if not fractions:
            raise ValueError(f"{self.path} split {split!r}: no sample carries an oracle field 'events' that a "
                             f"{clip_frames}×{stride} window fits ({without} without events, {too_short} "
                             f"shorter than the window); oracle ceilings need each label's events — write "
                             f"them with an 'events' column (generic CSV, docs/data.md)")
        seen, classes = float(np.mean(fractions)), manifest.num_classes()
        return {"seen_fraction": seen, "ceiling": seen + (1 - seen) / classes, "chance": 1 / classes,
                "clips": len(fractions), "too_short": too_short}

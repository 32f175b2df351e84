"""Adding precomputed token-grid fields (latents, indices, scores) to existing shards.

A tokenizer or scorer runs once per dataset on one fixed *view* of every clip (stored frames
``view.start + k·view.stride``, k < ``view.frames``, at the stored size); its outputs are
written beside the clip into a copy of each shard, and the new manifest declares the view and
the fields, so the reader decodes exactly that view and crops the grids with the pixels
(docs/data.md §1). Shard by shard, through a temporary name: a rerun skips finished shards.

    add_fields("data/epic/manifest.yaml", "data/epic_tok", View(frames=16, stride=2),
               compute=lambda clip: {"latents": ..., "indices": ...})
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np
import webdataset as wds
from tqdm import tqdm
from webdataset.shardlists import expand_urls

from lvmae.components.data.codec import PyAVDecoder
from lvmae.components.data.manifest import PRECOMPUTED_FIELDS, View, load_manifest, save_manifest
from lvmae.components.data.schema import RawSample, npy_bytes, parse_sample

Compute = Callable[[np.ndarray], dict[str, np.ndarray]]   # uint8 (t, h, w, c) → {field: array}


def view_frames(sample: RawSample, view: View, decoder: PyAVDecoder) -> np.ndarray:
    """The view's frames of one sample, uint8 (view.frames, h, w, c)."""
    frame_idx = view.start + np.arange(view.frames) * view.stride
    if frame_idx[-1] >= sample.num_frames:
        raise ValueError(f"sample {sample.key} has {sample.num_frames} frames; the view needs {frame_idx[-1] + 1}")
    return decoder.decode(sample.clip, frame_idx) if sample.codec == "mp4" else sample.clip[frame_idx]


def _with_fields(sample: RawSample, fields: dict[str, np.ndarray]) -> dict:
    out = {"__key__": sample.key, "json": sample.meta}
    out[sample.codec] = sample.clip if sample.codec == "mp4" else npy_bytes(sample.clip)
    for name, value in fields.items():
        out[f"{name}.npy"] = npy_bytes(value)
    return out


def add_fields(manifest_path: str, out_dir: str, view: View, compute: Compute,
               splits: list[str] | None = None, progress: bool = True) -> str:
    """Writes shards with ``compute``'s fields into ``out_dir``; returns the new manifest path."""
    if view.frames < 1 or view.stride < 1 or view.start < 0:
        raise ValueError(f"view needs frames ≥ 1, stride ≥ 1, start ≥ 0, got {view}")
    manifest = load_manifest(manifest_path)
    os.makedirs(out_dir, exist_ok=True)
    decoder, names, grid = PyAVDecoder(), None, None
    for split in splits or list(manifest.splits):
        urls = expand_urls(manifest.urls(split))
        for url in tqdm(urls, desc=f"fields {split}", unit="shard", disable=not progress):
            target = os.path.join(out_dir, os.path.basename(url))
            if os.path.exists(target):
                continue
            with wds.TarWriter(f"{target}.tmp") as sink:
                for raw in wds.tarfile_samples([{"url": url}]):
                    sample = parse_sample(raw)
                    fields = compute(view_frames(sample, view, decoder))
                    unknown = set(fields) - set(PRECOMPUTED_FIELDS)
                    if unknown or not fields:
                        raise ValueError(f"compute returned fields {sorted(fields)}; allowed {PRECOMPUTED_FIELDS}")
                    names = names or sorted(fields)
                    grid = grid or list(fields.get("indices", fields.get("scores", next(iter(fields.values())))).shape[-3:])
                    sink.write(_with_fields(sample, fields))
            os.replace(f"{target}.tmp", target)
        manifest.splits[split].shards = os.path.basename(manifest.splits[split].shards)
    if names is None:   # every shard existed: read the field names back from the first one
        first = expand_urls(os.path.join(out_dir, manifest.splits[next(iter(manifest.splits))].shards))[0]
        sample = parse_sample(next(iter(wds.tarfile_samples([{"url": first}]))))
        names = sorted(sample.fields)
        grid = list(next(iter(sample.fields.values())).shape[-3:])
    manifest.fields = names
    manifest.view = dataclasses.replace(view, grid=grid)
    path = os.path.join(out_dir, "manifest.yaml")
    save_manifest(manifest, path)
    return path

"""Adding precomputed token-grid fields (latents, indices, scores) to existing shards.

A tokenizer or scorer runs once per dataset on one fixed *view* of every clip; its outputs are
written beside the clip into a copy of each shard, and the new manifest declares the fields,
so the reader decodes exactly that view and keeps the grids aligned with the pixels
(docs/data.md §4). Two kinds of view:

- ``pipeline=`` (what ``run.py precompute`` uses): the data pipeline's evaluation view of each
  clip — its centred window under the short-clip policy, short side resized, centred square —
  recorded per sample in its json (``view: {frames, size, resize}``). A clip that gives no view
  (corrupt, or short under ``short_policy='skip'``) is left out, logged and counted.
- ``view=View(frames, stride, start)`` alone: stored frames ``start + k·stride`` at the stored
  size, the same for every clip (older shards); a clip without those frames is left out and
  counted as short.

Shard by shard, through a temporary name: a rerun skips finished shards.

    result = add_fields("data/epic/manifest.yaml", "data/epic_tok", View(frames=16),
                        compute=lambda clip: {"latents": ..., "indices": ...}, pipeline=pipeline)
    result.manifest, result.clips, result.skipped
"""
from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import webdataset as wds
from tqdm import tqdm
from webdataset.shardlists import expand_urls

from lvmae.components.data.decoding.codec import CorruptVideoError, PyAVDecoder
from lvmae.components.data.formats.manifest import PRECOMPUTED_FIELDS, View, load_manifest, save_manifest
from lvmae.components.data.formats.schema import RawSample, SampleError, npy_bytes, parse_sample
from lvmae.components.data.formats.shard_index import record_shards
from lvmae.components.data.reading.temporal import ShortClipError
from lvmae.components.data.writing.writer import shard_sink

if TYPE_CHECKING:
    from lvmae.components.data.reading.pipeline import DataPipeline

Compute = Callable[[np.ndarray], dict[str, np.ndarray]]   # uint8 (t, h, w, c) → {field: array}
log = logging.getLogger(__name__)


@dataclasses.dataclass
class FieldsWritten:
    """What ``add_fields`` did: the new manifest, clips computed in this call, and the clips
    left out by reason (``corrupt``, ``short``)."""
    manifest: str
    clips: int
    skipped: dict[str, int]


def view_frames(sample: RawSample, view: View, decoder: PyAVDecoder) -> np.ndarray:
    """The view's stored frames of one sample, uint8 (view.frames, h, w, c)."""
    frame_idx = view.start + np.arange(view.frames) * view.stride
    if frame_idx[-1] >= sample.num_frames:
        raise ShortClipError(f"sample {sample.key} has {sample.num_frames} frames; the view needs {frame_idx[-1] + 1}")
    return decoder.decode(sample.clip, frame_idx) if sample.codec == "mp4" else sample.clip[frame_idx]


def _with_fields(sample: RawSample, fields: dict[str, np.ndarray], view_json: dict | None) -> dict:
    meta = dict(sample.meta, view=view_json) if view_json is not None else sample.meta
    out = {"__key__": sample.key, "json": meta}
    out[sample.codec] = sample.clip if sample.codec == "mp4" else npy_bytes(sample.clip)
    for name, value in fields.items():
        out[f"{name}.npy"] = npy_bytes(value)
    return out


def _count_samples(path: str) -> int:
    return sum(1 for _ in wds.tarfile_samples([{"url": path}]))


def add_fields(manifest_path: str, out_dir: str, view: View, compute: Compute,
               splits: list[str] | None = None, progress: bool = True,
               pipeline: DataPipeline | None = None) -> FieldsWritten:
    """Writes shards with ``compute``'s fields into ``out_dir`` (see the module docstring)."""
    if view.frames < 1 or view.stride < 1 or view.start < 0:
        raise ValueError(f"view needs frames ≥ 1, stride ≥ 1, start ≥ 0, got {view}")
    manifest = load_manifest(manifest_path)
    os.makedirs(out_dir, exist_ok=True)
    decoder, names, grid, clips = PyAVDecoder(), None, None, 0
    skipped = {"corrupt": 0, "short": 0}

    def skip(reason: str, where: str, error: Exception) -> None:
        skipped[reason] += 1
        log.warning("precompute: left out %s clip (%d so far): %s: %s", reason, skipped[reason], where, error)

    def tar_error(error: Exception) -> bool:      # a truncated or unreadable tar: keep going
        skip("corrupt", "shard stream", error)
        return True

    for split in splits or list(manifest.splits):
        urls = expand_urls(manifest.urls(split))
        written = 0
        for url in tqdm(urls, desc=f"fields {split}", unit="shard", disable=not progress):
            target = os.path.join(out_dir, os.path.basename(url))
            if os.path.exists(target):
                written += _count_samples(target)
                continue
            with shard_sink(target) as sink:
                for raw in wds.tarfile_samples([{"url": url}], handler=tar_error):
                    where = f"shard {url} sample {raw.get('__key__', '?')}"
                    try:
                        sample = parse_sample(raw)
                        if pipeline is not None:
                            described, pixels = pipeline.field_view(sample)
                            view_json = described.as_json()
                        else:
                            pixels, view_json = view_frames(sample, view, decoder), None
                    except ShortClipError as error:
                        skip("short", where, error)
                        continue
                    except (CorruptVideoError, SampleError, ValueError) as error:
                        skip("corrupt", where, error)
                        continue
                    fields = compute(pixels)
                    unknown = set(fields) - set(PRECOMPUTED_FIELDS)
                    if unknown or not fields:
                        raise ValueError(f"compute returned fields {sorted(fields)}; allowed {PRECOMPUTED_FIELDS}")
                    names = names or sorted(fields)
                    grid = grid or list(fields.get("indices", fields.get("scores", next(iter(fields.values())))).shape[-3:])
                    sink.write(_with_fields(sample, fields, view_json))
                    written += 1
                    clips += 1
        manifest.splits[split].shards = os.path.basename(manifest.splits[split].shards)
        manifest.splits[split].samples = written
        if written == 0:
            log.warning("precompute: split %r of %s kept no clip (left out: %s)", split, manifest_path, skipped)
    if names is None:   # nothing computed in this call: read the field names back from a shard
        for split in splits or list(manifest.splits):
            for url in expand_urls(os.path.join(out_dir, manifest.splits[split].shards)):
                first = next(iter(wds.tarfile_samples([{"url": url}])), None)
                if first is not None:
                    sample = parse_sample(first)
                    names, grid = sorted(sample.fields), list(next(iter(sample.fields.values())).shape[-3:])
                    break
            if names is not None:
                break
    if names is None:
        raise ValueError(f"{manifest_path}: no clip of the chosen splits gave a view "
                         f"(left out: {skipped}); see the warnings above for each clip")
    manifest.fields = names
    manifest.view = dataclasses.replace(view, grid=grid)
    # Only the splits written here: a split left out has no shard in out_dir.
    manifest.splits = {name: record for name, record in manifest.splits.items() if name in (splits or manifest.splits)}
    # The shards written here are not the source's: their per-shard counts, sizes and digests
    # are recorded afresh (the source's would make preflight refuse them as changed).
    for split in manifest.splits.values():
        split.shard_samples, split.shard_bytes, split.shard_sha1 = [], [], []
    record_shards(manifest, out_dir)
    path = os.path.join(out_dir, "manifest.yaml")
    save_manifest(manifest, path)
    return FieldsWritten(path, clips, skipped)

"""Writing WebDataset shards — the one module that does (docs/data.md §3).

Three entry points:

- :func:`write_dataset` / :func:`write_split` (``python run.py write_shards``): a folder of
  sources (videos, image-sequence folders, ``.npy`` arrays) plus annotation files → shards and
  a manifest, incrementally.
- :func:`write_shards`: any iterable of ready samples → ``prefix-NNNNNN.tar`` (generated sets).
- :func:`publish_generated`: a generated dataset appears in its fingerprinted folder atomically.

**Content-keyed, incremental.** Every clip gets a fingerprint of everything that decides its
bytes: the source's identity (size, modification time, hash of head and tail), the frame
range, the labels, the oracle events and the writing options. Clip *i* of a split goes to
shard ⌊i / samples_per_shard⌋; a shard is kept as is when its sidecar (``…json``) lists the
same keys with the same fingerprints and the tar still has the size and SHA-1 its sidecar
recorded (a damaged or changed tar is rewritten, and nothing is copied from it), otherwise it is rewritten — each clip whose fingerprint
is found in any old shard is copied byte for byte, the others are decoded and encoded again.
Old shards being replaced wait in ``.replaced/`` until the split is complete (a crash keeps
them reusable); the manifest entry of a split is removed before its shards change and
written back after, so a manifest never describes shards that are not on disk.

**Label safety.** When a class name speaks of left or right (SSv2's "from left to right"),
the manifest declares the horizontal flip unsafe (``unsafe_augmentations``), so the data
pipeline refuses it; a declaration already in the manifest is kept.

**Checked before encoding.** Every split's annotations are read and given one vocabulary;
every source is resolved and opened cheaply (declared frame count, rate); annotated ranges are
compared with the declared length. Under ``on_error='fail'`` every problem found is reported at
once and nothing is written; under ``skip`` the clip is skipped with a reason. While encoding,
the decoded frames are compared with the declared and annotated range: a shortfall beyond
``frame_tolerance`` (a fraction of the frames asked for) is a skip (``truncated`` or
``range_past_end``) or an error; within it, the json records the range actually stored.

The pieces: writing/clips.py (one clip), writing/shard_files.py (one shard on disk),
writing/generated.py (ready samples); their public names are importable from here.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import multiprocessing
import os
import re
from collections.abc import Iterable

import numpy as np
from tqdm import tqdm

from lvmae.components.data.formats.manifest import (
    FrameStats,
    Manifest,
    Split,
    WriteSummary,
    WrittenFrom,
    load_manifest,
    save_manifest,
)
from lvmae.components.data.writing.annotations import AnnotationFormat, ClipSpec
from lvmae.components.data.writing.clips import (
    WRITER_VERSION,
    OnError,
    WriteError,
    WriteOptions,
    _look_at_sources,
    _Source,
    encode_clip,
    sample_fingerprint,
)
from lvmae.components.data.writing.generated import (
    MANIFEST_NAME,
    generated_folder,
    publish_generated,
    write_shards,
)
from lvmae.components.data.writing.labels import read_dataset
from lvmae.components.data.writing.shard_files import (
    REPLACED,
    _intact,
    _move_aside,
    _sidecars,
    _write_shard,
    shard_sink,
)

__all__ = ["MANIFEST_NAME", "WRITER_VERSION", "OnError", "WriteError", "WriteOptions", "current_fingerprints",
           "encode_clip", "generated_folder", "mirrored_classes", "publish_generated", "sample_fingerprint",
           "shard_sink", "split_fingerprint", "summary_lines", "write_dataset", "write_shards", "write_split"]

# Class names with these words change meaning under a horizontal flip (SSv2's "Pushing something
# from left to right"): the manifest then declares the flip unsafe (label_safety.py).
# The options of a write that names none (WriteOptions is frozen: one shared instance).
DEFAULT_OPTIONS = WriteOptions()
MIRRORED_WORDS = re.compile(r"\b(left|right)\b", re.IGNORECASE)
log = logging.getLogger(__name__)


def _existing_manifest(out_dir: str) -> Manifest | None:
    path = os.path.join(out_dir, MANIFEST_NAME)
    return load_manifest(path) if os.path.exists(path) else None


def write_dataset(video_root: str, annotations: dict[str, str], annotation_format: AnnotationFormat,
                  out_dir: str, name: str | None = None, labels_path: str | None = None,
                  options: WriteOptions = DEFAULT_OPTIONS, samples_per_shard: int = 64,
                  on_error: OnError = "skip", progress: bool = True, workers: int = 1) -> Manifest:
    """Writes (or brings up to date) every split of ``annotations`` ({split: file}) with one
    vocabulary; returns the manifest. ``workers`` > 1 writes that many shards at once."""
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be ≥ 1, got {samples_per_shard}")
    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    if not annotations:
        raise ValueError("annotations: give at least one split's annotation file")
    if not os.path.isdir(video_root):
        raise FileNotFoundError(f"video folder not found: {video_root}")
    existing = _existing_manifest(out_dir)
    others = {s: v for s, v in (existing.splits.items() if existing else []) if s not in annotations}
    clips, heads, vocabulary_source = read_dataset(annotations, annotation_format, labels_path,
                                                   existing.heads if existing and others else None)
    if others and existing.heads != heads:
        raise WriteError(f"{os.path.join(out_dir, MANIFEST_NAME)}: splits {list(others)} were written with "
                         f"another vocabulary than this one (from {vocabulary_source}); write every split in "
                         f"one run (annotations={{'train': …, 'val': …}}) or into another folder")
    if others and (existing.codec, existing.short_side) != (options.codec, options.short_side or 0):
        raise WriteError(f"{out_dir}: splits {list(others)} are stored as codec={existing.codec!r} "
                         f"short_side={existing.short_side or None}, not codec={options.codec!r} "
                         f"short_side={options.short_side}; one folder holds one storage format")
    sources = _look_at_sources(clips, video_root, options)
    if on_error == "fail":
        problems = [f"{spec.where}: clip {spec.key} ({spec.video}): {sources[spec.key].message}"
                    for split_clips in clips.values() for spec in split_clips if sources[spec.key].reason]
        if problems:
            shown = problems[:20] + ([f"… and {len(problems) - 20} more"] if len(problems) > 20 else [])
            raise WriteError(f"{len(problems)} clip(s) cannot be written (on_error='fail'; nothing was "
                             f"written):\n  " + "\n  ".join(shown))
    created = not os.path.isdir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    manifest = existing or Manifest(name=name or os.path.basename(os.path.normpath(out_dir)))
    manifest.heads = heads
    # What the manifest already declares (a user's edit) wins over what the names suggest.
    manifest.unsafe_augmentations = {**mirrored_classes(heads), **manifest.unsafe_augmentations}
    summaries = {}
    for split, split_clips in clips.items():
        fingerprints = {spec.key: sample_fingerprint(spec, sources[spec.key], options) for spec in split_clips}
        sidecars = _write_split_shards(out_dir, split, split_clips, sources, fingerprints, options,
                                       samples_per_shard, on_error, progress, workers, manifest)
        entries = [e for s in sidecars for e in s["entries"]]
        summaries[split] = _summary(entries)
        manifest.splits[split] = _split_entry(split, sidecars, summaries[split])
        manifest.splits[split].written_from = WrittenFrom(
            os.path.abspath(video_root), os.path.abspath(annotations[split]), annotation_format,
            os.path.abspath(labels_path) if labels_path else "", json.dumps(dataclasses.asdict(options)))
    if not sum(s.written for s in summaries.values()):
        skipped = {r: sum(s.skipped.get(r, 0) for s in summaries.values()) for s in summaries.values() for r in s.skipped}
        for split in clips:       # shards of skips only: nothing is left behind
            for path in glob.glob(os.path.join(glob.escape(out_dir), f"{glob.escape(split)}-[0-9][0-9][0-9][0-9][0-9][0-9].*")):
                if path.endswith((".tar", ".json")):
                    os.remove(path)
            manifest.splits.pop(split, None)
        if created and not os.listdir(out_dir):
            os.rmdir(out_dir)
        raise WriteError(f"no clip was written to {out_dir}: every clip was skipped ({skipped}), and nothing was "
                         f"left behind; the warnings above name each clip and why")
    _finish_manifest(manifest, options, out_dir)
    save_manifest(manifest, os.path.join(out_dir, MANIFEST_NAME))
    return load_manifest(os.path.join(out_dir, MANIFEST_NAME))


def _write_split_shards(out_dir: str, split: str, specs: list[ClipSpec], sources: dict[str, _Source],
                        fingerprints: dict[str, str], options: WriteOptions, samples_per_shard: int,
                        on_error: OnError, progress: bool, workers: int, manifest: Manifest) -> list[dict]:
    for leftover in glob.glob(os.path.join(glob.escape(out_dir), f"{glob.escape(split)}-[0-9]*.tmp")):
        os.remove(leftover)                        # a run that died mid-shard
    groups = [specs[i:i + samples_per_shard] for i in range(0, len(specs), samples_per_shard)]
    paths = [os.path.join(out_dir, f"{split}-{n:06d}.tar") for n in range(len(groups))]
    current = _sidecars(out_dir, split)
    aside = os.path.join(out_dir, REPLACED)
    previous = _sidecars(aside, split) if os.path.isdir(aside) else {}
    damaged = {tar for tars in (current, previous) for tar, sidecar in tars.items() if not _intact(tar, sidecar)}
    for tar in sorted(damaged):
        log.warning("%s: not the bytes its sidecar recorded (damaged, changed or written before digests were "
                    "recorded): rewritten, nothing copied from it", tar)
    current = {tar: sidecar for tar, sidecar in current.items() if tar not in damaged}
    previous = {tar: sidecar for tar, sidecar in previous.items() if tar not in damaged}
    kept, pending = {}, []
    for number, (path, group) in enumerate(zip(paths, groups)):
        planned = [(s.key, fingerprints[s.key]) for s in group]
        sidecar = current.get(path)
        if sidecar is not None and [(e["key"], e["fingerprint"]) for e in sidecar["entries"]] == planned:
            kept[number] = sidecar
        else:
            pending.append(number)
    on_disk = glob.glob(os.path.join(glob.escape(out_dir), f"{glob.escape(split)}-[0-9][0-9][0-9][0-9][0-9][0-9].tar"))
    stale = sorted(p for p in on_disk if p not in paths)
    if pending or stale or split not in manifest.splits:
        if split in manifest.splits:      # the manifest must not describe shards about to change
            del manifest.splits[split]
            save_manifest(manifest, os.path.join(out_dir, MANIFEST_NAME))
        reusable = {e["fingerprint"]: (tar, e) for tars in (previous, current)
                    for tar, sidecar in tars.items() for e in sidecar["entries"]}
        for path in [paths[n] for n in pending] + stale:
            if os.path.exists(path):
                moved = _move_aside(out_dir, path)
                reusable.update({e["fingerprint"]: (moved, e) for e in current.get(path, {"entries": []})["entries"]})
        for path in [paths[n] for n in pending]:   # a sidecar without its tar, from an old crash
            if os.path.exists(f"{path[:-4]}.json"):
                os.remove(f"{path[:-4]}.json")
        done = dict(kept)
        with tqdm(total=len(specs), desc=f"write {split}", unit="clip", disable=not progress) as bar:
            bar.update(sum(len(groups[n]) for n in kept))
            args = {n: (paths[n], groups[n], {s.key: sources[s.key] for s in groups[n]},
                        {s.key: fingerprints[s.key] for s in groups[n]},
                        {fingerprints[s.key]: reusable[fingerprints[s.key]] for s in groups[n]
                         if fingerprints[s.key] in reusable}, options, on_error) for n in pending}
            if workers == 1 or len(pending) < 2:
                for number in pending:
                    done[number] = _write_shard(*args[number], progress=bar)
            else:
                try:
                    # spawn, not fork: the parent may hold threads (torch, FFmpeg) that fork would break.
                    with multiprocessing.get_context("spawn").Pool(workers) as pool:
                        jobs = {n: pool.apply_async(_write_shard, args[n]) for n in pending}
                        for number in pending:
                            done[number] = jobs[number].get()
                            bar.update(len(groups[number]))
                finally:   # a failure terminates the pool: its workers' half-written shards go
                    for partial in glob.glob(os.path.join(glob.escape(out_dir), f"{glob.escape(split)}-[0-9]*.tmp")):
                        os.remove(partial)
        leftover = re.compile(re.escape(split) + r"-\d{6}-r\d+\.(tar|json)")
        for path in glob.glob(os.path.join(glob.escape(aside), f"{glob.escape(split)}-*")):
            if leftover.fullmatch(os.path.basename(path)):
                os.remove(path)
        if os.path.isdir(aside) and not os.listdir(aside):
            os.rmdir(aside)
        reused = sum(1 for n in pending for e in done[n]["entries"] if e.get("reused"))
        log.info("%s: %d shard(s) unchanged, %d rewritten (%d clip(s) copied from old shards)",
                 split, len(kept), len(pending), reused)
        kept = done
    return [kept[n] for n in range(len(groups))]


def _summary(entries: list[dict]) -> WriteSummary:
    written = [e for e in entries if e["status"] == "written"]
    skipped: dict[str, int] = {}
    for entry in entries:
        if entry["status"] == "skipped":
            skipped[entry["reason"]] = skipped.get(entry["reason"], 0) + 1
    frames = sum(e["frames"] for e in written)
    seconds = sum(e["frames"] / e["fps"] for e in written)
    return WriteSummary(written=len(written), skipped=skipped, frames=frames, hours=seconds / 3600)


def split_fingerprint(fingerprints: Iterable[str]) -> str:
    """One hash over a split's written samples' fingerprints, in shard order."""
    return hashlib.sha1(",".join(fingerprints).encode()).hexdigest()[:20]


def _split_entry(split: str, sidecars: list[dict], summary: WriteSummary) -> Split:
    written = [e for s in sidecars for e in s["entries"] if e["status"] == "written"]
    frames = [e["frames"] for e in written]
    return Split(shards=f"{split}-{{000000..{len(sidecars) - 1:06d}}}.tar", samples=len(written),
                 frames=FrameStats(min(frames, default=0), float(np.mean(frames)) if frames else 0.0,
                                   max(frames, default=0)),
                 fingerprint=split_fingerprint(e["fingerprint"] for e in written), summary=summary,
                 shard_samples=[sum(e["status"] == "written" for e in s["entries"]) for s in sidecars],
                 shard_bytes=[int(s["bytes"]) for s in sidecars], shard_sha1=[s["sha1"] for s in sidecars])


def mirrored_classes(heads: dict[str, list[str]]) -> dict[str, str]:
    """``{"flip": why}`` when some class name speaks of left or right, else {}."""
    named = [f"{head} {name!r}" for head, names in heads.items() for name in names if MIRRORED_WORDS.search(name)]
    if not named:
        return {}
    log.info("%d class name(s) speak of left or right (%s): the manifest declares the flip unsafe",
             len(named), named[0])
    return {"flip": f"{len(named)} class name(s) speak of left or right (e.g. {named[0]}): a horizontal "
                    f"flip turns one into another"}


def _finish_manifest(manifest: Manifest, options: WriteOptions, out_dir: str) -> None:
    fps_values = sorted({round(float(e["fps"]), 6) for split in manifest.splits
                         for sidecar in _sidecars(out_dir, split).values()
                         for e in sidecar["entries"] if e["status"] == "written"})
    manifest.fps = fps_values[0] if len(fps_values) == 1 else 0.0   # 0 = mixed rates (see samples)
    manifest.codec, manifest.short_side = options.codec, options.short_side or 0
    lengths = {n for s in manifest.splits.values() if s.samples for n in (s.frames.min, s.frames.max)}
    manifest.clip_frames = lengths.pop() if len(lengths) == 1 else 0


def current_fingerprints(manifest: Manifest, split: str) -> dict[str, str]:
    """Every clip's fingerprint as its inputs (recorded in ``written_from``) would give it now:
    key → fingerprint. Raises ValueError when the split records no inputs."""
    origin = manifest.splits[split].written_from
    if not origin.annotations:
        raise ValueError(f"manifest {manifest.name!r} split {split!r} records no write_shards inputs")
    options = WriteOptions(**json.loads(origin.options))
    clips, _, _ = read_dataset({split: origin.annotations}, origin.annotation_format, origin.labels_path or None,
                               manifest.heads)
    sources = _look_at_sources(clips, origin.video_root, options)
    return {spec.key: sample_fingerprint(spec, sources[spec.key], options) for spec in clips[split]}


def write_split(video_root: str, annotations: str, annotation_format: AnnotationFormat, out_dir: str,
                split: str = "train", name: str | None = None, labels_path: str | None = None,
                options: WriteOptions = DEFAULT_OPTIONS, samples_per_shard: int = 64,
                on_error: OnError = "skip", progress: bool = True, workers: int = 1) -> Manifest:
    """One split (``annotations`` = its file); other splits already in ``out_dir`` must share
    its vocabulary. See :func:`write_dataset`."""
    return write_dataset(video_root, {split: annotations}, annotation_format, out_dir, name, labels_path,
                         options, samples_per_shard, on_error, progress, workers)


def summary_lines(manifest: Manifest, splits: Iterable[str] | None = None) -> list[str]:
    """The end-of-write summary, one line per split."""
    lines = []
    for split in splits or manifest.splits:
        s = manifest.splits[split].summary
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(s.skipped.items())) or "none"
        lines.append(f"{split}: {s.written} written, skipped: {skipped}; {s.frames} frames, "
                     f"{s.hours:.3f} h of video")
    return lines

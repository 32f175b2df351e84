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
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import tarfile
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import numpy as np
import webdataset as wds
from tqdm import tqdm

from lvmae.components.data.annotations import AnnotationFormat, ClipSpec, read_dataset
from lvmae.components.data.codec import PIXEL_FORMATS, PixelFormat, encode_mp4
from lvmae.components.data.manifest import (
    FrameStats,
    Manifest,
    Split,
    WriteSummary,
    WrittenFrom,
    load_manifest,
    save_manifest,
)
from lvmae.components.data.schema import make_sample
from lvmae.components.data.shard_index import file_sha1, record_shards
from lvmae.components.data.sources import (
    SourceError,
    SourceInfo,
    probe,
    read_frames,
    resolve_source,
    source_identity,
)

MANIFEST_NAME = "manifest.yaml"
REPLACED = ".replaced"            # old shards wait here while their split is rewritten
# Bump when the same inputs would give other bytes (a change of encoder or schema): every
# fingerprint changes, so a rerun rewrites everything instead of mixing two writers' output.
WRITER_VERSION = 2
# Class names with these words change meaning under a horizontal flip (SSv2's "Pushing something
# from left to right"): the manifest then declares the flip unsafe (label_safety.py).
MIRRORED_WORDS = re.compile(r"\b(left|right)\b", re.IGNORECASE)
OnError = Literal["skip", "fail"]
# Members' modification time: fixed, so the same samples give the same bytes (and SHA-1) whenever
# and wherever they are written.
SHARD_MTIME = 0.0
log = logging.getLogger(__name__)


class WriteError(RuntimeError):
    """Writing stopped (``on_error='fail'``, or nothing could be written); the message says why."""


@dataclasses.dataclass(frozen=True)
class WriteOptions:
    """How clips are stored; part of every clip's fingerprint."""

    codec: Literal["mp4", "npy"] = "mp4"
    short_side: int | None = None      # resize so the short side has this many pixels
    fps: float | None = None           # resample to this frame rate (None = the source's)
    gop: int = 32                      # key-frame interval: bounds the cost of a random start
    crf: int = 16                      # H.264 quality (≥ 35 dB PSNR on real footage at 16)
    pix_fmt: PixelFormat = "yuv420p"   # yuv444p keeps thin coloured details
    max_frames: int | None = None      # keep at most this many frames per clip
    sequence_fps: float | None = None  # frame rate of image-sequence folders and .npy arrays
    frame_tolerance: float = 0.05      # fraction of a clip's frames that may be missing

    def __post_init__(self):
        if self.codec not in ("mp4", "npy"):
            raise ValueError(f"codec must be 'mp4' or 'npy', got {self.codec!r}")
        if self.pix_fmt not in PIXEL_FORMATS:
            raise ValueError(f"pix_fmt must be one of {PIXEL_FORMATS}, got {self.pix_fmt!r}")
        for name in ("short_side", "max_frames"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ValueError(f"{name} must be ≥ 2 or None, got {value}")
        for name in ("fps", "sequence_fps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 or None, got {value}")
        if self.gop < 1 or not 0 <= self.crf <= 51:
            raise ValueError(f"gop must be ≥ 1 and crf in [0, 51], got gop={self.gop} crf={self.crf}")
        if not 0 <= self.frame_tolerance < 1:
            raise ValueError(f"frame_tolerance must be in [0, 1), got {self.frame_tolerance}")


@dataclasses.dataclass(frozen=True)
class _Source:
    """A clip's source after the cheap look: where, what, or why it is skipped."""
    path: str = ""
    info: SourceInfo | None = None
    identity: str = "missing"
    reason: str = ""              # skip reason when the source cannot be used
    message: str = ""


class _Skip(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def sample_fingerprint(spec: ClipSpec, source: _Source, options: WriteOptions) -> str:
    """Hash of everything that decides a clip's stored bytes (or its skip)."""
    text = json.dumps({"writer": WRITER_VERSION, "key": spec.key, "source": spec.video,
                       "identity": source.identity, "range": [spec.start_frame, spec.stop_frame],
                       "labels": spec.labels, "events": spec.events, "options": dataclasses.asdict(options)},
                      sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:20]


# --- one clip ------------------------------------------------------------------------------

def _range_problem(spec: ClipSpec, info: SourceInfo, tolerance: float) -> str:
    """Why the annotated range does not fit the declared length ('' when it does)."""
    declared = info.frames
    if not declared:
        return ""
    if spec.start_frame >= declared:
        return f"annotated range starts at frame {spec.start_frame}; the source has {declared} frames"
    if spec.stop_frame is not None:
        missing = spec.stop_frame - declared
        if missing > tolerance * (spec.stop_frame - spec.start_frame):
            return (f"annotated range [{spec.start_frame}, {spec.stop_frame}) ends {missing} frames past "
                    f"the source's {declared} (frame_tolerance {tolerance})")
    return ""


def encode_clip(spec: ClipSpec, source: _Source, options: WriteOptions, fingerprint: str = "") -> dict:
    """Decodes a clip's frames, checks them against the declared and annotated range, and
    returns its shard sample; raises _Skip with a reason."""
    info = source.info
    problem = _range_problem(spec, info, options.frame_tolerance)
    if problem:
        raise _Skip("range_past_end", problem)
    start = spec.start_frame
    read_stop = spec.stop_frame                          # None = to the end
    if options.max_frames:   # stop decoding once the kept frames are enough (long sources)
        needed = math.ceil(options.max_frames * info.fps / options.fps) if options.fps else options.max_frames
        read_stop = start + needed if read_stop is None else min(read_stop, start + needed)
    try:
        frames, _ = read_frames(source.path, info, start, read_stop, options.short_side)
    except SourceError as error:
        raise _Skip(error.reason, str(error)) from error
    got = len(frames)
    # What should have decoded: the range asked for, within what the container declares.
    ends = [stop for stop in (read_stop, info.frames or None) if stop is not None]
    if ends:
        asked = min(ends) - start
        if asked - got > options.frame_tolerance * asked:
            raise _Skip("truncated", f"decoded {got} of the {asked} frames [{start}, {start + asked}) the "
                                     f"container declares ({info.frames} in all): the file is cut short or "
                                     f"damaged (frame_tolerance {options.frame_tolerance})")
    fps, kept = info.fps, np.arange(got)                 # kept: decoded frames stored, in order
    if options.fps and abs(options.fps - info.fps) > 1e-6:
        count = max(int(got * options.fps / info.fps), 1)
        kept, fps = np.floor(np.arange(count) * info.fps / options.fps).astype(int), options.fps
    if options.max_frames:
        kept = kept[: options.max_frames]
    frames = frames[kept]
    stored_range = (start, start + int(kept[-1]) + 1)    # the source frames the stored clip covers
    if options.codec == "mp4" and options.pix_fmt == "yuv420p" and (frames.shape[1] % 2 or frames.shape[2] % 2):
        frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]  # yuv420p needs even sides
    clip = encode_mp4(frames, fps, options.gop, options.crf, options.pix_fmt) if options.codec == "mp4" else frames
    sample = make_sample(spec.key, clip, spec.labels, fps, len(frames), frames.shape[1:3],
                         source=spec.video, frames=stored_range)
    sample["json"]["fingerprint"] = fingerprint
    if spec.events is not None:
        sample["json"]["events"] = _stored_events(spec, stored_range, info.fps, fps, len(frames))
    return sample


def _stored_events(spec: ClipSpec, stored: tuple[int, int], source_fps: float, fps: float,
                   count: int) -> list[list[int]]:
    """Oracle events in stored-frame numbers; an event outside the stored frames is a skip."""
    scale = fps / source_fps
    events = []
    for start, stop in spec.events:
        first, last = math.floor((start - stored[0]) * scale), math.ceil((stop - stored[0]) * scale)
        if first < 0 or last > count:
            raise _Skip("events_outside_range", f"event [{start}, {stop}) lies outside the stored frames "
                                                f"[{stored[0]}, {stored[1]})")
        events.append([first, max(last, first + 1)])
    return events


# --- one shard -----------------------------------------------------------------------------

@contextlib.contextmanager
def shard_sink(path: str) -> Iterator[wds.TarWriter]:
    """A ``wds.TarWriter`` on ``path.tmp``, renamed to ``path`` when the block completes; on
    any error the partial file is removed. Every shard this package writes goes through it."""
    tmp = f"{path}.tmp"
    try:
        with wds.TarWriter(tmp, mtime=SHARD_MTIME) as sink:
            yield sink
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _json_bytes(sample: dict) -> dict:
    return {k: (json.dumps(v).encode() if k == "json" else v) for k, v in sample.items()}


def _old_samples(tar_path: str, keys: set[str]) -> dict[str, dict]:
    """Members of ``keys`` in an old shard, as samples ready to write again (bytes untouched)."""
    found: dict[str, dict] = {}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            key, _, extension = member.name.partition(".")
            if key in keys and member.isfile():
                found.setdefault(key, {"__key__": key})[extension] = tar.extractfile(member).read()
    return found


def _write_shard(path: str, specs: list[ClipSpec], sources: dict[str, _Source], fingerprints: dict[str, str],
                 reusable: dict[str, tuple[str, dict]], options: WriteOptions, on_error: OnError,
                 progress: tqdm | None = None) -> dict:
    """Writes one shard (tar + sidecar, through temporary names); returns the sidecar."""
    sidecar = {"writer": WRITER_VERSION, "entries": []}
    tmp_json = f"{path[:-4]}.json.tmp"
    copies: dict[str, list[str]] = {}
    for spec in specs:
        old = reusable.get(fingerprints[spec.key])
        if old is not None and old[1]["status"] == "written":
            copies.setdefault(old[0], []).append(old[1]["key"])
    copied = {}
    for tar_path, keys in copies.items():
        for sample in _old_samples(tar_path, set(keys)).values():
            try:
                stored = json.loads(sample.get("json", b"{}")).get("fingerprint")
            except ValueError:
                continue
            copied[stored] = sample          # by fingerprint: bytes that are not what we want are never copied
    try:
        with shard_sink(path) as sink:
            for spec in specs:
                fingerprint = fingerprints[spec.key]
                entry = {"key": spec.key, "fingerprint": fingerprint}
                old = reusable.get(fingerprint)
                try:
                    if old is not None and old[1]["status"] == "written" and fingerprint in copied:
                        sample = copied[fingerprint]
                        entry.update({k: old[1][k] for k in ("frames", "fps", "range")}, reused=True)
                    elif old is not None and old[1]["status"] == "skipped":
                        raise _Skip(old[1]["reason"], old[1]["message"])
                    else:
                        source = sources[spec.key]
                        if source.reason:
                            raise _Skip(source.reason, source.message)
                        sample = encode_clip(spec, source, options, fingerprint)
                        meta = sample["json"]
                        entry.update(frames=meta["num_frames"], fps=meta["fps"], range=meta["frames"])
                        sample = _json_bytes(sample)
                except _Skip as skip:
                    if on_error == "fail":
                        raise WriteError(f"{spec.where}: clip {spec.key} ({spec.video}): {skip.message}") from None
                    log.warning("skipping clip %s (%s): %s", spec.key, spec.video, skip.message)
                    entry.update(status="skipped", reason=skip.reason, message=skip.message)
                else:
                    sink.write(sample)
                    entry["status"] = "written"
                sidecar["entries"].append(entry)
                if progress is not None:
                    progress.update()
        # The sidecar comes last and records the tar's bytes: a tar without one is never reused.
        sidecar["bytes"], sidecar["sha1"] = os.path.getsize(path), file_sha1(path)
        with open(tmp_json, "w", encoding="utf-8") as handle:
            json.dump(sidecar, handle)
        os.replace(tmp_json, f"{path[:-4]}.json")
    finally:
        if os.path.exists(tmp_json):
            os.remove(tmp_json)
    return sidecar


# --- a dataset -----------------------------------------------------------------------------

def _look_at_sources(clips: dict[str, list[ClipSpec]], video_root: str,
                     options: WriteOptions) -> dict[str, _Source]:
    """Resolves and opens every source once (cheap: header only), then checks each clip's
    range against the declared length. Returns the _Source of each clip key."""
    by_name: dict[str, _Source] = {}
    out = {}
    for split_clips in clips.values():
        for spec in split_clips:
            if spec.video not in by_name:
                try:
                    path = resolve_source(video_root, spec.video)
                    by_name[spec.video] = _Source(path, probe(path, options.sequence_fps), source_identity(path))
                except SourceError as error:
                    by_name[spec.video] = _Source(reason=error.reason, message=str(error))
            source = by_name[spec.video]
            if not source.reason:
                problem = _range_problem(spec, source.info, options.frame_tolerance)
                if problem:
                    source = dataclasses.replace(source, reason="range_past_end", message=problem)
            out[spec.key] = source
    return out


def _sidecars(folder: str, split: str) -> dict[str, dict]:
    """tar path → sidecar of every complete shard of ``split`` in ``folder``."""
    found = {}
    name = re.compile(re.escape(split) + r"-\d{6}(-r\d+)?\.json")
    for sidecar_path in glob.glob(os.path.join(glob.escape(folder), f"{glob.escape(split)}-*.json")):
        tar_path = sidecar_path[:-5] + ".tar"
        if not name.fullmatch(os.path.basename(sidecar_path)) or not os.path.exists(tar_path):
            continue
        try:
            with open(sidecar_path, encoding="utf-8") as handle:
                sidecar = json.load(handle)
        except (OSError, ValueError):
            continue
        if sidecar.get("writer") == WRITER_VERSION:
            found[tar_path] = sidecar
    return found


def _intact(tar_path: str, sidecar: dict) -> bool:
    """The tar has the size and SHA-1 its sidecar recorded (sidecars without them: unverified)."""
    if "sha1" not in sidecar or not os.path.exists(tar_path) or os.path.getsize(tar_path) != sidecar.get("bytes"):
        return False
    return file_sha1(tar_path) == sidecar["sha1"]


def _move_aside(out_dir: str, path: str) -> str:
    """Moves a shard (tar + sidecar) into ``.replaced/`` under a name no earlier run used
    there; returns the new tar path."""
    aside = os.path.join(out_dir, REPLACED)
    os.makedirs(aside, exist_ok=True)
    stem = os.path.basename(path)[:-4]
    number = 0
    while glob.glob(os.path.join(glob.escape(aside), f"{stem}-r{number}.*")):
        number += 1
    target = os.path.join(aside, f"{stem}-r{number}.tar")
    if os.path.exists(f"{path[:-4]}.json"):
        os.replace(f"{path[:-4]}.json", f"{target[:-4]}.json")
    if os.path.exists(path):
        os.replace(path, target)
    return target


def _existing_manifest(out_dir: str) -> Manifest | None:
    path = os.path.join(out_dir, MANIFEST_NAME)
    return load_manifest(path) if os.path.exists(path) else None


def write_dataset(video_root: str, annotations: dict[str, str], annotation_format: AnnotationFormat,
                  out_dir: str, name: str | None = None, labels_path: str | None = None,
                  options: WriteOptions = WriteOptions(), samples_per_shard: int = 64,
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
                options: WriteOptions = WriteOptions(), samples_per_shard: int = 64,
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


# --- ready samples (generated sets) --------------------------------------------------------

def write_shards(samples: Iterable[dict], folder: str, prefix: str, samples_per_shard: int) -> int:
    """Writes ``prefix-000000.tar`` … into ``folder`` (each through a temporary name); returns
    the number of shards."""
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be ≥ 1, got {samples_per_shard}")
    os.makedirs(folder, exist_ok=True)
    shards, iterator = 0, iter(samples)
    while True:
        batch = list(itertools.islice(iterator, samples_per_shard))
        if not batch:
            return shards
        with shard_sink(os.path.join(folder, f"{prefix}-{shards:06d}.tar")) as sink:
            for sample in batch:
                sink.write(sample)
        shards += 1


def generated_folder(root: str, name: str, params: dict) -> str:
    """``root/<name>-<fingerprint>``, the fingerprint hashing every generation parameter, so
    changing one never overwrites shards already written."""
    fingerprint = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    return os.path.join(root, f"{name}-{fingerprint}")


def publish_generated(folder: str, write: Callable[[str], Manifest]) -> Manifest:
    """Returns the manifest in ``folder``; if there is none yet, ``write(staging)`` writes the
    shards into a staging folder and returns their manifest, and the folder is renamed into
    place: readers never see half a dataset."""
    manifest_path = os.path.join(folder, MANIFEST_NAME)
    if os.path.exists(manifest_path):
        return load_manifest(manifest_path)
    staging = f"{folder}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    save_manifest(record_shards(write(staging), staging), os.path.join(staging, MANIFEST_NAME))
    try:
        os.rename(staging, folder)
    except OSError:                      # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return load_manifest(manifest_path)

"""Building shards from a folder of videos and an annotation file (``python run.py write_shards``).

Clips are assigned to shards by position (shard i holds clips [i·n, (i+1)·n) of the
annotation file), so a run that stops half-way resumes: a shard is complete when both
``<split>-NNNNNN.tar`` and its sidecar ``<split>-NNNNNN.json`` exist (each written to a
temporary name, then renamed; the tar last) and is skipped. A sidecar records the writing
options; resuming with other options is an error naming the shard, never a silent mix.
The manifest (``manifest.yaml``) is rewritten from the sidecars after every run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
from typing import Literal

import numpy as np
import webdataset as wds
from tqdm import tqdm

from lvmae.components.data.annotations import AnnotationFormat, ClipSpec, read_annotations, resolve_video
from lvmae.components.data.codec import PIXEL_FORMATS, CorruptVideoError, PixelFormat, encode_mp4, read_video_file
from lvmae.components.data.manifest import FrameStats, Manifest, Split, load_manifest, save_manifest
from lvmae.components.data.schema import make_sample

MANIFEST_NAME = "manifest.yaml"
OnError = Literal["skip", "fail"]
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WriteOptions:
    """How clips are stored; part of every shard's sidecar."""

    codec: Literal["mp4", "npy"] = "mp4"
    short_side: int | None = None      # resize so the short side has this many pixels
    fps: float | None = None           # resample to this frame rate (None = the source's)
    gop: int = 32                      # key-frame interval: bounds the cost of a random start
    crf: int = 16                      # H.264 quality (≥ 35 dB PSNR on real footage at 16)
    pix_fmt: PixelFormat = "yuv420p"   # yuv444p keeps thin coloured details
    max_frames: int | None = None      # keep at most this many frames per clip

    def __post_init__(self):
        if self.codec not in ("mp4", "npy"):
            raise ValueError(f"codec must be 'mp4' or 'npy', got {self.codec!r}")
        if self.pix_fmt not in PIXEL_FORMATS:
            raise ValueError(f"pix_fmt must be one of {PIXEL_FORMATS}, got {self.pix_fmt!r}")
        for name in ("short_side", "max_frames"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ValueError(f"{name} must be ≥ 2 or None, got {value}")
        if self.gop < 1 or not 0 <= self.crf <= 51:
            raise ValueError(f"gop must be ≥ 1 and crf in [0, 51], got gop={self.gop} crf={self.crf}")


def _fingerprint(options: WriteOptions, clips: list[ClipSpec]) -> str:
    text = json.dumps([dataclasses.asdict(options), [c.key for c in clips]], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def encode_clip(spec: ClipSpec, video_root: str, options: WriteOptions) -> dict:
    """Reads the clip's frames from its source video and returns a shard sample."""
    path = resolve_video(video_root, spec.video)
    frames, fps = read_video_file(path, options.short_side, options.fps, spec.start_frame,
                                  spec.stop_frame, options.max_frames)
    if options.codec == "mp4" and options.pix_fmt == "yuv420p" and (frames.shape[1] % 2 or frames.shape[2] % 2):
        frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]  # yuv420p needs even sides
    clip = encode_mp4(frames, fps, options.gop, options.crf, options.pix_fmt) if options.codec == "mp4" else frames
    return make_sample(spec.key, clip, spec.labels, fps, len(frames), frames.shape[1:3],
                       source=spec.video, frames=(spec.start_frame, spec.stop_frame))


def _write_shard(path: str, specs: list[ClipSpec], video_root: str, options: WriteOptions,
                 on_error: OnError, fingerprint: str, progress: tqdm | None = None) -> dict:
    sidecar = {"fingerprint": fingerprint, "options": dataclasses.asdict(options),
               "samples": 0, "frames": [], "fps": [], "failed": {}}
    tmp_tar, tmp_json = f"{path}.tmp", f"{path[:-4]}.json.tmp"
    with wds.TarWriter(tmp_tar) as sink:
        for spec in specs:
            try:
                sample = encode_clip(spec, video_root, options)
            except (FileNotFoundError, CorruptVideoError) as error:
                if on_error == "fail":
                    raise RuntimeError(f"clip {spec.key} ({spec.video}): {error}") from error
                log.warning("skipping clip %s (%s): %s", spec.key, spec.video, error)
                sidecar["failed"][spec.key] = str(error)
            else:
                sink.write(sample)
                sidecar["samples"] += 1
                sidecar["frames"].append(sample["json"]["num_frames"])
                sidecar["fps"].append(sample["json"]["fps"])
            if progress is not None:
                progress.update()
    with open(tmp_json, "w", encoding="utf-8") as handle:
        json.dump(sidecar, handle)
    os.replace(tmp_json, f"{path[:-4]}.json")
    os.replace(tmp_tar, path)      # last: a .tar present means its shard is complete
    return sidecar


def write_split(video_root: str, annotations: str, annotation_format: AnnotationFormat, out_dir: str,
                split: str = "train", name: str | None = None, labels_path: str | None = None,
                options: WriteOptions = WriteOptions(), samples_per_shard: int = 64,
                on_error: OnError = "skip", progress: bool = True, workers: int = 1) -> Manifest:
    """Writes (or completes) one split of a dataset; returns the updated manifest.

    ``workers`` > 1 writes that many shards at once in worker processes (decoding and
    encoding dominate; each shard is independent, so resuming works the same way)."""
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be ≥ 1, got {samples_per_shard}")
    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    if not os.path.isdir(video_root):
        raise FileNotFoundError(f"video folder not found: {video_root}")
    clips, heads = read_annotations(annotations, annotation_format, labels_path)
    if not clips:
        raise ValueError(f"{annotations}: no clips")
    os.makedirs(out_dir, exist_ok=True)
    fingerprint = _fingerprint(options, clips)
    groups = [clips[i:i + samples_per_shard] for i in range(0, len(clips), samples_per_shard)]
    sidecars: dict[int, dict] = {}
    pending = []
    with tqdm(total=len(clips), desc=f"write {split}", unit="clip", disable=not progress) as bar:
        for number, specs in enumerate(groups):
            path = os.path.join(out_dir, f"{split}-{number:06d}.tar")
            sidecar_path = f"{path[:-4]}.json"
            if os.path.exists(path) and os.path.exists(sidecar_path):
                with open(sidecar_path, encoding="utf-8") as handle:
                    sidecar = json.load(handle)
                if sidecar.get("fingerprint") != fingerprint:
                    raise ValueError(f"{path} was written with other options or another annotation "
                                     f"file; delete it or write to a new folder")
                sidecars[number] = sidecar
                bar.update(len(specs))
            else:
                pending.append((number, path, specs))
        skipped_shards = len(sidecars)
        if workers == 1:
            for number, path, specs in pending:
                sidecars[number] = _write_shard(path, specs, video_root, options, on_error, fingerprint, bar)
        else:
            # spawn, not fork: the parent may hold threads (torch, FFmpeg) that fork would break.
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                jobs = {number: pool.apply_async(_write_shard, (path, specs, video_root, options, on_error,
                                                                fingerprint)) for number, path, specs in pending}
                for number, path, specs in pending:
                    sidecars[number] = jobs[number].get()
                    bar.update(len(specs))
    sidecars = [sidecars[number] for number in sorted(sidecars)]
    if skipped_shards:
        log.info("resumed: %d of %d shards were already complete", skipped_shards, len(groups))
    return _update_manifest(out_dir, name or os.path.basename(os.path.normpath(out_dir)), split,
                            len(groups), sidecars, heads, options)


def _update_manifest(out_dir: str, name: str, split: str, shards: int, sidecars: list[dict],
                     heads: dict[str, list[str]], options: WriteOptions) -> Manifest:
    path = os.path.join(out_dir, MANIFEST_NAME)
    manifest = load_manifest(path) if os.path.exists(path) else Manifest(name=name, heads=heads)
    if manifest.heads != heads:
        raise ValueError(f"{path}: split {split!r} has label heads/classes that differ from the "
                         f"manifest's ({list(heads)} vs {list(manifest.heads)}); pass labels_path "
                         f"or write it to another folder")
    frames = [n for s in sidecars for n in s["frames"]]
    fps_values = sorted({round(f, 6) for s in sidecars for f in s["fps"]})
    manifest.splits[split] = Split(
        shards=f"{split}-{{000000..{shards - 1:06d}}}.tar", samples=len(frames),
        frames=FrameStats(min(frames, default=0), float(np.mean(frames)) if frames else 0.0, max(frames, default=0)))
    manifest.fps = fps_values[0] if len(fps_values) == 1 else 0.0   # 0 = mixed rates (see samples)
    manifest.codec, manifest.short_side = options.codec, options.short_side or 0
    lengths = {n for s in manifest.splits.values() for n in (s.frames.min, s.frames.max)}
    manifest.clip_frames = lengths.pop() if len(lengths) == 1 else 0
    save_manifest(manifest, path)
    return load_manifest(path)

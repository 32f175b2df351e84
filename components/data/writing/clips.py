"""One clip of write_shards: the writing options, every clip's fingerprint, and the clip encoded.

Axis legend: t frames, h height, w width, c = 3 RGB channels.

A clip's fingerprint hashes everything that decides its stored bytes (the source's identity,
the frame range, the labels, the events, the options and the writer's version). Sources are
looked at once, cheaply (:func:`look_at_sources`); :func:`encode_clip` decodes the clip's frames,
compares them with the declared and annotated range (a shortfall beyond ``frame_tolerance`` is
a skip with its reason) and returns the shard sample.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Literal

import numpy as np

from lvmae.components.data.decoding.codec import PIXEL_FORMATS, PixelFormat, encode_mp4
from lvmae.components.data.formats.schema import make_sample
from lvmae.components.data.writing.annotations import ClipSpec
from lvmae.components.data.writing.sources import (
    SourceError,
    SourceInfo,
    probe,
    read_frames,
    resolve_source,
    source_identity,
)

# Bump when the same inputs would give other bytes (a change of encoder or schema): every
# fingerprint changes, so a rerun rewrites everything instead of mixing two writers' output.
WRITER_VERSION = 2
OnError = Literal["skip", "fail"]


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

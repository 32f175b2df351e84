"""Video encoding and decoding behind one small interface (PyAV; FFmpeg bundled in its wheel).

Axis legend: t frames, h height, w width, c = 3 RGB channels. Clips are uint8 (t, h, w, c).

Shards hold constant-frame-rate mp4s written by :func:`encode_mp4`, so a frame number maps to a
timestamp exactly (``pts = index · time_base⁻¹ / fps``); the decoder seeks to the last key
frame before the first wanted frame and decodes forward only as far as the last wanted frame —
a short GOP (``gop`` frames) bounds the waste of a random start.
"""
from __future__ import annotations

import abc
import fractions
import io
from collections.abc import Sequence
from typing import Literal

import av
import numpy as np

from lvmae.registry import register, set_contract

PixelFormat = Literal["yuv420p", "yuv444p"]
PIXEL_FORMATS = ("yuv420p", "yuv444p")
# Below this many frames, decoding from the start is cheap and needs no timestamps.
SEEK_AFTER_FRAMES = 64
# A time base fine enough that every frame of any fps we write gets an integer timestamp.
_TIME_BASE = fractions.Fraction(1, 90_000)


class CorruptVideoError(ValueError):
    """The bytes are not a decodable video, or lack the frames the caller asked for."""


class VideoDecoder(abc.ABC):
    """Decodes chosen frames of an encoded clip held in memory."""

    @abc.abstractmethod
    def decode(self, data: bytes, frame_idx: Sequence[int], short_side: int | None = None) -> np.ndarray:
        """bytes, frame numbers (any order, repeats allowed) → uint8 (len(frame_idx), h, w, c).

        ``short_side``: frames whose shorter side is longer are scaled down (aspect kept) as
        they are decoded, so a worker never holds full-size frames it would only shrink.
        Raises CorruptVideoError when the stream cannot be decoded or a frame is missing.
        """


set_contract("video_decoder", lambda obj: None if isinstance(obj, type) and issubclass(obj, VideoDecoder)
             else "must subclass components.data.decoding.codec.VideoDecoder")


def encode_mp4(frames: np.ndarray, fps: float, gop: int = 32, crf: int = 18,
               pix_fmt: PixelFormat = "yuv420p", preset: str = "veryfast") -> bytes:
    """uint8 (t, h, w, c) → H.264 mp4 bytes, constant frame rate, a key frame every ``gop``."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"encode_mp4: frames must be uint8 (t, h, w, 3), got {frames.dtype} {frames.shape}")
    if pix_fmt not in PIXEL_FORMATS:
        raise ValueError(f"encode_mp4: pix_fmt must be one of {PIXEL_FORMATS}, got {pix_fmt!r}")
    _, height, width, _ = frames.shape
    if pix_fmt == "yuv420p" and (height % 2 or width % 2):
        raise ValueError(f"encode_mp4: yuv420p needs even sizes, got {height}×{width}")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        rate = fractions.Fraction(fps).limit_denominator(1001)
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = _TIME_BASE
        # keyint_min = gop and no scene-cut keys: key frames exactly every `gop` frames.
        stream.options = {"crf": str(crf), "preset": preset, "g": str(gop),
                          "keyint_min": str(gop), "sc_threshold": "0", "bf": "0"}
        ticks = _TIME_BASE.denominator / rate
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = round(index * ticks)
            video_frame.time_base = _TIME_BASE
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())
    return buffer.getvalue()


def scaled_size(height: int, width: int, short_side: int | None) -> tuple[int, int] | None:
    """(h, w) with the shorter side ``short_side`` (aspect kept), or None when the frame is
    already that small (or no limit is set)."""
    if not short_side or min(height, width) <= short_side:
        return None
    scale = short_side / min(height, width)
    return (short_side, max(short_side, round(width * scale))) if height <= width else \
        (max(short_side, round(height * scale)), short_side)


def _frame_number(frame: av.VideoFrame, stream, fps: float) -> int:
    start = stream.start_time or 0
    return round(float((frame.pts - start) * stream.time_base) * fps)


@register("video_decoder.pyav")
class PyAVDecoder(VideoDecoder):
    """Seeks to the key frame before the first wanted frame, decodes to the last one."""

    def __init__(self, threads: int = 1):
        # One decode thread per data-loader worker was fastest on 2 cores (measured).
        if threads < 0:
            raise ValueError(f"PyAVDecoder: threads must be ≥ 0 (0 = FFmpeg's choice), got {threads}")
        self.threads = threads

    def decode(self, data: bytes, frame_idx: Sequence[int], short_side: int | None = None) -> np.ndarray:
        wanted = sorted({int(i) for i in frame_idx})
        if not wanted or wanted[0] < 0:
            raise ValueError(f"decode: frame_idx must be non-empty and ≥ 0, got {list(frame_idx)[:8]}")
        found: dict[int, np.ndarray] = {}
        try:
            with av.open(io.BytesIO(data), mode="r") as container:
                stream = container.streams.video[0]
                stream.thread_count = self.threads
                fps = float(stream.average_rate or stream.guessed_rate)
                start = stream.start_time or 0
                target = start + round(wanted[0] / fps / stream.time_base)
                container.seek(target, stream=stream, backward=True, any_frame=False)
                size = scaled_size(stream.codec_context.height, stream.codec_context.width, short_side)
                for frame in container.decode(stream):
                    number = _frame_number(frame, stream, fps)
                    if number in wanted:
                        if size is not None:
                            frame = frame.reformat(width=size[1], height=size[0], interpolation="AREA")
                        found[number] = frame.to_ndarray(format="rgb24")
                    if number >= wanted[-1]:
                        break
        except (av.error.FFmpegError, IndexError, ZeroDivisionError) as error:
            raise CorruptVideoError(f"undecodable video: {error}") from error
        missing = [i for i in wanted if i not in found]
        if missing:
            raise CorruptVideoError(f"video ends before frame {missing[0]} "
                                    f"({len(missing)} of {len(wanted)} wanted frames missing)")
        return np.stack([found[int(i)] for i in frame_idx])


def _numbered_frames(container, stream, start_frame: int, fps: float):
    """(source frame number, frame) pairs from ``start_frame`` on. Far into a video, seek to
    the key frame before it and number frames by timestamp — otherwise every clip of a long
    video (EPIC-Kitchens has hundreds per video) would decode everything before it. Without
    usable timestamps, decode from the start and count."""
    if start_frame >= SEEK_AFTER_FRAMES and stream.time_base:
        origin = stream.start_time or 0
        container.seek(origin + int(start_frame / fps / stream.time_base), stream=stream,
                       backward=True, any_frame=False)
        decoded = container.decode(stream)
        first = next(decoded, None)
        if first is not None and first.pts is not None and _frame_number(first, stream, fps) <= start_frame:
            yield _frame_number(first, stream, fps), first
            for frame in decoded:
                yield _frame_number(frame, stream, fps), frame
            return
        container.seek(origin, stream=stream, backward=True, any_frame=False)
    yield from enumerate(container.decode(stream))


def read_video_file(path: str, short_side: int | None = None, fps: float | None = None,
                    start_frame: int = 0, stop_frame: int | None = None,
                    max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decodes a video file (any container FFmpeg reads) → (uint8 (t, h, w, c), fps).

    Frames ``[start_frame, stop_frame)`` of the source (numbered at its own rate) are kept,
    then resampled to ``fps`` (nearest earlier source frame) and capped at ``max_frames``;
    ``short_side`` resizes (area filter) so the shorter side has that many pixels, both sides
    even (what yuv420p needs).
    """
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError) as error:
        raise CorruptVideoError(f"cannot open video {path}: {error}") from error
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        source_fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        width, height = stream.codec_context.width, stream.codec_context.height
        if short_side:
            scale = short_side / min(width, height)
            width, height = (max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2))
        last = stop_frame
        if max_frames:   # stop decoding once the kept frames are enough (long sources)
            needed = int(np.ceil(max_frames * source_fps / fps)) if fps else max_frames
            last = min(last, start_frame + needed) if last is not None else start_frame + needed
        frames = []
        for number, frame in _numbered_frames(container, stream, start_frame, source_fps):
            if number < start_frame:
                continue
            if last is not None and number >= last:
                break
            if short_side:
                frame = frame.reformat(width=width, height=height, interpolation="AREA")
            frames.append(frame.to_ndarray(format="rgb24"))
    if not frames:
        raise CorruptVideoError(f"{path}: no frames in [{start_frame}, {stop_frame})")
    clip = np.stack(frames)
    out_fps = source_fps
    if fps and abs(fps - source_fps) > 1e-6:
        count = int(len(clip) * fps / source_fps)
        clip = clip[np.floor(np.arange(max(count, 1)) * source_fps / fps).astype(int)]
        out_fps = fps
    if max_frames:
        clip = clip[:max_frames]
    return clip, out_fps

"""The sources the shard writer reads: video files, image-sequence folders and ``.npy`` arrays.

Axis legend: t frames, h height, w width, c = 3 RGB channels. Clips are uint8 (t, h, w, c).

Three operations, the same for every kind of source:

- :func:`source_identity` — a cheap fingerprint of the bytes (size, modification time and a
  hash of the head and tail; for a folder, every image's name, size and time), so a rerun can
  tell an unchanged source from a replaced or re-encoded one without reading it all.
- :func:`probe` — opens the source cheaply (container header, folder listing, array header):
  its declared frame count, frame rate and size. Errors name the source.
- :func:`read_frames` — decodes frames ``[start, stop)`` (source numbering) and says which
  range it really got, so the writer can compare it with the declared and annotated ranges.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re

import av
import numpy as np

from lvmae.components.data.decoding.codec import CorruptVideoError, _numbered_frames

VIDEO_EXTENSIONS = (".mp4", ".MP4", ".webm", ".mkv", ".avi", ".mov", ".mpg")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG")
ARRAY_EXTENSIONS = (".npy",)
# An image's frame number: the digits ending its stem (``frame_0012`` → ("frame_", "0012")).
FRAME_NUMBER = re.compile(r"(.*?)(\d+)")
# Bytes hashed at each end of a file: enough to see a re-encode or a truncation, cheap on TBs.
IDENTITY_BYTES = 1 << 16


class SourceError(CorruptVideoError):
    """A source that cannot be opened or lacks the frames asked for; ``reason`` is a skip reason."""

    def __init__(self, message: str, reason: str = "undecodable"):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """What a cheap look at a source declares."""

    kind: str            # "video", "images" or "array"
    frames: int          # declared frame count (0 = the container does not say)
    fps: float           # frame rate (the writer's sequence_fps for images and arrays)
    size: tuple[int, int]


def resolve_source(root: str, name: str) -> str:
    """The file or folder for ``name`` under ``root``: as given, with a common video or array
    extension, or flattened (EPIC layout: ``P01/videos/P01_01`` found as ``P01_01.MP4``)."""
    for base in (os.path.join(root, name), os.path.join(root, os.path.basename(name))):
        if os.path.isdir(base):
            return base
        for extension in ("", *VIDEO_EXTENSIONS, *ARRAY_EXTENSIONS):
            if os.path.isfile(base + extension):
                return base + extension
    tried = ", ".join(e or "(none)" for e in ("", *VIDEO_EXTENSIONS, *ARRAY_EXTENSIONS))
    raise SourceError(f"video {name!r} not found under {root} (tried extensions {tried}, "
                      f"and a folder of images)", reason="missing_source")


def _images(folder: str) -> list[str]:
    names = [n for n in os.listdir(folder) if n.endswith(IMAGE_EXTENSIONS)]
    if not names:
        raise SourceError(f"{folder}: a source folder must hold images ({', '.join(IMAGE_EXTENSIONS)})")
    return [os.path.join(folder, n) for n in frame_order(folder, names)]


def frame_order(folder: str, names: list[str]) -> list[str]:
    """Image names in frame order: by the number that ends each name (``0.png, 1.png, …,
    10.png``; zero-padded names sort the same), the part before it the same for all. Names
    without numbers sort as text. Anything else is ambiguous and refused, naming the folder."""
    parsed = [FRAME_NUMBER.fullmatch(os.path.splitext(n)[0]) for n in names]
    if not any(parsed):
        return sorted(names)
    prefixes = {m.group(1) for m in parsed if m}
    numbers = [int(m.group(2)) for m in parsed if m]
    if all(parsed) and len(prefixes) == 1 and len(set(numbers)) == len(numbers):
        return [name for _, name in sorted(zip(numbers, names))]
    unnumbered = [n for n, m in zip(names, parsed) if not m]
    repeated = sorted({n for n, m in zip(names, parsed) if m and numbers.count(int(m.group(2))) > 1})
    why = (f"names without a frame number ({', '.join(sorted(unnumbered)[:3])})" if unnumbered else
           f"the same frame number twice ({', '.join(repeated[:4])})" if repeated else
           f"different name stems before the numbers ({', '.join(sorted(repr(p) for p in prefixes)[:3])})")
    raise SourceError(f"{folder}: the frame order of its {len(names)} images is ambiguous: {why}; name them "
                      f"<stem><number>.<ext> with one stem (e.g. 0.png, 1.png, …, 10.png)",
                      reason="ambiguous_frame_order")


def _file_identity(path: str, digest) -> None:
    stat = os.stat(path)
    digest.update(f"{os.path.basename(path)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(IDENTITY_BYTES))
        if stat.st_size > IDENTITY_BYTES:
            handle.seek(max(IDENTITY_BYTES, stat.st_size - IDENTITY_BYTES))
            digest.update(handle.read(IDENTITY_BYTES))


def source_identity(path: str) -> str:
    """Size, mtime and head/tail hash of a file; for an image folder, every image's name, size
    and time plus the first and last image's bytes."""
    digest = hashlib.sha1()
    if os.path.isdir(path):
        images = _images(path)
        for image in images:
            stat = os.stat(image)
            digest.update(f"{os.path.basename(image)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        for image in (images[0], images[-1]):
            _file_identity(image, digest)
    else:
        _file_identity(path, digest)
    return digest.hexdigest()[:20]


def _load_array(path: str, mmap: bool) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise SourceError(f"{path}: not a readable .npy array ({error})") from error
    if array.ndim == 3:
        array = array[..., None]
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise SourceError(f"{path}: a source array must be uint8 (t, h, w, 3) or (t, h, w), "
                          f"got {array.dtype} {array.shape}")
    return array


def probe(path: str, sequence_fps: float | None) -> SourceInfo:
    """Opens a source cheaply; ``sequence_fps`` is the frame rate of images and arrays."""
    if os.path.isdir(path) or path.endswith(ARRAY_EXTENSIONS):
        if not sequence_fps:
            raise SourceError(f"{path}: images and arrays carry no frame rate; set sequence_fps "
                              f"(write_shards_job.sequence_fps)", reason="no_frame_rate")
        if os.path.isdir(path):
            images = _images(path)
            first = _decode_image(images[0])
            return SourceInfo("images", len(images), float(sequence_fps), first.shape[:2])
        array = _load_array(path, mmap=True)
        return SourceInfo("array", array.shape[0], float(sequence_fps), array.shape[1:3])
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise SourceError(f"{path}: no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            if fps <= 0:
                raise SourceError(f"{path}: the container declares no frame rate")
            frames = int(stream.frames or 0)
            if not frames:    # no frame count in the header (webm, some avi): from the duration
                if stream.duration and stream.time_base:
                    frames = round(float(stream.duration * stream.time_base) * fps)
                elif container.duration:
                    frames = round(container.duration / av.time_base * fps)
            return SourceInfo("video", frames, fps, (stream.codec_context.height, stream.codec_context.width))
    except (av.error.FFmpegError, OSError) as error:
        raise SourceError(f"cannot open video {path}: {error}") from error


def _decode_image(path: str) -> np.ndarray:
    try:
        with av.open(path) as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, OSError, StopIteration) as error:
        raise SourceError(f"cannot read image {path}: {error}") from error


def _resize(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or frame.shape[:2] == size:
        return frame
    video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    return video_frame.reformat(width=size[1], height=size[0], interpolation="AREA").to_ndarray(format="rgb24")


def stored_size(size: tuple[int, int], short_side: int | None) -> tuple[int, int] | None:
    """(h, w) after resizing the short side to ``short_side`` (both even), or None = as is."""
    if not short_side:
        return None
    height, width = size
    scale = short_side / min(height, width)
    return max(2, round(height * scale / 2) * 2), max(2, round(width * scale / 2) * 2)


def read_frames(path: str, info: SourceInfo, start: int, stop: int | None,
                short_side: int | None = None) -> tuple[np.ndarray, int]:
    """Frames ``[start, stop)`` of a source (``stop`` None = to the end), resized so the short
    side is ``short_side``; returns (uint8 (t, h, w, c), first frame number). Fewer frames
    than asked come back when the source ends early — the caller compares."""
    size = stored_size(info.size, short_side)
    if info.kind == "array":
        array = _load_array(path, mmap=True)[start:stop]
        frames = [_resize(np.repeat(f, 3, axis=-1) if f.shape[-1] == 1 else np.asarray(f), size) for f in array]
    elif info.kind == "images":
        frames = [_resize(_decode_image(image), size) for image in _images(path)[start:stop]]
    else:
        frames = []
        try:
            with av.open(path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for number, frame in _numbered_frames(container, stream, start, info.fps):
                    if number < start:
                        continue
                    if stop is not None and number >= stop:
                        break
                    if size:
                        frame = frame.reformat(width=size[1], height=size[0], interpolation="AREA")
                    frames.append(frame.to_ndarray(format="rgb24"))
        except (av.error.FFmpegError, OSError) as error:
            if not frames:
                raise SourceError(f"cannot decode video {path}: {error}") from error
            # A damaged tail: keep what decoded; the caller's range check decides.
    if not frames and info.frames and start < info.frames:
        raise SourceError(f"{path}: no frame decodes from frame {start} on, though the container declares "
                          f"{info.frames}: the file is cut short or damaged", reason="truncated")
    if not frames:
        raise SourceError(f"{path}: no frames in [{start}, {stop if stop is not None else 'end'})",
                          reason="empty_range")
    return np.stack(frames), start

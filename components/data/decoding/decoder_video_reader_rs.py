"""A faster decoder: video-reader-rs (Rust + FFmpeg; optional ``lvmae[fastdecode]``).

Measured as the fastest CPU decoder on our machines (~2.5× PyAV on 128-frame clips).
Two pitfalls handled here: its wheel's bundled FFmpeg libraries are not on the loader path
(we preload them by full path, RTLD_LOCAL, so the extension finds them by soname without
clashing with PyAV's own FFmpeg), and it opens paths only (clips go through a file in
/dev/shm, a memory-backed folder, and are deleted at once).
"""
from __future__ import annotations

import ctypes
import functools
import glob
import importlib.util
import os
import tempfile
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from lvmae.components.data.decoding.codec import CorruptVideoError, VideoDecoder, scaled_size
from lvmae.registry import register

_SHM = "/dev/shm"


@functools.cache
def _reader_class():
    spec = importlib.util.find_spec("video_reader")
    if spec is None:
        raise ImportError("video_decoder.video_reader_rs needs `pip install video-reader-rs==0.4.5` "
                          "(the lvmae[fastdecode] extra); use video_decoder.pyav otherwise")
    libs = os.path.join(os.path.dirname(os.path.dirname(spec.origin)), "video_reader_rs.libs")
    pending = sorted(glob.glob(os.path.join(libs, "*.so*")))
    for _ in range(len(pending)):     # dependency order is unknown: load what loads, repeat
        failed = []
        for path in pending:
            try:
                ctypes.CDLL(path, mode=os.RTLD_LOCAL)
            except OSError:
                failed.append(path)
        if not failed or len(failed) == len(pending):
            break
        pending = failed
    from video_reader import PyVideoReader  # pylint: disable=import-outside-toplevel
    return PyVideoReader


@register("video_decoder.video_reader_rs")
class VideoReaderRsDecoder(VideoDecoder):
    """Decodes chosen frames with video-reader-rs (``get_batch``); see the module docstring."""

    def __init__(self, threads: int = 1):
        if threads < 0:
            raise ValueError(f"video_decoder.video_reader_rs: threads must be ≥ 0, got {threads}")
        self.threads = threads
        self.folder = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) else None
        _reader_class()   # fail at construction, not in a worker, when the package is missing

    def decode(self, data: bytes, frame_idx: Sequence[int], short_side: int | None = None) -> np.ndarray:
        wanted = [int(i) for i in frame_idx]
        if not wanted or min(wanted) < 0:
            raise ValueError(f"decode: frame_idx must be non-empty and ≥ 0, got {wanted[:8]}")
        with tempfile.NamedTemporaryFile(suffix=".mp4", dir=self.folder) as handle:
            handle.write(data)
            handle.flush()
            try:
                reader = _reader_class()(handle.name, threads=self.threads)
                available = int(reader.get_info()["frame_count"])
                if max(wanted) >= available:
                    raise CorruptVideoError(f"video has {available} frames, frame {max(wanted)} wanted")
                frames = reader.get_batch(wanted)
            except CorruptVideoError:
                raise
            except Exception as error:  # the extension raises plain exceptions on bad input
                raise CorruptVideoError(f"undecodable video: {error}") from error
        if frames.shape[0] != len(wanted):
            raise CorruptVideoError(f"decoded {frames.shape[0]} of {len(wanted)} wanted frames")
        size = scaled_size(frames.shape[1], frames.shape[2], short_side)
        if size is not None:    # scaled after decoding (the extension has no per-call scaler)
            video = rearrange(torch.from_numpy(frames), "t h w c -> t c h w")
            video = F.interpolate(video, size=size, mode="bilinear", align_corners=False, antialias=True)
            frames = rearrange(video, "t c h w -> t h w c").contiguous().numpy()
        return frames

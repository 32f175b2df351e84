"""PyTorch's own video decoder: torchcodec (optional ``lvmae[torchcodec]``; FFmpeg shared libraries).

Axis legend: t frames, h height, w width, c = 3 RGB channels. Clips are uint8 (t, h, w, c).

Decodes straight from the mp4 bytes of a shard sample (no temporary file), on the CPU or, with
``device="cuda"``, on the GPU's video decoder (NVDEC) when torchcodec was built for it. Frames
are numbered by index, as PyAV numbers them by timestamp in our constant-frame-rate shards, so
both return the same frames (tests/data/test_data_decoders.py). ``seek_mode="exact"`` scans the
file's index once per open, which is cheap for the short clips of a shard; scaling happens in
the decoder (``Resize``), so a worker never holds full-size frames it would only shrink.

Install: ``pip install torchcodec==0.13.0`` — later CPU wheels on PyPI are CUDA builds that do
not load beside the CPU torch — plus FFmpeg's shared libraries (Debian: ``apt-get install
libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8``;
scripts/setup.sh does both).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from lvmae.components.data.decoding.codec import CorruptVideoError, VideoDecoder, scaled_size
from lvmae.registry import register

DEVICES = ("cpu", "cuda")


@functools.cache
def _torchcodec():
    """(VideoDecoder class, Resize transform class); ImportError says how to install."""
    try:
        from torchcodec.decoders import VideoDecoder as CodecDecoder  # pylint: disable=import-outside-toplevel
        from torchcodec.transforms import Resize  # pylint: disable=import-outside-toplevel
    except (ImportError, OSError, RuntimeError) as error:
        raise ImportError(f"video_decoder.torchcodec needs `pip install torchcodec==0.13.0` (the "
                          f"lvmae[torchcodec] extra) and FFmpeg's shared libraries (scripts/setup.sh "
                          f"installs both); use video_decoder.pyav otherwise. Loading it said: "
                          f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from error
    return CodecDecoder, Resize


@register("video_decoder.torchcodec")
class TorchCodecDecoder(VideoDecoder):
    """Decodes chosen frames with torchcodec (``get_frames_at``); see the module docstring.

    Args:
      threads: FFmpeg decode threads (0 = FFmpeg's choice).
      device: "cpu", or "cuda" for the GPU's decoder (refused when no GPU is visible).
    """

    def __init__(self, threads: int = 1, device: str = "cpu"):
        if threads < 0:
            raise ValueError(f"video_decoder.torchcodec: threads must be ≥ 0, got {threads}")
        if device not in DEVICES:
            raise ValueError(f"video_decoder.torchcodec: device must be one of {DEVICES}, got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("video_decoder.torchcodec: device='cuda' asked for, but no GPU is visible; "
                             "bind video_decoder.torchcodec.device = 'cpu'")
        self.threads, self.device = threads, device
        _torchcodec()     # fail at construction, not in a worker, when it cannot load

    def decode(self, data: bytes, frame_idx: Sequence[int], short_side: int | None = None) -> np.ndarray:
        wanted = [int(i) for i in frame_idx]
        if not wanted or min(wanted) < 0:
            raise ValueError(f"decode: frame_idx must be non-empty and ≥ 0, got {wanted[:8]}")
        codec_decoder, resize = _torchcodec()
        try:
            # The header alone (approximate mode reads no index) gives the size to scale to.
            meta = codec_decoder(data, seek_mode="approximate").metadata
            size = scaled_size(meta.height, meta.width, short_side)
            decoder = codec_decoder(data, seek_mode="exact", device=self.device, dimension_order="NHWC",
                                    num_ffmpeg_threads=self.threads,
                                    transforms=[resize(size=size)] if size is not None else None)
            available = int(decoder.metadata.num_frames)
            if max(wanted) >= available:
                raise CorruptVideoError(f"video has {available} frames, frame {max(wanted)} wanted")
            frames = decoder.get_frames_at(indices=wanted).data
        except CorruptVideoError:
            raise
        except Exception as error:  # the extension raises RuntimeError/ValueError on bad input
            raise CorruptVideoError(f"undecodable video: {error}") from error
        if frames.shape[0] != len(wanted):
            raise CorruptVideoError(f"decoded {frames.shape[0]} of {len(wanted)} wanted frames")
        return frames.cpu().numpy()

"""Every registered video decoder: the frames asked for, in the order asked, and clear errors."""
from __future__ import annotations

import numpy as np
import pytest
from video_fixtures import moving_clip

from lvmae import registry
from lvmae.components.data.decoding.codec import CorruptVideoError, PyAVDecoder, encode_mp4


def decoders():
    registry.discover()
    return registry.names("video_decoder")


def build(name):
    try:
        return registry.build(f"video_decoder.{name}")
    except ImportError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def clip_and_bytes():
    clip = moving_clip(40, 32, 48)
    return clip, encode_mp4(clip, 25.0, gop=8, crf=10)


@pytest.mark.parametrize("name", decoders())
def test_decodes_requested_frames_in_order(name, clip_and_bytes):
    clip, data = clip_and_bytes
    wanted = [30, 3, 17, 17, 39, 0]
    frames = build(name).decode(data, wanted)
    assert frames.shape == (len(wanted), 32, 48, 3) and frames.dtype == np.uint8
    error = np.abs(frames.astype(np.int16) - clip[wanted].astype(np.int16))
    assert error.mean() < 3.0                      # crf 10: near-lossless, each frame its own
    assert np.array_equal(frames[2], frames[3])
    # Neighbouring frames differ, so a frame off by one would fail the check above.
    assert np.abs(clip[17].astype(np.int16) - clip[18]).mean() > 3 * error.mean()


@pytest.mark.parametrize("name", decoders())
def test_truncated_and_short_videos_raise_corrupt_video_error(name, clip_and_bytes):
    _, data = clip_and_bytes
    decoder = build(name)
    with pytest.raises(CorruptVideoError):
        decoder.decode(data, [40])
    with pytest.raises(CorruptVideoError):
        decoder.decode(data[: len(data) // 3], [35])


def test_decoders_agree(clip_and_bytes):
    _, data = clip_and_bytes
    reference = PyAVDecoder().decode(data, range(10, 20))
    for name in decoders():
        frames = build(name).decode(data, range(10, 20))
        assert np.abs(frames.astype(np.int16) - reference).max() <= 6   # colour-conversion rounding

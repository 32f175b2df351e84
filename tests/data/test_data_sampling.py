"""Temporal sampling and spatial augmentation invariants."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lvmae.components.data.reading.augment import SpatialAugment
from lvmae.components.data.reading.temporal import TemporalSampler


@pytest.mark.parametrize("num_frames", [40, 200])
def test_window_fits_and_keeps_stride(num_frames):
    sampler = TemporalSampler(16, stride=2, start="random")
    rng = np.random.default_rng(0)
    firsts = set()
    for _ in range(50):
        idx = sampler(num_frames, rng)
        assert len(idx) == 16 and idx.min() >= 0 and idx.max() < num_frames
        assert np.all(np.diff(idx) == 2)
        firsts.add(int(idx[0]))
    assert len(firsts) > 1 or num_frames - sampler.span == 0


def test_centre_start_is_centred():
    idx = TemporalSampler(8, stride=3, start="center")(100, np.random.default_rng(0))
    span = 7 * 3 + 1
    assert idx[0] == (100 - span) // 2 and idx[-1] == idx[0] + span - 1


@pytest.mark.parametrize("policy", ["loop", "pad", "resample"])
def test_short_clip_policies(policy):
    idx = TemporalSampler(8, stride=2, short_policy=policy)(5, np.random.default_rng(0))
    assert len(idx) == 8 and idx.min() >= 0 and idx.max() <= 4
    expected = {"loop": [0, 2, 4, 1, 3, 0, 2, 4], "pad": [0, 2, 4, 4, 4, 4, 4, 4],
                "resample": [0, 0, 1, 1, 2, 3, 3, 4]}[policy]
    assert idx.tolist() == expected


def test_bad_choices_name_the_parameter():
    with pytest.raises(ValueError, match="short_policy"):
        TemporalSampler(8, short_policy="wrap")
    with pytest.raises(ValueError, match="start"):
        TemporalSampler(8, start="middle")
    with pytest.raises(ValueError, match="stride"):
        TemporalSampler(8, stride=0)


def cell_coded_clip(grid_h: int, grid_w: int, cell: int, frames: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A clip whose every token cell is one flat colour encoding the cell's index, and the
    matching ``indices`` grid (t', h', w')."""
    index = np.arange(grid_h * grid_w).reshape(grid_h, grid_w)
    pixels = np.kron(index, np.ones((cell, cell), dtype=np.int64))
    clip = np.zeros((frames, grid_h * cell, grid_w * cell, 3), dtype=np.uint8)
    clip[..., 0] = pixels * 4            # red channel = 4 · cell index (≤ 255 for ≤ 64 cells)
    return clip, np.broadcast_to(index, (frames // 2, grid_h, grid_w)).copy()


@pytest.mark.parametrize("train", [True, False])
def test_crop_and_flip_move_the_token_grid_with_the_pixels(train):
    """An output token's index is the cell colour at the centre of its output pixels; with a
    crop of k cells resized to 8 a token can straddle two cells, so training crops allow a few
    tokens off by one neighbouring cell; the evaluation centre crop is exact."""
    grid, cell, out = 8, 8, 64
    clip, indices = cell_coded_clip(grid, grid, cell)
    augment = SpatialAugment(out, train=train, scale=(0.3, 1.0), interpolation="nearest-exact")
    rng = np.random.default_rng(1)
    flips = 0
    for _ in range(20):
        video, fields = augment(clip, {"indices": indices}, rng)
        assert video.shape == (3, 2, out, out) and video.dtype == torch.uint8 and fields["indices"].shape == (1, grid, grid)
        out_cell = out // grid
        centres = video[0, 0, out_cell // 2::out_cell, out_cell // 2::out_cell]   # red at token centres
        decoded = torch.round(centres.float() / 4).long()
        expected = fields["indices"][0]
        if train:
            assert (decoded == expected).float().mean() >= 0.9
            rows, cols = decoded // grid - expected // grid, decoded % grid - expected % grid
            assert rows.abs().max() <= 1 and cols.abs().max() <= 1
        else:
            assert torch.equal(decoded, expected)
        flips += int(fields["indices"][0, 0, 0] > fields["indices"][0, 0, -1])
    assert (flips > 0) == train


def test_grid_that_does_not_tile_the_frame_is_an_error():
    clip = np.zeros((2, 30, 30, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="does not tile"):
        SpatialAugment(16)(clip, {"scores": np.zeros((1, 4, 4), dtype=np.float32)}, np.random.default_rng(0))

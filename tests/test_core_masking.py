"""Invariants of every encoder/decoder masking strategy and of the loss set."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lvmae import registry
from lvmae.components.masking.decoder_all import AllMaskedDecoding
from lvmae.components.masking.decoder_random import RandomDecoderMasking
from lvmae.components.masking.decoder_running_cell import RunningCellDecoderMasking
from lvmae.components.masking.decoder_uniform import UniformFrameDecoding
from lvmae.components.masking.encoder_random import RandomMasking
from lvmae.components.masking.encoder_running_cell import RunningCellEncoderMasking
from lvmae.components.masking.encoder_tube import TubeMasking
from lvmae.components.masking.plan import MaskPlan, TokenGrid
from lvmae.components.masking.running_cell import running_cell_hidden
from lvmae.components.targets.pixels import PixelTarget

registry.discover()
GRID = TokenGrid(8, 6, 4)          # n = 192, 24 cells per frame
BATCH = 5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


ENCODERS = {
    "random": (lambda: RandomMasking(0.1), round(0.1 * GRID.n)),
    "tube": (lambda: TubeMasking(0.25), GRID.t * round(0.25 * GRID.cells)),
    "running_cell": (lambda: RunningCellEncoderMasking(0.25), GRID.n // 4),
}
DECODERS = {
    "all": lambda kept: GRID.n - kept,
    "random": lambda kept: round(0.15 * GRID.n),
    "uniform": lambda kept: (GRID.t // 7) * GRID.cells,
    "running_cell": lambda kept: GRID.n // 2,
}


def _decoder(name: str):
    return {"all": AllMaskedDecoding, "random": lambda: RandomDecoderMasking(0.15),
            "uniform": lambda: UniformFrameDecoding(0.15),
            "running_cell": lambda: RunningCellDecoderMasking(0.5)}[name]()


def test_every_registered_strategy_is_covered():
    assert set(registry.names("masking.encoder")) >= set(ENCODERS)
    assert set(registry.names("masking.decoder")) >= set(DECODERS)


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_counts_sorted_unique_and_seeded(name):
    build, expected = ENCODERS[name]
    strategy = build()
    keep = strategy(GRID, BATCH, _gen(0))
    assert keep.shape == (BATCH, expected) and keep.dtype == torch.long
    assert torch.equal(keep, keep.sort(dim=1).values)
    assert all(len(set(row.tolist())) == expected for row in keep)
    assert int(keep.min()) >= 0 and int(keep.max()) < GRID.n
    assert torch.equal(keep, strategy(GRID, BATCH, _gen(0)))
    assert not torch.equal(keep, strategy(GRID, BATCH, _gen(1)))


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("name", DECODERS)
def test_decoder_counts_and_seed(encoder, name):
    keep = ENCODERS[encoder][0]()(GRID, BATCH, _gen(0))
    strategy = _decoder(name)
    targets = strategy(GRID, keep, _gen(2))
    assert targets.shape == (BATCH, DECODERS[name](keep.shape[1]))
    assert all(len(set(row.tolist())) == targets.shape[1] for row in targets)
    assert torch.equal(targets, strategy(GRID, keep, _gen(2)))
    if name != "all":                                    # `all` is a function of the encoder mask
        assert not torch.equal(targets, strategy(GRID, keep, _gen(3)))
    plan = MaskPlan(GRID, keep, targets)
    in_loss = plan.loss_weight.bool()
    # the loss set is exactly targets the encoder did not see
    assert torch.equal(in_loss, ~torch.gather(plan.enc_keep_mask, 1, targets))


@pytest.mark.parametrize("name", ["all", "random"])
def test_masked_only_strategies_never_target_kept_tokens(name):
    keep = TubeMasking(0.25)(GRID, BATCH, _gen(0))
    plan = MaskPlan(GRID, keep, _decoder(name)(GRID, keep, _gen(1)))
    assert not (plan.enc_keep_mask & plan.dec_target_mask).any()
    if name == "all":
        assert torch.equal(plan.enc_keep_mask | plan.dec_target_mask, torch.ones(BATCH, GRID.n, dtype=torch.bool))


def test_tube_is_constant_over_time():
    keep = TubeMasking(0.25)(GRID, BATCH, _gen(0))
    mask = MaskPlan(GRID, keep, keep).enc_keep_mask.view(BATCH, GRID.t, GRID.cells)
    assert torch.equal(mask, mask[:, :1].expand_as(mask))
    assert not torch.equal(mask[0], mask[1])            # clips draw their own tubes


def test_uniform_selects_whole_frames_at_the_stride():
    strategy = UniformFrameDecoding(0.15)
    grid = TokenGrid(64, 14, 14)                         # 128 frames at 224², tubelet 2×16×16
    keep = TubeMasking(0.1)(grid, BATCH, _gen(0))
    targets = strategy(grid, keep, _gen(4))
    assert strategy.stride == 7 and targets.shape[1] == 9 * grid.cells
    for row in targets:
        frames, cells = row // grid.cells, row % grid.cells
        unique_frames = frames.unique()
        assert len(unique_frames) == 9
        for f in unique_frames:                          # each chosen frame is complete
            assert sorted(cells[frames == f].tolist()) == list(range(grid.cells))
        assert set(torch.diff(unique_frames).tolist()) == {7}
    firsts = {int(row.min()) // grid.cells for row in strategy(grid, keep, _gen(5))}
    assert len(firsts) > 1                               # random phase varies between clips


def _published_running_cell(frames: int, height: int, width: int, mask_ratio: float) -> np.ndarray:
    """VideoMAE V2's RunningCellMaskingGenerator (OpenGVLab/VideoMAEv2, masking_generator.py),
    transcribed: returns all_mask_maps (cells, frames, h·w), 1 = masked."""
    num_masks_per_cell = int(4 * mask_ratio)
    num_patches_per_cell = 4 - num_masks_per_cell
    size = num_masks_per_cell + num_patches_per_cell
    queue = np.hstack([np.ones(num_masks_per_cell), np.zeros(num_patches_per_cell)])
    mask_list = []
    for ptr_pos in range(size):
        queue_ptr = ptr_pos
        mask = []
        for _ in range(frames):
            queue_ptr += 1                                           # run_cell()
            mask_unit = queue[(np.arange(size) + queue_ptr) % size].reshape(2, 2)   # get_cell()
            mask.append(np.tile(mask_unit, [height // 2, width // 2]).flatten())
        mask_list.append(np.stack(mask, axis=0))
    return np.stack(mask_list, axis=0)


@pytest.mark.parametrize("mask_ratio", [0.25, 0.5, 0.75])
def test_running_cell_matches_the_published_pattern(mask_ratio):
    published = _published_running_cell(GRID.t, GRID.h, GRID.w, mask_ratio)
    ours = running_cell_hidden(GRID, int(4 * mask_ratio)).reshape(4, GRID.t, GRID.cells)
    assert np.array_equal(ours.numpy().astype(float), published)
    # decoder budget = the visible fraction: its targets are exactly a published pattern's zeros
    targets = RunningCellDecoderMasking(1 - mask_ratio)(GRID, torch.zeros(BATCH, 1, dtype=torch.long), _gen(0))
    patterns = {tuple(np.flatnonzero(p.reshape(-1) == 0)) for p in published}
    assert all(tuple(row.tolist()) in patterns for row in targets)


def test_running_cell_visits_every_position_over_time():
    hidden = running_cell_hidden(GRID, 3)                # 1 of 4 visible per frame
    assert (~hidden).any(dim=1).all()                    # every (h, w) visible in some frame


@pytest.mark.parametrize("build, parameter", [
    (lambda: RandomMasking(0.0), "masking.encoder.random.keep_ratio"),
    (lambda: TubeMasking(1.5), "masking.encoder.tube.keep_ratio"),
    (lambda: RunningCellEncoderMasking(0.1), "masking.encoder.running_cell.keep_ratio"),
    (lambda: RunningCellDecoderMasking(0.15), "masking.decoder.running_cell.budget"),
    (lambda: UniformFrameDecoding(0), "masking.decoder.uniform.budget"),
    (lambda: RandomDecoderMasking(-1), "masking.decoder.random.budget"),
])
def test_bad_ratios_name_the_parameter(build, parameter):
    with pytest.raises(ValueError, match=parameter.replace(".", r"\.")):
        build()


def test_running_cell_rejects_an_odd_grid():
    with pytest.raises(ValueError, match="even token grid"):
        RunningCellEncoderMasking(0.5)(TokenGrid(2, 3, 4), 1, _gen(0))


def test_loss_ignores_tokens_outside_the_loss_set():
    keep = TubeMasking(0.25)(GRID, 2, _gen(0))
    plan = MaskPlan(GRID, keep, RunningCellDecoderMasking(0.5)(GRID, keep, _gen(1)))
    weight = plan.loss_weight
    assert 0 < weight.sum() < weight.numel()             # some targets were kept by the encoder
    target = torch.randn(2, plan.dec_target_idx.shape[1], 12)
    prediction = torch.randn_like(target, requires_grad=True)
    pixels = PixelTarget()
    terms = pixels.loss(prediction, target, weight)
    terms["loss"].backward()
    outside = ~weight.bool()
    assert (prediction.grad[outside] == 0).all() and (prediction.grad[~outside] != 0).any()
    changed = prediction.detach().clone()
    changed[outside] += 100.0
    assert torch.equal(pixels.loss(changed, target, weight)["loss"], terms["loss"].detach())
    assert terms["loss_tokens"] == weight.sum()
    manual = ((prediction - target) ** 2).mean(-1)[~outside].mean()
    assert torch.allclose(terms["loss"], manual)
    assert set(terms) == {"loss", "loss/pixels", "loss_tokens"}

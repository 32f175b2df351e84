"""Positional interpolation and loading a pre-trained encoder at another frame count."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lvmae import registry
from lvmae.components.backbones.heads import MeanPoolLinear
from lvmae.components.backbones.pos_interpolation import adapt_state, resize_table
from lvmae.components.backbones.vit import VideoViT
from lvmae.components.masking.plan import TokenGrid
from lvmae.components.models.classifier import VideoClassifier
from lvmae.experiments.engine.pretrained import load_pretrained_encoder
from lvmae.experiments.engine.training import save_checkpoint

registry.discover()
TUBELET = (2, 8, 8)
WIDTH = 24


def vit(frames: int, size: int = 32) -> VideoViT:
    return VideoViT(frames, size, TUBELET, dim=WIDTH, depth=2, heads=2)


class LearnedPositionsViT(VideoViT):
    """A ViT with learned tables (one full t·h·w, one time-only), as a backbone may have."""

    def __init__(self, frames: int, size: int = 32):
        super().__init__(frames, size, TUBELET, dim=WIDTH, depth=2, heads=2)
        self.pos_table = nn.Parameter(torch.randn(1, self.grid.n, WIDTH))
        self.time_table = nn.Parameter(torch.randn(self.grid.t, WIDTH))


def test_resize_to_the_same_grid_is_the_identity():
    grid = TokenGrid(8, 4, 4)
    table = torch.randn(1, grid.n, WIDTH)
    assert torch.equal(resize_table(table, grid, grid), table)
    assert torch.equal(resize_table(table[0, :8], grid, grid, axes="t"), table[0, :8])


def test_resize_in_time_keeps_each_frames_spatial_pattern():
    old, new = TokenGrid(8, 4, 4), TokenGrid(16, 4, 4)
    spatial = torch.randn(old.cells, WIDTH)
    table = spatial.repeat(old.t, 1)                            # constant along t
    resized = resize_table(table, old, new)
    assert resized.shape == (new.n, WIDTH)
    assert torch.allclose(resized.reshape(new.t, new.cells, WIDTH),
                          spatial.expand(new.t, -1, -1), atol=1e-6)
    ramp = torch.arange(old.t, dtype=torch.float32)[:, None].expand(old.t, WIDTH)
    stretched = resize_table(ramp, old, new, axes="t")[:, 0]
    assert torch.all(stretched[1:] >= stretched[:-1])           # order of time is kept
    assert stretched[0] == 0 and stretched[-1] == old.t - 1     # ends map to ends


def test_pretrain_at_16_frames_finetune_at_32(tmp_path):
    pretrained = vit(16)
    path = save_checkpoint(str(tmp_path / "pre.pt"),
                           {"model": {f"encoder.{k}": v for k, v in pretrained.state_dict().items()}})
    classifier = VideoClassifier(vit(32), MeanPoolLinear, {"label": 3})
    report = load_pretrained_encoder(classifier.encoder, path)
    assert report.tensors == len(pretrained.state_dict())
    for key, value in pretrained.state_dict().items():
        assert torch.equal(classifier.encoder.state_dict()[key], value), key
    # the fixed sin-cos table is the 32-frame one, not the 16-frame one
    assert classifier.encoder.pos_embed.shape[-2] == 2 * pretrained.pos_embed.shape[-2]
    logits = classifier.eval()(torch.randn(2, 3, 32, 32, 32))
    assert logits["label"].shape == (2, 3)


def test_learned_tables_are_resized_and_other_mismatches_raise(tmp_path):
    pre, fine = LearnedPositionsViT(16), LearnedPositionsViT(32)
    full_only = {k: v for k, v in pre.state_dict().items() if k != "time_table"}
    _, resized = adapt_state(full_only, fine, fine.grid)                 # old grid inferred
    assert {r.key: r.axes for r in resized} == {"pos_table": "thw"}
    with pytest.raises(ValueError, match="pretrained_grid"):            # time-only needs it
        adapt_state({"time_table": pre.time_table.detach()}, fine, fine.grid)
    state, resized = adapt_state(pre.state_dict(), fine, fine.grid, old=pre.grid)
    assert {r.key: r.axes for r in resized} == {"pos_table": "thw", "time_table": "t"}
    fine.load_state_dict(state)                                          # every shape fits now
    path = save_checkpoint(str(tmp_path / "pre.pt"),
                           {"model": {f"encoder.{k}": v for k, v in pre.state_dict().items()}})
    report = load_pretrained_encoder(fine, path, pretrained_grid=(8, 4, 4))
    assert len(report.resized) == 2 and "resized pos_table" in report.describe()
    other_tubelet = VideoViT(32, 32, (4, 8, 8), dim=WIDTH, depth=2, heads=2)
    with pytest.raises(ValueError, match="patch_embed.weight"):
        load_pretrained_encoder(other_tubelet, path)


def test_learned_backbone_positions_are_resized_from_16_to_32_frames(tmp_path):
    pre = VideoViT(16, 32, TUBELET, dim=WIDTH, depth=2, heads=2, positions="learned")
    path = save_checkpoint(str(tmp_path / "pre.pt"),
                           {"model": {f"encoder.{k}": v for k, v in pre.state_dict().items()}})
    fine = VideoViT(32, 32, TUBELET, dim=WIDTH, depth=2, heads=2, positions="learned")
    report = load_pretrained_encoder(fine, path)
    assert [r.key for r in report.resized] == ["pos_embed"]
    assert torch.equal(fine.pos_embed, resize_table(pre.pos_embed.detach(), pre.grid, fine.grid))
    same = VideoViT(16, 32, TUBELET, dim=WIDTH, depth=2, heads=2, positions="learned")
    assert load_pretrained_encoder(same, path).resized == []
    assert torch.equal(same.pos_embed, pre.pos_embed)


def test_missing_checkpoint_and_foreign_state_raise(tmp_path):
    encoder = vit(16)
    with pytest.raises(FileNotFoundError, match="finetune_loop.pretrained"):
        load_pretrained_encoder(encoder, str(tmp_path / "nope.pt"))
    path = save_checkpoint(str(tmp_path / "other.pt"), {"model": {"decoder.w": torch.zeros(1)}})
    with pytest.raises(ValueError, match="encoder"):
        load_pretrained_encoder(encoder, path)

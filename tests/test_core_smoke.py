"""Registry-parametrised smoke tests: every backbone, decoder and masking strategy of lvmae
builds from its gin file and runs forward + backward. Components from elsewhere (installed
or gin-imported plugins) ship their own gin files; the contract kit covers them
(tests/test_kit.py)."""
from __future__ import annotations

from pathlib import Path

import gin
import pytest
import torch

from lvmae import registry
from lvmae.components.masking.plan import MaskPlan

registry.discover()
ROOT = Path(__file__).resolve().parents[1]
MACROS = ["CLIP_FRAMES = 4", "IMAGE_SIZE = 32", "TUBELET = (2, 16, 16)"]   # 2×2×2 = 8 tokens
TINY_MAE = ["gin/backbones/vit_tiny.gin", "gin/backbones/decoder_mae.gin", "gin/targets/pixels.gin"]
# Where each kind keeps its gin files, and the file name of a component.
GIN_FILE = {
    "backbone": lambda name: f"gin/backbones/{name}.gin",
    "decoder": lambda name: f"gin/backbones/decoder_{name}.gin",
    "masking.encoder": lambda name: f"gin/masking/encoder_{name}.gin",
    "masking.decoder": lambda name: f"gin/masking/decoder_{name}.gin",
}
# Generic classes configured by their presets' files.
WITHOUT_OWN_FILE = {"backbone.vit"}


def _entries(kind: str) -> list[str]:
    """lvmae's own components of ``kind`` that have a gin file of their own."""
    return [e.full_name for e in registry.entries(kind)
            if e.full_name not in WITHOUT_OWN_FILE and e.module.startswith("lvmae.")]


def _batch(model, frames: int = 4, size: int = 32) -> dict:
    grid = model.encoder.grid
    return {"video": torch.randn(2, 3, frames, size, size),
            "scores": torch.rand(2, grid.t, grid.h, grid.w)}


def _build_mae(files: list[str], bindings: list[str]):
    gin.parse_config_files_and_bindings(files, MACROS + bindings)
    return registry.build("model.mae")


def _forward_backward(model) -> MaskPlan:
    losses, plan, prediction = model(_batch(model), torch.Generator().manual_seed(0))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    assert prediction.shape[:2] == plan.dec_target_idx.shape
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    return plan


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)                   # gin `include` paths are relative to the root


# ViT-L (300M parameters) takes most of a minute on 2 CPU cores.
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name == "backbone.vit_l" else name
                                  for name in _entries("backbone")])
def test_backbone_builds_from_its_gin_file_and_trains(name):
    short = name.split(".", 1)[1]
    gin.parse_config_files_and_bindings([GIN_FILE["backbone"](short)], MACROS)
    encoder = gin.query_parameter("%ENCODER").scoped_configurable_fn()
    video = torch.randn(1, 3, 4, 32, 32)
    features = encoder(video, torch.tensor([[0, 3, 5]]))
    assert features.shape == (1, 3, encoder.dim)
    features.sum().backward()
    assert encoder.patch_embed.weight.grad is not None


@pytest.mark.parametrize("name", _entries("decoder"))
def test_decoder_builds_from_its_gin_file_and_trains(name):
    short = name.split(".", 1)[1]
    files = ["gin/backbones/vit_tiny.gin", GIN_FILE["decoder"](short), "gin/targets/pixels.gin",
             "gin/masking/encoder_tube.gin", "gin/masking/decoder_random.gin"]
    _forward_backward(_build_mae(files, ["model.mae.encoder = %ENCODER"]))


@pytest.mark.parametrize("name", _entries("masking.encoder") + _entries("masking.decoder"))
def test_masking_strategy_builds_from_its_gin_file_and_trains(name):
    kind, short = name.rsplit(".", 1)
    other = "gin/masking/decoder_random.gin" if kind == "masking.encoder" else "gin/masking/encoder_tube.gin"
    files = TINY_MAE + [other, GIN_FILE[kind](short)]
    plan = _forward_backward(_build_mae(files, ["model.mae.encoder = %ENCODER"]))
    assert plan.enc_keep_idx.shape[1] > 0 and plan.dec_target_idx.shape[1] > 0


@pytest.mark.parametrize("positions", ["sincos_3d", "sincos_1d", "learned"])
def test_positions_and_checkpointing_give_the_same_gradients(positions):
    torch.manual_seed(0)
    model = _build_mae(TINY_MAE + ["gin/masking/encoder_tube.gin", "gin/masking/decoder_all.gin"],
                       ["model.mae.encoder = %ENCODER", f"backbone.vit_tiny.positions = '{positions}'"])
    batch = _batch(model)
    grads = []
    for checkpointing in (False, True):
        model.encoder.set_grad_checkpointing(checkpointing)
        model.decoder.set_grad_checkpointing(checkpointing)
        model.zero_grad()
        model(batch, torch.Generator().manual_seed(0))[0]["loss"].backward()
        grads.append(model.encoder.patch_embed.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    learned = [n for n, _ in model.encoder.named_parameters() if n == "pos_embed"]
    assert learned == (["pos_embed"] if positions == "learned" else [])
    assert model.encoder.pos_embed.shape == (1, model.encoder.grid.n, model.encoder.dim)


def test_bf16_autocast_forward_backward():
    model = _build_mae(TINY_MAE + ["gin/masking/encoder_tube.gin", "gin/masking/decoder_random.gin"],
                       ["model.mae.encoder = %ENCODER"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses, _, _ = model(_batch(model), torch.Generator().manual_seed(0))
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])
    losses["loss"].backward()


def test_bad_position_choice_names_the_parameter():
    from lvmae.components.backbones.vit import VideoViT
    with pytest.raises(ValueError, match=r"backbone\.vit\.positions"):
        VideoViT(4, 32, (2, 16, 16), 64, 1, 4, positions="rope")


def test_resize_pos_embed_keeps_a_table_and_stretches_time():
    from lvmae.components.backbones.positions import resize_pos_embed
    from lvmae.components.masking.plan import TokenGrid
    old, longer = TokenGrid(2, 3, 3), TokenGrid(4, 3, 3)
    table = torch.randn(1, old.n, 8)
    assert torch.equal(resize_pos_embed(table, old, old), table)
    resized = resize_pos_embed(table, old, longer)
    assert resized.shape == (1, longer.n, 8)
    # constant over time stays constant; each spatial cell keeps its own vector
    flat = torch.randn(1, 1, 9, 8).expand(1, 2, 9, 8).reshape(1, 18, 8)
    assert torch.allclose(resize_pos_embed(flat, old, longer).reshape(1, 4, 9, 8)[:, 3], flat[:, :9], atol=1e-6)
    with pytest.raises(ValueError, match="positions"):
        resize_pos_embed(table, longer, old)

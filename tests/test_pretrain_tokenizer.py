"""``python run.py pretrain_tokenizer`` end to end on procedural clips: PSNR rises over the
first evaluation, reconstructions and score maps are attached, the checkpoint resumes and
rebuilds the frozen tokenizer + scorer."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from lvmae import registry
from lvmae.components.models.adaptive_tokenizer import rebuild_adaptive_tokenizer
from lvmae.experiments.engine.training import load_checkpoint

registry.discover()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, steps: int, *extra: str) -> dict:
    bindings = [f"pretrain_tokenizer_loop.workdir='{tmp_path / 'work'}'",
                f"pretrain_tokenizer_loop.steps={steps}", "pretrain_tokenizer_loop.batch_size=4",
                "pretrain_tokenizer_loop.eval_every=4", "pretrain_tokenizer_loop.eval_clips=4",
                "pretrain_tokenizer_loop.checkpoint_every=4", "pretrain_tokenizer_loop.lr=3e-3",
                # Less flicker: a handful of steps must visibly improve the reconstruction.
                "clips.flicker_square.noise_std=0.2", "tokenizer.magvit.base_channels=8"]
    command = [sys.executable, "run.py", "pretrain_tokenizer", "-g",
               "gin/experiments/tokenizer_flicker_cpu.gin"]
    for binding in bindings:
        command += ["-b", binding]
    command += [*extra, "with", "seed=5"]
    environment = dict(os.environ, LVMAE_RUNS_DIR=str(tmp_path / "runs"), OMP_NUM_THREADS="1")
    environment.pop("LVMAE_MONGO_URL", None)
    finished = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True,
                              timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    runs = sorted((tmp_path / "runs").iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1)
    run_dir = runs[-1]
    return {"dir": run_dir, "run": json.loads((run_dir / "run.json").read_text()),
            "info": json.loads((run_dir / "info.json").read_text())}


@pytest.mark.slow
def test_pretrain_tokenizer_learns_attaches_images_and_resumes(tmp_path):
    first = _run(tmp_path, steps=8)
    result = first["run"]["result"]
    assert result["last_eval"]["psnr"] > result["first_eval"]["psnr"]
    artifacts = set(first["run"]["artifacts"])
    assert {"reconstructions_step000000.png", "reconstructions_step000008.png",
            "scores_step000008.png", "operative_config.gin"} <= artifacts
    assert (first["dir"] / "reconstructions_step000008.png").read_bytes()[:4] == b"\x89PNG"

    resumed = _run(tmp_path, 12, "--resume-run", "1")     # the same run, trained further
    assert resumed["info"]["resumed_from_step"] == 8
    assert resumed["run"]["result"]["start_step"] == 8

    state = load_checkpoint(str(tmp_path / "work" / "tokenizer" / "last.pt"))
    assert state["step"] == 12
    frozen = rebuild_adaptive_tokenizer(state["tokenizer_config"], state["model"]).eval()
    video = torch.randn(1, 1, 16, 32, 32)
    latents, indices = frozen.tokenizer.encode(video)
    assert latents.shape == (1, 3, 8, 8, 8) and indices.shape == (1, 8, 8, 8)
    assert frozen.scorer(video).shape == (1, 8, 8, 8)

"""The LVMAE pipeline at CPU size through run.py, as scripts/demo.sh runs it (shrunk by
bindings): pretrain_tokenizer → precompute → pretrain (adaptive + tokenizer_latents) →
finetune, each a completed run; the adaptive plan on the written shards follows their scores."""
from __future__ import annotations

import json

import gin
import pytest

from lvmae import registry
from lvmae.components.data.formats.manifest import load_manifest
from lvmae.components.data.reading.loader import make_loader
from lvmae.components.data.reading.reader import ClipStream
from lvmae.experiments.engine import gin_config
from tests.cli import run_cli
from tests.test_precompute import assert_adaptive_plan_follows_scores

pytestmark = pytest.mark.slow
CPU = "gin/experiments/lvmae_cpu.gin"


def test_tokenizer_precompute_pretrain_finetune(tmp_path):
    # One root macro moves every output: tokenizer, precomputed shards, pretrain, finetune.
    runs, pre = tmp_path / "runs", tmp_path / "out" / "lvmae_cpu" / "precomputed"
    common = ["-g", CPU,
              "-b", f"dataset.synthetic_motion.root='{tmp_path / 'data'}'",
              "-b", "dataset.synthetic_motion.train_samples=16",
              "-b", "dataset.synthetic_motion.val_samples=8",
              "-b", "dataset.synthetic_motion.samples_per_shard=8",
              "-b", f"OUTPUTS='{tmp_path / 'out'}'"]
    stages = [
        ("pretrain_tokenizer", ["-b", "pretrain_tokenizer_loop.steps=2", "-b", "pretrain_tokenizer_loop.eval_every=1",
                                "-b", "pretrain_tokenizer_loop.eval_clips=4", "-b", "pretrain_tokenizer_loop.batch_size=4"]),
        ("precompute", []),
        ("pretrain", ["-b", "pretrain_loop.steps=3", "-b", "pretrain_loop.batch_size=4"]),
        ("finetune", ["-b", "finetune_loop.steps=2", "-b", "finetune_loop.batch_size=4"]),
    ]
    for run_id, (command, extra) in enumerate(stages, start=1):
        result = run_cli([command, *common, *extra], runs)
        assert result.returncode == 0, f"{command}: {result.stderr[-3000:]}"
        run = json.loads((runs / str(run_id) / "run.json").read_text())
        assert run["command"] == command and run["status"] == "COMPLETED"
    assert "precomputed ['indices', 'latents', 'scores'] on grid [8, 8, 8] for 24 clips" in \
        (runs / "2" / "cout.txt").read_text()
    metrics = json.loads((runs / "3" / "metrics.json").read_text())
    assert "train/loss" in metrics and "loaded" in (runs / "4" / "cout.txt").read_text()

    manifest = load_manifest(pre / "manifest.yaml")
    batch = next(iter(make_loader(ClipStream.from_manifest(manifest, "train", train=False), 4)))
    gin_config.parse([CPU], [])
    try:
        model = registry.build("model.mae")
    finally:
        gin.clear_config()
    assert_adaptive_plan_follows_scores(model, batch)

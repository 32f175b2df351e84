"""The tiny end-to-end job through run.py: pre-train → checkpoint → fine-tune, recorded by the
file observer with config (gin bindings), metrics and the operative gin config."""
from __future__ import annotations

import json

import pytest

from tests.cli import run_cli

pytestmark = pytest.mark.slow
TINY = "gin/experiments/tiny_cpu.gin"


def test_pretrain_then_finetune_records_both_runs(tmp_path):
    runs = tmp_path / "runs"
    common = ["-g", TINY,
              "-b", f"dataset.synthetic_motion.root='{tmp_path / 'data'}'",
              "-b", f"WORKDIR='{tmp_path / 'work'}'"]
    pretrain = run_cli(["pretrain", *common, "-b", "pretrain_loop.steps=60"], runs)
    assert pretrain.returncode == 0, pretrain.stderr[-3000:]
    checkpoint = tmp_path / "work" / "pretrain" / "last.pt"
    assert checkpoint.is_file()

    finetune = run_cli(["finetune", *common, "-b", "finetune_loop.steps=20",
                        "-b", f"finetune_loop.pretrained='{checkpoint}'"], runs)
    assert finetune.returncode == 0, finetune.stderr[-3000:]
    assert "loaded" in finetune.stdout and "encoder tensors" in finetune.stdout

    for run_id, command, operative_line in [
            ("1", "pretrain", "masking.encoder.tube.keep_ratio = 0.1"),
            ("2", "finetune", "model.classifier.head = @head.mean_linear")]:
        folder = runs / run_id
        run = json.loads((folder / "run.json").read_text())
        assert run["command"] == command and run["status"] == "COMPLETED"
        config = json.loads((folder / "config.json").read_text())
        assert config["gin"]["bindings"]["masking"]["encoder"]["tube"]["keep_ratio"] == 0.1
        assert config["gin"]["files"] == [TINY]
        assert "operative_config.gin" in run["artifacts"]
        operative = (folder / "operative_config.gin").read_text()
        assert operative_line in operative
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["train/loss"]["steps"][0] == 1
        assert "\r" not in (folder / "cout.txt").read_text()

    pre_metrics = json.loads((runs / "1" / "metrics.json").read_text())
    losses = pre_metrics["train/loss"]["values"]
    assert len(losses) == 7 and losses[-1] < losses[0]           # log_every 10 over 60 steps, + step 1
    assert {"train/lr", "eff/clips_per_s", "eff/data_wait_fraction", "health/effective_rank"} <= set(pre_metrics)
    top1 = json.loads((runs / "2" / "metrics.json").read_text())["eval/top1"]["values"]
    assert len(top1) == 1 and 0.0 <= top1[0] <= 1.0
    assert json.loads((runs / "2" / "info.json").read_text())["checkpoint"].endswith("finetune/2/last.pt")

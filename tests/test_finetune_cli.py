"""The fine-tuning commands through run.py, as a user runs them: pre-train at 16 frames →
fine-tune at 32 (positions rebuilt) with token drop, drop-path, layer decay and mixup →
evaluate multi-view → a 2-seed sweep → an attentive probe; each run recorded with its
metrics and artifacts."""
from __future__ import annotations

import json

import pytest

from tests.cli import run_cli

pytestmark = pytest.mark.slow
TINY = "gin/experiments/tiny_cpu.gin"


def run_json(runs, run_id: str, name: str):
    return json.loads((runs / run_id / name).read_text())


def test_pretrain_16_finetune_32_evaluate_seeds_probe(tmp_path):
    runs = tmp_path / "runs"
    small = ["-g", TINY, "-b", f"dataset.synthetic_motion.root='{tmp_path / 'data'}'",
             "-b", "dataset.synthetic_motion.train_samples=32",
             "-b", "dataset.synthetic_motion.val_samples=16",
             "-b", "dataset.synthetic_motion.samples_per_shard=16",
             "-b", f"WORKDIR='{tmp_path / 'work'}'"]
    pretrain = run_cli(["pretrain", *small, "-b", "pretrain_loop.steps=2",
                        "-b", "pretrain_loop.batch_size=8"], runs)
    assert pretrain.returncode == 0, pretrain.stderr[-3000:]
    checkpoint = tmp_path / "work" / "pretrain" / "last.pt"

    # 32 frames: the encoder's grid doubles in time; the dataset makes 32-frame clips.
    at_32 = [*small, "-b", "CLIP_FRAMES=32", "-b", f"finetune_loop.pretrained='{checkpoint}'"]
    finetune = run_cli(["finetune", *at_32, "-b", "finetune_loop.steps=2",
                        "-b", "finetune_loop.batch_size=8", "-b", "model.classifier.token_drop=0.25",
                        "-b", "model.classifier.drop_path=0.1", "-b", "finetune_loop.layer_decay=0.75",
                        "-b", "finetune_loop.mixup=@video_mixup()"], runs)
    assert finetune.returncode == 0, finetune.stderr[-3000:]
    assert "loaded" in finetune.stdout and "(lvmae)" in finetune.stdout
    metrics = run_json(runs, "2", "metrics.json")
    assert {"eval/top1", "eval/top5", "eval/mean_class", "eval/label/top1", "train/loss/label"} <= set(metrics)
    artifacts = run_json(runs, "2", "run.json")["artifacts"]
    assert {"predictions.csv", "confusion_label.png"} <= set(artifacts)
    predictions = (runs / "2" / "predictions.csv").read_text().splitlines()
    assert len(predictions) == 1 + 16 and predictions[0].startswith("key,label_label,label_pred")

    evaluate = run_cli(["evaluate", *at_32, "-b", "evaluate_loop.temporal_clips=2",
                        "-b", "evaluate_loop.spatial_crops=3"], runs)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert "6 view(s)" in evaluate.stdout
    assert (runs / "3" / "confusion_label.png").stat().st_size > 1000

    sweep = run_cli(["seeds", *small, "-b", f"finetune_loop.pretrained='{checkpoint}'",
                     "-b", "finetune_loop.steps=1", "-b", "finetune_loop.batch_size=8",
                     "-b", "seed_sweep.seeds=2", "-b", "seed_sweep.tag='sweep-test'",
                     "-b", f"seed_sweep.workdir='{tmp_path / 'seeds'}'"], runs)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert "eval/label/top1" in sweep.stdout and "±" in sweep.stdout
    for run_id, seed in [("4", 1), ("5", 2)]:
        assert run_json(runs, run_id, "config.json")["seed"] == seed
        assert run_json(runs, run_id, "run.json")["meta"]["comment"] == "sweep-test"
        assert run_json(runs, run_id, "run.json")["meta"]["tags"] == ["sweep-test"]
        assert run_json(runs, run_id, "info.json")["tag"] == "sweep-test"
    summary = json.loads((tmp_path / "seeds" / "sweep-test" / "summary.json").read_text())
    assert summary["runs"] == ["4", "5"] and summary["metrics"]["eval/label/top1"]["n"] == 2
    assert not (runs / "6").exists()                      # the sweep itself records no run

    probe = run_cli(["probe", *small, "-g", "gin/probes/attentive.gin", "-b", "probe_loop.steps=2",
                     "-b", f"probe_loop.pretrained='{checkpoint}'"], runs)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert "tokens features" in probe.stdout
    assert "eval/top1" in run_json(runs, "6", "metrics.json")

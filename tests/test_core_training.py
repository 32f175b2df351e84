"""The trainer: resume without drift (kill, resume, same weights and one metric series) and
multi-process DDP with torchrun (gloo on CPU)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from tests.cli import ROOT, run_cli

TINY = "gin/experiments/tiny_cpu.gin"
STEPS = 6


def _bindings(tmp_path, workdir: str) -> list[str]:
    small = ["CLIP_FRAMES = 4", "IMAGE_SIZE = 16", f"WORKDIR = '{tmp_path / workdir}'",
             f"dataset.synthetic_motion.root = '{tmp_path / 'data'}'",
             "dataset.synthetic_motion.square = 4", "dataset.synthetic_motion.train_samples = 64",
             "dataset.synthetic_motion.val_samples = 8", "dataset.synthetic_motion.samples_per_shard = 16",
             "pretrain_loop.batch_size = 4", f"pretrain_loop.steps = {STEPS}", "pretrain_loop.log_every = 1",
             "pretrain_loop.checkpoint_every = 2", "pretrain_loop.warmup_steps = 2",
             "pretrain_loop.shuffle_buffer = 16", "pretrain_loop.deterministic = True"]
    return [arg for binding in small for arg in ("-b", binding)]


def _run(tmp_path, workdir: str, runs: str, *extra: str) -> subprocess.CompletedProcess:
    return run_cli(["pretrain", "-g", TINY, *_bindings(tmp_path, workdir), *extra], tmp_path / runs,
                   env={"OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path):
    straight = _run(tmp_path, "straight", "runs_straight", "with", "seed=7")
    assert straight.returncode == 0, straight.stderr[-3000:]

    # dies after step 3; the last checkpoint is step 2, so step 3 is redone after resuming
    crashed = _run(tmp_path, "resumed", "runs_resumed", "-b", "pretrain_loop.exit_after_step = 3",
                   "with", "seed=7")
    assert crashed.returncode == 137, crashed.stderr[-3000:]
    assert torch.load(tmp_path / "resumed/pretrain/1/last.pt", weights_only=True)["step"] == 2
    assert not (tmp_path / "resumed/pretrain/last.pt").exists()      # published only when complete
    # Another run store (a new LVMAE_RUNS_DIR) numbers its runs from 1 again: its run 1 trains in a
    # folder of its own, leaves the killed run's checkpoint alone, and records where it trained.
    other = _run(tmp_path, "resumed", "runs_other", "-b", "pretrain_loop.steps = 1", "with", "seed=7")
    assert other.returncode == 0, other.stderr[-3000:]
    folder = json.loads((tmp_path / "runs_other/1/info.json").read_text())["run_folder"]
    assert os.path.basename(folder).startswith("1-") and os.path.isfile(os.path.join(folder, "last.pt"))
    assert torch.load(tmp_path / "resumed/pretrain/1/last.pt", weights_only=True)["step"] == 2
    resumed = _run(tmp_path, "resumed", "runs_resumed", "--resume-run", "1", "with", "seed=7")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout

    a = torch.load(tmp_path / "straight/pretrain/1/last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed/pretrain/last.pt", weights_only=True)   # the published link
    assert a["step"] == b["step"] == STEPS and a["micro_batches"] == b["micro_batches"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["scheduler"] == b["scheduler"]
    assert str(b["run_id"]) == "1"

    runs = sorted(os.listdir(tmp_path / "runs_resumed"))
    assert [r for r in runs if r.isdigit()] == ["1"]                 # one run, not two
    metrics = json.loads((tmp_path / "runs_resumed/1/metrics.json").read_text())
    reference = json.loads((tmp_path / "runs_straight/1/metrics.json").read_text())
    assert metrics["train/loss"]["steps"] == list(range(1, STEPS + 1))
    assert metrics["train/loss"]["values"] == reference["train/loss"]["values"]
    run = json.loads((tmp_path / "runs_resumed/1/run.json").read_text())
    assert run["status"] == "COMPLETED"
    info = json.loads((tmp_path / "runs_resumed/1/info.json").read_text())
    assert info["resumed_from_step"] == 2 and info["effective_batch_size"] == 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp2"])
def test_two_process_ddp_keeps_replicas_identical(tmp_path, parallel):
    bindings = [b for b in _bindings(tmp_path, "ddp")[1::2]
                if "deterministic" not in b and "steps" not in b] + \
               ["pretrain_loop.steps = 3", "pretrain_loop.accum_steps = 2"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               str(ROOT / "tests/ddp_pretrain_worker.py"), str(tmp_path), parallel, *bindings]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    initial = torch.load(tmp_path / "ddp/pretrain/last.pt", weights_only=True)
    assert initial["world_size"] == 2 and initial["step"] == 3 and len(initial["rng"]) == 2
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
        assert torch.equal(rank0[key], initial["model"][key]), key


@pytest.mark.slow
def test_finetune_kill_and_resume_equals_an_uninterrupted_run(tmp_path):
    def finetune(workdir: str, runs: str, *extra: str) -> subprocess.CompletedProcess:
        bindings = [b for b in _bindings(tmp_path, workdir)[1::2] if not b.startswith("pretrain_loop")] + \
            ["finetune_loop.pretrained = None", "finetune_loop.batch_size = 4", "finetune_loop.steps = 5",
             "finetune_loop.log_every = 1", "finetune_loop.checkpoint_every = 2", "finetune_loop.warmup_steps = 2",
             "finetune_loop.shuffle_buffer = 16", "finetune_loop.deterministic = True",
             "model.classifier.token_drop = 0.5", "finetune_loop.mixup = @video_mixup()"]
        return run_cli(["finetune", "-g", TINY, *[a for b in bindings for a in ("-b", b)], *extra],
                       tmp_path / runs, env={"OMP_NUM_THREADS": "1"})

    straight = finetune("straight", "runs_straight", "with", "seed=3")
    assert straight.returncode == 0, straight.stderr[-3000:]
    crashed = finetune("resumed", "runs_resumed", "-b", "finetune_loop.exit_after_step = 3", "with", "seed=3")
    assert crashed.returncode == 137, crashed.stderr[-3000:]
    resumed = finetune("resumed", "runs_resumed", "--resume-run", "1", "with", "seed=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    a = torch.load(tmp_path / "straight/finetune/1/last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed/finetune/1/last.pt", weights_only=True)
    assert a["step"] == b["step"] == 5 and a["micro_batches"] == b["micro_batches"] == 5
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    top1 = [json.loads((tmp_path / runs / "1/metrics.json").read_text())["eval/top1"]["values"][-1]
            for runs in ("runs_straight", "runs_resumed")]
    assert top1[0] == top1[1]

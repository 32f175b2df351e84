"""Preflight checks the data: a shard the manifest names that is missing or not the size the
manifest recorded stops the command before its run is recorded — exit status 2, one paragraph
naming the shard, no run in the store."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from test_data_pipeline import write_set

from lvmae.components.data.formats.manifest import load_manifest, save_manifest
from lvmae.components.data.formats.shard_index import record_shards, shard_problems
from lvmae.experiments.commands import cli
from tests.cli import run_cli

TINY = "gin/experiments/tiny_cpu.gin"


def _manifest(folder) -> str:
    clips = [(f"s{i}", np.full((16, 32, 32, 3), 10 * i, dtype=np.uint8), 16) for i in range(8)]
    path = write_set(folder, clips, per_shard=4)
    save_manifest(record_shards(load_manifest(path)), path)
    return path


def test_a_changed_shard_is_named_by_size_and_by_digest(tmp_path):
    path = _manifest(tmp_path / "set")
    shard = os.path.join(os.path.dirname(path), "train-000001.tar")
    assert shard_problems(load_manifest(path)) == []
    data = bytearray(Path(shard).read_bytes())
    data[700] ^= 0xFF                                    # same size, other bytes
    Path(shard).write_bytes(bytes(data))
    assert shard_problems(load_manifest(path)) == []     # size only (the preflight default)
    (problem,) = shard_problems(load_manifest(path), digests=True)
    assert shard in problem and "SHA-1" in problem
    Path(shard).write_bytes(bytes(data) + b"\0" * 512)
    (problem,) = shard_problems(load_manifest(path))
    assert shard in problem and "bytes" in problem


def test_a_missing_shard_stops_pretrain_in_preflight_and_records_nothing(tmp_path):
    path = _manifest(tmp_path / "set")
    missing = os.path.join(os.path.dirname(path), "train-000000.tar")
    os.remove(missing)
    runs = tmp_path / "runs"
    result = run_cli(["pretrain", "-g", TINY, "-b", "DATASET = @dataset.manifest()",
                      "-b", f"dataset.manifest.path = '{path}'", "-b", "pretrain_loop.steps = 1"],
                     runs, env={"LVMAE_OBSERVER": "file"})
    assert result.returncode == cli.PREFLIGHT_STATUS, result.stderr[-2000:]
    assert f"shard {missing} is missing" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 4, result.stderr
    assert not runs.exists() or not any(runs.glob("[0-9]*"))

"""No clip lost in silence: damaged shards while training and evaluating.

A destroyed member header mid-shard, a truncated tar and an mp4 with flipped bytes: every clip
the pipeline cannot read is counted once (however many passes and epochs meet it), under its
name (shard and key, or shard and byte range when the key is lost with its headers), recorded
in the run, and a training loader past ``max_skip_fraction`` stops naming them.
"""
from __future__ import annotations

import os
import shutil
import tarfile
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from test_data_pipeline import _FakeRun, write_set
from video_fixtures import moving_clip

from lvmae.components.data.decoding.codec import encode_mp4
from lvmae.components.data.formats.manifest import load_manifest, save_manifest
from lvmae.components.data.formats.shard_index import record_shards
from lvmae.components.data.reading.pipeline import DataLossError, DataPipeline, record_skips

SAMPLES, PER_SHARD = 16, 8
OPTIONS = dict(clip_frames=4, size=8, workers=0, shuffle_buffer=4)


def _indexed_set(folder) -> str:
    """16 npy clips in two shards, the manifest recording each shard's count, size and digest."""
    clips = [(f"s{i:02d}", np.full((6, 8, 8, 3), i, dtype=np.uint8), 6) for i in range(SAMPLES)]
    path = write_set(folder, clips, per_shard=PER_SHARD)
    save_manifest(record_shards(load_manifest(path)), path)
    return path


@pytest.fixture
def indexed(tmp_path):
    return _indexed_set(tmp_path / "set")


def _destroy_headers(shard: str, key: str) -> None:
    """Random bytes over every member header of ``key``: the sample is gone, key and all."""
    with tarfile.open(shard) as tar:
        headers = [(m.offset, m.offset_data) for m in tar if m.name.startswith(f"{key}.")]   # pax + ustar
    data = bytearray(Path(shard).read_bytes())
    rng = np.random.default_rng(0)
    for start, stop in headers:
        data[start:stop] = rng.integers(1, 255, stop - start, dtype=np.uint8).tobytes()
    Path(shard).write_bytes(bytes(data))


def _keys(loader, batches=None):
    return [k for batch in (loader if batches is None else islice(loader, batches)) for k in batch["key"]]


def test_a_destroyed_header_mid_shard_loses_one_sample_counted_and_named(indexed):
    shard = os.path.join(os.path.dirname(indexed), "train-000000.tar")
    _destroy_headers(shard, "s03")
    loader = DataPipeline(**OPTIONS).loader(indexed, "train", mode="eval", batch_size=4)
    keys = _keys(loader)
    # The samples after the damage are still read (tarfile alone would end the shard there).
    assert sorted(keys) == [f"s{i:02d}" for i in range(SAMPLES) if i != 3]
    assert loader.skipped == {"corrupt": 1, "short": 0}
    (name,) = loader.skipped_clips
    assert name == f"shard {shard}" and "bytes [" in loader.skipped_clips[name]["message"]
    assert "1 sample(s) lost with their keys (7 of the 8 samples the manifest lists read" \
        in loader.skipped_clips[name]["message"]


def test_training_counts_each_lost_clip_once_records_it_and_stops_past_the_threshold(indexed):
    shard = os.path.join(os.path.dirname(indexed), "train-000001.tar")
    data = Path(shard).read_bytes()
    Path(shard).write_bytes(data[: len(data) * 3 // 4])    # truncated: the last samples are gone
    accepting = DataPipeline(**OPTIONS, max_skip_fraction=0.5).loader(indexed, "train", batch_size=2, seed=0)
    keys = _keys(accepting, 30)                            # ≥ 4 epochs: the damage is met again and again
    lost = SAMPLES - len(set(keys))
    assert lost >= 1 and accepting.epoch >= 3
    assert accepting.skipped["corrupt"] == lost            # once, not once per pass or epoch
    run = _FakeRun()
    record_skips(run, accepting)
    assert run.info["data_skipped"]["corrupt"] == lost
    assert any(record["name"].startswith(f"shard {shard}") for record in run.artifacts["data_skipped.json"])
    strict = DataPipeline(**OPTIONS).loader(indexed, "train", batch_size=2, seed=0)    # default: 1%
    with pytest.raises(DataLossError, match=r"could not be read .*max_skip_fraction = 0\.01.*train-000001\.tar"):
        _keys(strict, 30)


def test_flipped_bytes_inside_an_mp4_are_counted_under_its_key(tmp_path):
    clips = [(f"m{i}", encode_mp4(moving_clip(16, 32, 32, seed=i), 25.0, gop=4), 16) for i in range(4)]
    damaged = bytearray(clips[2][1])
    rng = np.random.default_rng(1)
    for index in rng.choice(np.arange(len(damaged) // 8, len(damaged)), size=min(2000, len(damaged) // 2),
                            replace=False):
        damaged[int(index)] ^= 0xFF
    clips[2] = ("m2", bytes(damaged), 16)
    path = write_set(tmp_path / "mp4", clips, per_shard=4)
    loader = DataPipeline(clip_frames=4, size=16, workers=0).loader(path, "train", mode="eval", batch_size=2)
    assert sorted(_keys(loader)) == ["m0", "m1", "m3"]
    assert loader.skipped == {"corrupt": 1, "short": 0}
    assert list(loader.skipped_clips) == [f"shard {os.path.join(tmp_path, 'mp4', 'train-000000.tar')} sample m2"]


def test_a_shard_copied_short_of_samples_is_counted_from_the_manifests_count(indexed, tmp_path):
    """A shard that ends cleanly but holds fewer samples than written (e.g. rewritten by another
    tool): nothing in the tar is damaged, the manifest's count says what is missing."""
    folder = os.path.dirname(indexed)
    shard = os.path.join(folder, "train-000000.tar")
    shutil.move(shard, shard + ".old")
    with tarfile.open(shard + ".old") as old, tarfile.open(shard, "w") as new:
        for member in old:
            if not member.name.startswith(("s06.", "s07.")):
                new.addfile(member, old.extractfile(member))
    loader = DataPipeline(**OPTIONS).loader(indexed, "train", mode="eval", batch_size=4)
    assert len(_keys(loader)) == SAMPLES - 2 and loader.skipped["corrupt"] == 2


def test_a_pretrain_run_past_the_threshold_stops_and_records_the_loss(tmp_path):
    """Through run.py (default max_skip_fraction 1%): the run stops with the paragraph, and its
    record holds data_skipped and the data_skipped.json artifact naming the loss."""
    import json

    from tests.cli import run_cli
    clips = [(f"s{i:02d}", np.full((16, 32, 32, 3), 8 * i, dtype=np.uint8), 16) for i in range(SAMPLES)]
    path = write_set(tmp_path / "set", clips, per_shard=PER_SHARD)
    save_manifest(record_shards(load_manifest(path)), path)
    _destroy_headers(os.path.join(tmp_path, "set", "train-000000.tar"), "s03")
    runs = tmp_path / "runs"
    stopped = run_cli(["pretrain", "-g", "gin/experiments/tiny_cpu.gin", "-b", "DATASET = @dataset.manifest()",
                       "-b", f"dataset.manifest.path = '{path}'", "-b", f"WORKDIR = '{tmp_path / 'work'}'",
                       "-b", "pretrain_loop.steps = 40", "-b", "data_pipeline.workers = 1"],
                      runs, env={"LVMAE_OBSERVER": "file"})
    assert stopped.returncode != 0 and "DataLossError" in stopped.stderr, stopped.stderr[-3000:]
    assert "1 of its 16 clips could not be read" in stopped.stderr
    assert json.loads((runs / "1" / "run.json").read_text())["status"] == "FAILED"
    assert json.loads((runs / "1" / "info.json").read_text())["data_skipped"] == {"corrupt": 1, "short": 0}
    (record,) = json.loads((runs / "1" / "data_skipped.json").read_text())
    assert record["name"].endswith("train-000000.tar") and "lost with their keys" in record["message"]

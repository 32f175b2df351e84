"""Reader behaviour: corrupt-sample policy, rank × worker splitting, equal-length epochs, batch format."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from video_fixtures import moving_clip

from lvmae.components.data.decoding.codec import encode_mp4
from lvmae.components.data.formats.manifest import Manifest, Split, save_manifest
from lvmae.components.data.formats.schema import make_sample
from lvmae.components.data.reading.loader import make_loader
from lvmae.components.data.reading.reader import ClipStream, CorruptSampleError
from lvmae.components.data.writing.validate import validate_manifest
from lvmae.components.data.writing.writer import write_shards


def write_npy_shards(folder, samples: int, per_shard: int, frames: int = 8) -> str:
    def generate():
        for i in range(samples):
            clip = np.full((frames, 8, 8, 3), i % 256, dtype=np.uint8)
            yield make_sample(f"s{i:04d}", clip, {"label": i % 3, "aux": i % 2}, 25.0, frames, (8, 8))
    count = write_shards(generate(), str(folder), "train", per_shard)
    return str(folder / f"train-{{000000..{count - 1:06d}}}.tar")


def write_mp4_shard_with_truncated(folder, samples: int = 4, bad: int = 2) -> str:
    """One mp4 shard; sample ``bad`` holds the first half of its mp4 bytes only."""
    def generate():
        for i in range(samples):
            data = encode_mp4(moving_clip(16, 16, 16, seed=i), 25.0, gop=4)
            if i == bad:
                data = data[: len(data) // 2]
            yield make_sample(f"clip{i}", data, {"label": i % 2}, 25.0, 16, (16, 16))
    write_shards(generate(), str(folder), "train", samples)
    return str(folder / "train-000000.tar")


def test_truncated_mp4_is_skipped_and_counted(tmp_path, caplog):
    url = write_mp4_shard_with_truncated(tmp_path)
    stream = ClipStream(url, clip_frames=8, train=False, corrupt="skip")
    with caplog.at_level(logging.WARNING):
        keys = [k for batch in make_loader(stream, batch_size=2) for k in batch["key"]]
    assert sorted(keys) == ["clip0", "clip1", "clip3"]
    assert stream.skipped == 1
    assert any("clip2" in record.getMessage() and "1 so far" in record.getMessage() for record in caplog.records)


def test_truncated_mp4_fails_naming_shard_and_key(tmp_path):
    url = write_mp4_shard_with_truncated(tmp_path)
    stream = ClipStream(url, clip_frames=8, train=False, corrupt="fail")
    with pytest.raises(CorruptSampleError, match=r"train-000000\.tar sample clip2"):
        list(make_loader(stream, batch_size=2))


def test_skip_count_sums_over_workers(tmp_path):
    url = write_mp4_shard_with_truncated(tmp_path)
    stream = ClipStream(url, clip_frames=8, train=False, corrupt="skip")
    keys = [k for batch in make_loader(stream, batch_size=1, num_workers=2) for k in batch["key"]]
    assert sorted(keys) == ["clip0", "clip1", "clip3"] and stream.skipped == 1


def test_validate_names_the_truncated_sample(tmp_path):
    write_mp4_shard_with_truncated(tmp_path)
    save_manifest(Manifest(name="t", splits={"train": Split(shards="train-000000.tar", samples=4)},
                           heads={"label": ["a", "b"]}, codec="mp4"), tmp_path / "manifest.yaml")
    report = validate_manifest(str(tmp_path / "manifest.yaml"), progress=False)
    assert not report.ok
    assert len(report.problems) == 1 and "train-000000.tar sample clip2" in report.problems[0]


def test_truncated_tar_is_skipped(tmp_path):
    url = write_npy_shards(tmp_path, samples=6, per_shard=6)
    data = Path(url.replace("{000000..000000}", "000000")).read_bytes()
    path = tmp_path / "cut-000000.tar"
    path.write_bytes(data[: len(data) * 2 // 3])
    stream = ClipStream(str(path), train=False, corrupt="skip")
    keys = [k for batch in make_loader(stream, batch_size=2) for k in batch["key"]]
    assert 0 < len(keys) < 6 and stream.skipped >= 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shards,per_shard", [(6, 4), (1, 24)], ids=["more_shards_than_consumers", "one_shard"])
def test_two_ranks_two_workers_disjoint_and_covering(tmp_path, shards, per_shard):
    urls = write_npy_shards(tmp_path, samples=shards * per_shard, per_shard=per_shard)
    per_rank = []
    for rank in range(2):
        stream = ClipStream(urls, train=False, rank=rank, world_size=2)
        per_rank.append([k for b in make_loader(stream, batch_size=3, num_workers=2) for k in b["key"]])
    assert not set(per_rank[0]) & set(per_rank[1])
    for keys in per_rank:
        assert len(keys) == len(set(keys))
    assert sorted(per_rank[0] + per_rank[1]) == [f"s{i:04d}" for i in range(shards * per_shard)]


@pytest.mark.timeout(120)
def test_training_epochs_have_equal_length_per_rank(tmp_path):
    """3 unequal shards (10, 10, 3 samples) over 2 ranks × 2 workers: every rank yields the
    same number of samples — DDP stays in step."""
    urls = write_npy_shards(tmp_path, samples=23, per_shard=10)
    counts = []
    for rank in range(2):
        stream = ClipStream(urls, clip_frames=4, train=True, samples=23, rank=rank, world_size=2, seed=3)
        counts.append(sum(len(b["key"]) for b in make_loader(stream, batch_size=2, num_workers=2)))
    assert counts[0] == counts[1] == 2 * (23 // 4)


def test_batch_format_and_primary_head(tmp_path):
    urls = write_npy_shards(tmp_path, samples=4, per_shard=4)
    stream = ClipStream(urls, clip_frames=4, stride=2, train=True, samples=4, out_size=6, primary_head="aux")
    batch = next(iter(make_loader(stream, batch_size=4)))
    assert batch["video"].shape == (4, 3, 4, 6, 6) and batch["video"].dtype == torch.float32
    assert set(batch["labels"]) == {"label", "aux"}
    assert batch["labels"]["aux"].dtype == torch.long and torch.equal(batch["label"], batch["labels"]["aux"])
    assert len(batch["key"]) == 4


def test_training_shuffle_is_deterministic_by_seed_and_epoch(tmp_path):
    urls = write_npy_shards(tmp_path, samples=24, per_shard=4)

    def order(seed, epoch):
        stream = ClipStream(urls, train=True, samples=24, seed=seed, shuffle_buffer=8)
        stream.set_epoch(epoch)
        return [k for b in make_loader(stream, batch_size=4) for k in b["key"]]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1) and sorted(order(0, 0)) == sorted(order(0, 1))


def test_loader_normalises_in_main_process_like_per_item(tmp_path):
    """BatchLoader (uint8 from workers, normalised per batch, optionally after a device copy)
    gives the same batches as normalising each item."""
    urls = write_npy_shards(tmp_path, samples=6, per_shard=3)
    from lvmae.components.data.reading.augment import channels_first, normalise
    from lvmae.components.data.reading.reader import IMAGENET_MEAN, IMAGENET_STD
    for device, workers in [(None, 0), ("cpu", 2)]:
        stream = ClipStream(urls, clip_frames=4, train=False)
        batches = list(make_loader(stream, batch_size=3, num_workers=workers, device=device))
        raw = {r.key: r.clip[:4] for r in ClipStream(urls, train=False).raw_samples()}
        for batch in batches:
            expected = torch.stack([normalise(channels_first(raw[k]), IMAGENET_MEAN, IMAGENET_STD)
                                    for k in batch["key"]])
            assert batch["video"].dtype == torch.float32
            assert torch.allclose(batch["video"], expected, atol=1e-6)
        assert sum(len(b["key"]) for b in batches) == 6


def test_legacy_stream_batches_forward_clip_options(tmp_path):
    from lvmae.components.data.reading.batch_streams import repeat_batches, stream_batches
    urls = write_npy_shards(tmp_path, samples=5, per_shard=5, frames=8)
    full = next(stream_batches(urls, batch_size=5))
    assert full["video"].shape == (5, 3, 8, 8, 8) and set(full["labels"]) == {"label", "aux"}
    clipped = next(repeat_batches(urls, 2, shuffle_buffer=4, seed=0, clip_frames=4, stride=2))
    assert clipped["video"].shape == (2, 3, 4, 8, 8)


def test_streams_from_urls_webdataset_opens(tmp_path):
    """A `pipe:` command and a `file://` URL stream like a local path (remote stores work the
    same way through webdataset's openers)."""
    urls = write_npy_shards(tmp_path, samples=4, per_shard=4)
    path = urls.replace("{000000..000000}", "000000")
    for url in (f"pipe:cat {path}", f"file://{path}"):
        keys = [k for b in make_loader(ClipStream(url, train=False), batch_size=4) for k in b["key"]]
        assert keys == [f"s{i:04d}" for i in range(4)]
    manifest = Manifest(name="u", splits={"train": Split(shards=f"pipe:cat {path}", samples=4)})
    manifest.root = "/elsewhere"
    assert manifest.urls("train") == f"pipe:cat {path}"

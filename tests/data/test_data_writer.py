"""The shard writer: EPIC-style multi-head sets, resuming, option changes, precomputed fields,
and the run.py commands."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from lvmae.components.data.manifest import Manifest, Split, View, load_manifest, save_manifest
from lvmae.components.data.loader import make_loader
from lvmae.components.data.reader import ClipStream
from lvmae.components.data.schema import make_sample
from lvmae.components.data.shards import write_shards
from lvmae.components.data.validate import validate_manifest
from lvmae.components.data.writer import WriteOptions, write_split

from test_data_annotations import EPIC_HEADER

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def epic(tmp_path, video_folder):
    folder, write = video_folder
    write("P01/videos/P01_01.MP4", 60, fps=50.0, seed=1)
    write("P02_03.MP4", 40, fps=50.0, seed=2)          # flattened layout also found
    annotation = tmp_path / "EPIC_100_train.csv"
    rows = [("P01_01_0", "P01", "P01_01", 1, 30, "open", 3, "door", 8),
            ("P01_01_1", "P01", "P01_01", 31, 60, "close", 4, "door", 8),
            ("P02_03_0", "P02", "P02_03", 5, 40, "open", 3, "tap", 10)]
    annotation.write_text(EPIC_HEADER + "\n" + "".join(
        f"{n},{p},{v},00:00:01.00,00:00:01.00,00:00:02.00,{s},{e},{verb} {noun},{verb},{vc},{noun},{nc},['{noun}'],[{nc}]\n"
        for n, p, v, s, e, verb, vc, noun, nc in rows))
    return folder, str(annotation)


def test_epic_multi_head_batches(tmp_path, epic):
    folder, annotation = epic
    manifest = write_split(folder, annotation, "epic100", str(tmp_path / "shards"), "train",
                           options=WriteOptions(short_side=16, gop=8), samples_per_shard=2, progress=False)
    assert list(manifest.heads) == ["verb", "noun"] and manifest.primary_head == "verb"
    assert manifest.splits["train"].samples == 3 and manifest.fps == 50.0
    assert (manifest.splits["train"].frames.min, manifest.splits["train"].frames.max) == (30, 36)
    stream = ClipStream.from_manifest(manifest, "train", clip_frames=8, stride=2, train=False, out_size=16)
    batches = list(make_loader(stream, batch_size=3))
    batch = batches[0]
    assert batch["video"].shape == (3, 3, 8, 16, 16)
    by_key = dict(zip(batch["key"], zip(batch["labels"]["verb"].tolist(), batch["labels"]["noun"].tolist())))
    assert by_key == {"P01_01_0": (3, 8), "P01_01_1": (4, 8), "P02_03_0": (3, 10)}
    assert torch.equal(batch["label"], batch["labels"]["verb"])
    assert validate_manifest(os.path.join(tmp_path, "shards", "manifest.yaml"), progress=False).ok


def test_resume_rewrites_only_missing_shards(tmp_path, epic):
    folder, annotation = epic
    out = tmp_path / "shards"
    options = WriteOptions(short_side=16, gop=8)
    write_split(folder, annotation, "epic100", str(out), "train", options=options, samples_per_shard=1, progress=False)
    kept = out / "train-000000.tar"
    stamp = os.stat(kept).st_mtime_ns
    os.remove(out / "train-000001.tar")                 # as if the run had died while writing it
    (out / "train-000001.tar.tmp").write_bytes(b"half a shard")
    manifest = write_split(folder, annotation, "epic100", str(out), "train", options=options,
                           samples_per_shard=1, progress=False)
    assert os.stat(kept).st_mtime_ns == stamp
    assert (out / "train-000001.tar").exists() and manifest.splits["train"].samples == 3
    assert validate_manifest(str(out / "manifest.yaml"), progress=False).ok
    with pytest.raises(ValueError, match=r"train-000000\.tar was written with other options"):
        write_split(folder, annotation, "epic100", str(out), "train", options=WriteOptions(short_side=24),
                    samples_per_shard=1, progress=False)


def test_missing_video_is_skipped_or_fails_naming_it(tmp_path, video_folder):
    folder, write = video_folder
    write("a.mp4", 10)
    annotation = tmp_path / "train.csv"
    annotation.write_text("a.mp4,x\nghost.mp4,y\n")
    manifest = write_split(folder, str(annotation), "generic", str(tmp_path / "skip"), progress=False)
    assert manifest.splits["train"].samples == 1
    with pytest.raises(RuntimeError, match="ghost"):
        write_split(folder, str(annotation), "generic", str(tmp_path / "fail"), on_error="fail", progress=False)


def test_precomputed_grid_fields_follow_the_view(tmp_path):
    """Samples with latents/indices/scores: the reader decodes the view's frames and returns the
    grids cropped with the clip, batched on the token grid."""
    frames, size, grid = 12, 16, (2, 4, 4)
    view = View(frames=4, stride=2, start=3, grid=list(grid))

    def generate():
        for i in range(4):
            clip = np.zeros((frames, size, size, 3), dtype=np.uint8)
            clip[:, :, :, 0] = np.arange(frames)[:, None, None] * 10    # red = 10 · frame number
            yield make_sample(f"p{i}", clip, {"label": i % 2}, 25.0, frames, (size, size),
                              latents=np.random.default_rng(i).normal(size=(5, *grid)).astype(np.float32),
                              indices=np.arange(np.prod(grid)).reshape(grid),
                              scores=np.ones(grid, dtype=np.float32))
    write_shards(generate(), str(tmp_path), "train", 4)
    save_manifest(Manifest(name="pre", splits={"train": Split(shards="train-000000.tar", samples=4)},
                           heads={"label": ["a", "b"]}, fields=["latents", "indices", "scores"], view=view),
                  tmp_path / "manifest.yaml")
    manifest = load_manifest(tmp_path / "manifest.yaml")
    assert validate_manifest(str(tmp_path / "manifest.yaml"), progress=False).ok
    stream = ClipStream.from_manifest(manifest, "train", train=True, out_size=8, mean=(0, 0, 0), std=(1, 1, 1))
    batch = next(iter(make_loader(stream, batch_size=4)))
    assert batch["latents"].shape == (4, 5, *grid)
    assert batch["indices"].shape == (4, *grid) and batch["scores"].shape == (4, *grid)
    red = (batch["video"][:, 0, :, 0, 0] * 255 / 10).round().long()
    assert red.tolist() == [[3, 5, 7, 9]] * 4                   # view frames 3, 5, 7, 9
    with pytest.raises(ValueError, match="view"):
        ClipStream.from_manifest(manifest, "train", clip_frames=8)


@pytest.mark.slow
def test_run_py_write_and_validate_commands(tmp_path, video_folder):
    folder, write = video_folder
    write("a.mp4", 20)
    write("b.mp4", 24, seed=3)
    annotation = tmp_path / "train.csv"
    annotation.write_text("path,label\na.mp4,x\nb.mp4,y\n")
    out = tmp_path / "shards"
    job = "write_shards_job"
    command = [sys.executable, "run.py", "write_shards", "-u",
               "-b", f"{job}.video_root='{folder}'", "-b", f"{job}.annotations='{annotation}'",
               "-b", f"{job}.annotation_format='generic'", "-b", f"{job}.out_dir='{out}'"]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=300)
    assert load_manifest(out / "manifest.yaml").splits["train"].samples == 2
    validate = [sys.executable, "run.py", "validate_shards", "-u",
                "-b", f"validate_shards_job.manifest='{out / 'manifest.yaml'}'"]
    assert subprocess.run(validate, cwd=REPO, capture_output=True, timeout=300).returncode == 0
    shard = out / "train-000000.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) * 3 // 5])             # a shard cut short mid-sample
    failed = subprocess.run(validate, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0 and "train-000000.tar" in failed.stdout + failed.stderr


def test_manifest_dataset_reads_written_shards(tmp_path, video_folder):
    from lvmae import registry
    folder, write = video_folder
    write("a.mp4", 12)
    annotation = tmp_path / "train.csv"
    annotation.write_text("a.mp4,x\n")
    write_split(folder, str(annotation), "generic", str(tmp_path / "shards"), progress=False)
    manifest = registry.build("dataset.manifest", path=str(tmp_path / "shards" / "manifest.yaml")).prepare()
    assert manifest.splits["train"].samples == 1 and manifest.heads == {"label": ["x"]}
    with pytest.raises(FileNotFoundError, match="nowhere"):
        registry.build("dataset.manifest", path=str(tmp_path / "nowhere.yaml")).prepare()


def test_add_fields_writes_grids_the_reader_crops_with_the_clip(tmp_path, video_folder):
    from lvmae.components.data.fields import add_fields
    folder, write = video_folder
    write("a.mp4", 20)
    write("b.mp4", 24, seed=5)
    annotation = tmp_path / "train.csv"
    annotation.write_text("a.mp4,x\nb.mp4,y\n")
    write_split(folder, str(annotation), "generic", str(tmp_path / "plain"), samples_per_shard=1, progress=False)
    seen = []

    def compute(clip):          # (4, 32, 48, 3) → a (2, 4, 6) grid of 8-pixel cells, 2 frames each
        seen.append(clip.shape)
        cells = clip.reshape(2, 2, 4, 8, 6, 8, 3).mean(axis=(1, 3, 5, 6))
        return {"scores": cells.astype(np.float32), "indices": np.arange(48).reshape(2, 4, 6)}

    path = add_fields(str(tmp_path / "plain" / "manifest.yaml"), str(tmp_path / "tok"),
                      View(frames=4, stride=3, start=2), compute, progress=False).manifest
    assert seen == [(4, 32, 48, 3)] * 2
    manifest = load_manifest(path)
    assert manifest.fields == ["indices", "scores"] and manifest.view.grid == [2, 4, 6]
    assert validate_manifest(path, progress=False).ok
    batch = next(iter(make_loader(ClipStream.from_manifest(manifest, "train", train=True, out_size=16), 2)))
    assert batch["video"].shape == (2, 3, 4, 16, 16) and batch["indices"].shape == (2, 2, 4, 6)
    assert add_fields(str(tmp_path / "plain" / "manifest.yaml"), str(tmp_path / "tok"),
                      View(frames=4, stride=3, start=2), compute, progress=False).manifest == path
    assert len(seen) == 2                                   # rerun: finished shards are kept


def test_parallel_writer_matches_serial(tmp_path, epic):
    folder, annotation = epic
    options = WriteOptions(codec="npy", short_side=16)
    serial = write_split(folder, annotation, "epic100", str(tmp_path / "one"), options=options,
                         samples_per_shard=1, progress=False)
    parallel = write_split(folder, annotation, "epic100", str(tmp_path / "two"), options=options,
                           samples_per_shard=1, progress=False, workers=2)
    assert serial.splits == parallel.splits and serial.heads == parallel.heads
    for number in range(3):
        name = f"train-{number:06d}.tar"
        one = {r.key: r.clip for r in ClipStream(str(tmp_path / "one" / name), train=False).raw_samples()}
        two = {r.key: r.clip for r in ClipStream(str(tmp_path / "two" / name), train=False).raw_samples()}
        assert one.keys() == two.keys() and all(np.array_equal(one[k], two[k]) for k in one)

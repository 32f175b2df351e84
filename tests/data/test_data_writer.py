"""The shard writer: EPIC-style multi-head sets, resuming, option changes, precomputed fields,
and the run.py commands."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from video_fixtures import EPIC_HEADER

from lvmae.components.data.formats.manifest import Manifest, Split, View, load_manifest, save_manifest
from lvmae.components.data.formats.schema import make_sample
from lvmae.components.data.reading.loader import make_loader
from lvmae.components.data.reading.reader import ClipStream
from lvmae.components.data.writing.validate import validate_manifest
from lvmae.components.data.writing.writer import WriteOptions, write_dataset, write_shards, write_split

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
    assert not list(out.glob("*.tmp")) and not (out / ".replaced").exists()
    assert validate_manifest(str(out / "manifest.yaml"), progress=False).ok
    # Other options: every sample's fingerprint changes, every sample is written again.
    manifest = write_split(folder, annotation, "epic100", str(out), "train", options=WriteOptions(short_side=24),
                           samples_per_shard=1, progress=False)
    assert os.stat(kept).st_mtime_ns != stamp and manifest.short_side == 24
    assert validate_manifest(str(out / "manifest.yaml"), progress=False).ok


def _stored(folder) -> dict[str, dict]:
    """key → sample json of every sample in a folder's shards."""
    return {r.key: r.meta for tar in sorted(folder.glob("*.tar"))
            for r in ClipStream(str(tar), train=False).raw_samples()}


def test_rerun_reuses_exactly_the_unchanged_samples(tmp_path, video_folder, monkeypatch):
    """samples_per_shard changed: the manifest keeps all 4 samples, none re-encoded; labels
    swapped: exactly those two are rewritten; a replaced video: only its clip is."""
    from lvmae.components.data.writing import shard_files as writer
    folder, write = video_folder
    for i in range(4):
        write(f"v{i}.mp4", 12, seed=i)
    annotation = tmp_path / "train.csv"
    annotation.write_text("path,label\nv0.mp4,cat\nv1.mp4,dog\nv2.mp4,cat\nv3.mp4,dog\n")
    out = tmp_path / "shards"
    options = WriteOptions(short_side=16, gop=4)
    write_split(folder, str(annotation), "generic", str(out), options=options, samples_per_shard=3, progress=False)
    encoded = []
    real_encode = writer.encode_clip
    monkeypatch.setattr(writer, "encode_clip", lambda spec, *a, **k: encoded.append(spec.key) or real_encode(spec, *a, **k))
    manifest = write_split(folder, str(annotation), "generic", str(out), options=options, samples_per_shard=2,
                           progress=False)
    assert manifest.splits["train"].samples == 4 and encoded == []
    assert sorted(p.name for p in out.glob("*.tar")) == ["train-000000.tar", "train-000001.tar"]
    assert validate_manifest(str(out / "manifest.yaml"), progress=False).ok

    annotation.write_text("path,label\nv0.mp4,dog\nv1.mp4,cat\nv2.mp4,cat\nv3.mp4,dog\n")
    manifest = write_split(folder, str(annotation), "generic", str(out), options=options, samples_per_shard=2,
                           progress=False)
    assert sorted(encoded) == ["v0_0_end", "v1_0_end"]
    labels = {k: meta["labels"]["label"] for k, meta in _stored(out).items()}
    assert labels == {"v0_0_end": 1, "v1_0_end": 0, "v2_0_end": 0, "v3_0_end": 1}
    assert validate_manifest(str(out / "manifest.yaml"), progress=False).ok

    encoded.clear()
    write("v3.mp4", 10, seed=9)                          # the source replaced by another video
    manifest = write_split(folder, str(annotation), "generic", str(out), options=options, samples_per_shard=2,
                           progress=False)
    assert encoded == ["v3_0_end"] and _stored(out)["v3_0_end"]["num_frames"] == 10
    assert manifest.splits["train"].frames.min == 10


def test_validate_checks_fingerprints_and_names_a_damaged_tar(tmp_path, video_folder):
    import json
    import tarfile
    folder, write = video_folder
    for i in range(4):
        write(f"v{i}.mp4", 8, seed=i)
    annotation = tmp_path / "train.csv"
    annotation.write_text("".join(f"v{i}.mp4,c{i % 2}\n" for i in range(4)))
    out = tmp_path / "shards"
    write_split(folder, str(annotation), "generic", str(out), options=WriteOptions(codec="npy", short_side=8),
                samples_per_shard=4, progress=False)
    shard = out / "train-000000.tar"
    sidecar = json.loads((out / "train-000000.json").read_text())
    sidecar["entries"][1]["fingerprint"] = "0" * 20            # a sample that is not what its inputs write
    (out / "train-000000.json").write_text(json.dumps(sidecar))
    report = validate_manifest(str(out / "manifest.yaml"), progress=False)
    assert not report.ok and any("sample v1_0_end: fingerprint" in p for p in report.problems)
    assert any("fingerprints do not match the manifest" in p for p in report.problems)

    write_split(folder, str(annotation), "generic", str(out), options=WriteOptions(codec="npy", short_side=8),
                samples_per_shard=4, progress=False)        # the rerun repairs it
    assert validate_manifest(str(out / "manifest.yaml"), progress=False).ok
    with tarfile.open(shard) as tar:                           # break the header of sample 3's first member
        offset = next(m for m in tar.getmembers() if m.name.startswith("v2_0_end")).offset
    data = bytearray(shard.read_bytes())
    data[offset + 148: offset + 156] = b"garbage!"            # the header checksum
    shard.write_bytes(bytes(data))
    report = validate_manifest(str(out / "manifest.yaml"), progress=False)
    damaged = [p for p in report.problems if "damaged tar" in p]
    assert len(damaged) == 1 and "train-000000.tar" in damaged[0]
    assert "2 sample(s) readable of the 4 its sidecar lists" in damaged[0] and "v2_0_end" in damaged[0]


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
    from lvmae.components.data.writing.fields import add_fields
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


def test_add_fields_on_chosen_splits_writes_a_manifest_of_those_alone(tmp_path, video_folder):
    # Fields for the train split only: the new manifest must not name the val split's shards,
    # which were never written (a reader's preflight would refuse the whole manifest).
    from lvmae.components.data.writing.fields import add_fields
    folder, write = video_folder
    write("a.mp4", 20)
    annotation = tmp_path / "a.csv"
    annotation.write_text("a.mp4,x\n")
    write_dataset(folder, {"train": str(annotation), "val": str(annotation)}, "generic", str(tmp_path / "plain"),
                  samples_per_shard=1, progress=False)
    path = add_fields(str(tmp_path / "plain" / "manifest.yaml"), str(tmp_path / "tok"), View(frames=4),
                      lambda clip: {"scores": np.zeros((1, 2, 2), np.float32)}, splits=["train"],
                      progress=False).manifest
    assert list(load_manifest(path).splits) == ["train"] and validate_manifest(path, progress=False).ok
    assert list(load_manifest(str(tmp_path / "plain" / "manifest.yaml")).splits) == ["train", "val"]


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


def _real_frames(real_videos, frames: int, short_side: int = 48) -> np.ndarray:
    from lvmae.components.data.decoding.codec import read_video_file
    clip, _ = read_video_file(os.path.join(real_videos, "bikes.mp4"), short_side, None, 0, None, frames)
    return clip


@pytest.mark.parametrize("container,codec,options", [("mp4", "libx264", {"movflags": "faststart"}),
                                                     ("avi", "mpeg4", None)])
def test_half_truncated_real_video_is_skipped_or_fails(tmp_path, real_videos, container, codec, options):
    """Index first (mp4 faststart) or a frame count in the header (avi): the container declares
    120 frames, half the bytes decode to fewer — skipped with a reason, or an error naming it."""
    from video_fixtures import cut_file, write_container

    from lvmae.components.data.writing.writer import WriteError
    videos = tmp_path / "videos"
    videos.mkdir()
    frames = _real_frames(real_videos, 120)
    write_container(str(videos / f"whole.{container}"), frames, 25.0, container, codec, options)
    cut_file(write_container(str(videos / f"half.{container}"), frames, 25.0, container, codec, options), 0.5)
    annotation = tmp_path / "train.csv"
    annotation.write_text(f"path,label\nwhole.{container},a\nhalf.{container},b\n")
    manifest = write_split(str(videos), str(annotation), "generic", str(tmp_path / "skip"),
                           options=WriteOptions(short_side=32), progress=False)
    summary = manifest.splits["train"].summary
    assert (summary.written, summary.skipped) == (1, {"truncated": 1}) and summary.frames == 120
    with pytest.raises(WriteError, match=rf"line 3: clip half_0_end \(half\.{container}\): decoded \d+ of the 120"):
        write_split(str(videos), str(annotation), "generic", str(tmp_path / "fail"), on_error="fail", progress=False)
    assert not list((tmp_path / "fail").glob("*.tmp"))


def test_range_past_the_end_is_checked_and_the_stored_range_is_real(tmp_path, video_folder):
    """EPIC row [8, 202] (1-based) of a 200-frame video: within the tolerance the json says
    [7, 200), the frames stored; with no tolerance it is skipped. Diving48 [20, 300) of a
    60-frame video is far past the end: skipped, never 40 frames silently."""
    import json

    from video_fixtures import EPIC_HEADER
    folder, write = video_folder
    write("P01/videos/P01_01.MP4", 200, fps=50.0)
    write("dive.mp4", 60)
    annotation = tmp_path / "EPIC_100_train.csv"
    annotation.write_text(EPIC_HEADER + "\nP01_01_0,P01,P01_01,0,0,0,8,202,open door,open,3,door,8,[],[]\n")
    manifest = write_split(folder, str(annotation), "epic100", str(tmp_path / "epic"),
                           options=WriteOptions(codec="npy", short_side=16), progress=False)
    meta = _stored(tmp_path / "epic")["P01_01_0"]
    assert meta["frames"] == [7, 200] and meta["num_frames"] == 193 == manifest.splits["train"].frames.max
    from lvmae.components.data.writing.writer import WriteError
    with pytest.raises(WriteError, match=r"every clip was skipped \({'range_past_end': 1}\)"):
        write_split(folder, str(annotation), "epic100", str(tmp_path / "strict"),
                    options=WriteOptions(codec="npy", frame_tolerance=0.0), progress=False)
    dive = tmp_path / "Diving48_train.json"
    dive.write_text(json.dumps([{"vid_name": "dive", "label": 0, "start_frame": 20, "end_frame": 300}]))
    with pytest.raises(WriteError, match=r"ends 240 frames past the source's 60"):
        write_split(folder, str(dive), "diving48", str(tmp_path / "dive"), on_error="fail", progress=False)
    assert not (tmp_path / "dive").exists()              # checked before anything was written


def test_fail_leaves_no_tmp_and_names_the_clip(tmp_path, video_folder, monkeypatch):
    """A clip that fails while encoding (after the sources looked fine) under on_error='fail'."""
    from lvmae.components.data.writing import shard_files as writer
    folder, write = video_folder
    write("a.mp4", 8)
    write("b.mp4", 8, seed=1)
    annotation = tmp_path / "train.csv"
    annotation.write_text("a.mp4,x\nb.mp4,y\n")

    def broken(spec, *args, **kwargs):
        raise writer._Skip("undecodable", "decoder gave up")
    monkeypatch.setattr(writer, "encode_clip", broken)
    with pytest.raises(writer.WriteError, match=r"train\.csv line 1: clip a_0_end \(a\.mp4\): decoder gave up"):
        write_split(folder, str(annotation), "generic", str(tmp_path / "out"), on_error="fail", progress=False)
    assert os.listdir(tmp_path / "out") == []


def test_image_folders_and_npy_arrays_are_sources(tmp_path, video_folder):
    import av
    from video_fixtures import moving_clip
    folder, _ = video_folder
    clip = moving_clip(6, seed=4)
    np.save(os.path.join(folder, "array.npy"), clip)
    os.makedirs(os.path.join(folder, "frames"))
    for t, frame in enumerate(clip):
        av.VideoFrame.from_ndarray(frame, format="rgb24").to_image().save(os.path.join(folder, "frames", f"{t:05d}.png"))
    annotation = tmp_path / "train.csv"
    annotation.write_text("path,label,start,end\narray,x,1,5\nframes,y,0,6\n")
    from lvmae.components.data.writing.writer import WriteError
    with pytest.raises(WriteError, match="sequence_fps"):
        write_split(folder, str(annotation), "generic", str(tmp_path / "none"), on_error="fail", progress=False)
    manifest = write_split(folder, str(annotation), "generic", str(tmp_path / "out"),
                           options=WriteOptions(codec="npy", sequence_fps=30.0), progress=False)
    assert manifest.splits["train"].samples == 2 and manifest.fps == 30.0
    stored = {r.key: r for r in ClipStream(str(tmp_path / "out" / "train-000000.tar"), train=False).raw_samples()}
    assert np.array_equal(stored["array_1_5"].clip, clip[1:5])          # npy: bit-exact
    assert np.array_equal(stored["frames_0_6"].clip, clip)               # png: lossless
    assert validate_manifest(str(tmp_path / "out" / "manifest.yaml"), progress=False).ok


def test_a_later_split_must_fit_the_manifest_vocabulary(tmp_path, video_folder):
    from lvmae.components.data.writing.annotations import AnnotationError
    folder, write = video_folder
    write("a.mp4", 8)
    write("b.mp4", 8, seed=1)
    train, val = tmp_path / "train.csv", tmp_path / "val.csv"
    train.write_text("a.mp4,run\nb.mp4,jump\n")
    val.write_text("b.mp4,swim\n")
    out = tmp_path / "shards"
    options = WriteOptions(codec="npy", short_side=8)
    write_split(folder, str(train), "generic", str(out), options=options, progress=False)
    with pytest.raises(AnnotationError, match=r"val\.csv line 1: label class 'swim' is not in the vocabulary "
                                              r"from the existing manifest.*write every split in one run"):
        write_split(folder, str(val), "generic", str(out), split="val", options=options, progress=False)
    assert not list(out.glob("val-*"))                   # refused before encoding: no orphan shards
    val.write_text("b.mp4,run\n")
    from lvmae.components.data.writing.writer import WriteError
    with pytest.raises(WriteError, match="one folder holds one storage format"):
        write_split(folder, str(val), "generic", str(out), split="val", progress=False,
                    options=WriteOptions(codec="npy", short_side=16))
    manifest = write_split(folder, str(val), "generic", str(out), split="val", options=options, progress=False)
    assert manifest.heads == {"label": ["jump", "run"]} and manifest.splits["val"].samples == 1
    val.write_text("b.mp4,swim\n")
    manifest = write_dataset(folder, {"train": str(train), "val": str(val)}, "generic", str(out),
                             options=options, progress=False)
    assert manifest.heads == {"label": ["jump", "run", "swim"]}
    assert validate_manifest(str(out / "manifest.yaml"), progress=False).ok


@pytest.mark.slow
def test_run_py_fail_is_one_message_and_skips_are_summarised(tmp_path, video_folder):
    """on_error='fail': non-zero exit, one message naming the clip, no traceback, no .tmp;
    a skipping run prints the summary and stores it in the manifest."""
    folder, write = video_folder
    write("a.mp4", 20)
    annotation = tmp_path / "train.csv"
    annotation.write_text("path,label\na.mp4,x\nghost.mp4,y\n")
    out = tmp_path / "shards"
    job = "write_shards_job"
    command = [sys.executable, "run.py", "write_shards", "-u",
               "-b", f"{job}.video_root='{folder}'", "-b", f"{job}.annotations='{annotation}'",
               "-b", f"{job}.annotation_format='generic'", "-b", f"{job}.out_dir='{out}'",
               "-b", f"{job}.codec='npy'", "-b", f"{job}.short_side=16", "-b", f"{job}.on_error='fail'"]
    failed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    text = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "Traceback" not in text and "KeyError" not in text
    assert "train.csv line 3: clip ghost_0_end (ghost.mp4): video 'ghost.mp4' not found" in text
    assert not out.exists() or not list(out.rglob("*.tmp"))
    done = subprocess.run(command[:-2], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "train: 1 written, skipped: 1 missing_source; 20 frames, 0.000 h of video" in done.stdout
    summary = load_manifest(out / "manifest.yaml").splits["train"].summary
    assert (summary.written, summary.skipped, summary.frames) == (1, {"missing_source": 1}, 20)
    assert summary.hours == pytest.approx(20 / 25 / 3600, rel=1e-3)


def test_oracle_ceiling_on_a_written_manifest(tmp_path, video_folder):
    """Events from a generic CSV are stored in stored-frame numbers; the manifest dataset's
    oracle ceiling (and run.py oracle_ceiling) uses them like the procedural sets'."""
    from lvmae import registry
    from lvmae.experiments.commands.data_commands import oracle_ceiling_job
    folder, write = video_folder
    write("a.mp4", 40)
    write("b.mp4", 40, seed=1)
    annotation = tmp_path / "train.csv"
    annotation.write_text("path,label,start,end,events\na.mp4,x,8,40,8-10;38-40\nb.mp4,y,0,40,0-2;30-32\n")
    out = tmp_path / "shards"
    write_split(folder, str(annotation), "generic", str(out), options=WriteOptions(codec="npy", short_side=8),
                progress=False)
    assert {k: m["events"] for k, m in _stored(out).items()} == {"a_8_40": [[0, 2], [30, 32]],
                                                                  "b_0_40": [[0, 2], [30, 32]]}
    dataset = registry.build("dataset.manifest", path=str(out / "manifest.yaml"))
    # a: 32 stored frames, one 32-frame window, sees both; b: 40 frames, 9 windows, 2 start early enough.
    whole = dataset.oracle_ceiling(32, 1)
    assert whole["seen_fraction"] == pytest.approx((1 + 2 / 9) / 2)
    assert whole["ceiling"] == pytest.approx(whole["seen_fraction"] + (1 - whole["seen_fraction"]) / 2)
    half = dataset.oracle_ceiling(16, 1)                  # 16 frames never span frames 0..31
    assert half["seen_fraction"] == 0.0 and half["ceiling"] == half["chance"] == 0.5
    table = oracle_ceiling_job(dataset=dataset, samplers=[(16, 2)], clips=10)
    assert table["16x2"]["seen_fraction"] == pytest.approx((1 + 2 / 10) / 2)
    annotation.write_text("a.mp4,x\n")
    write_split(folder, str(annotation), "generic", str(tmp_path / "plain"), progress=False)
    with pytest.raises(ValueError, match="no sample carries an oracle field 'events'"):
        registry.build("dataset.manifest", path=str(tmp_path / "plain" / "manifest.yaml")).oracle_ceiling(8)


def _readme_data_commands() -> list[str]:
    """The shell commands of the README's data section, continuation lines joined."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    section = text[text.index("## Data\n"):]
    block = section[section.index("```bash\n") + 8: section.index("```\n", section.index("```bash\n") + 8)]
    return [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip() and not c.startswith("#")]


@pytest.mark.slow
def test_readme_data_section_verbatim(tmp_path, real_videos):
    """The README's data section in a folder of mixed real videos (mp4, avi, webm, JPEG
    sequence) with EPIC-100-format annotations: write_shards and validate_shards verbatim,
    then its pretrain line (cut to 2 steps here)."""
    from video_fixtures import write_epic_folder
    if not os.path.isdir(os.path.join(REPO, ".venv")):
        pytest.skip("the README's commands call .venv/bin/python (scripts/setup.sh makes it)")
    write_epic_folder(str(tmp_path))
    for name in ("run.py", ".venv"):
        os.symlink(os.path.join(REPO, name), tmp_path / name)
    commands = _readme_data_commands()
    assert len(commands) == 3 and "run.py pretrain" in commands[2]
    os.symlink(os.path.join(REPO, "gin"), tmp_path / "gin")
    train, commands = commands[2] + ' -b "pretrain_loop.steps=2"', commands[:2]
    for command in commands:
        done = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    manifest = load_manifest(tmp_path / "data" / "mine" / "manifest.yaml")
    assert (manifest.splits["train"].samples, manifest.splits["val"].samples) == (5, 2)
    files = {**os.environ, "LVMAE_OBSERVER": "file", "LVMAE_RUNS_DIR": str(tmp_path / "runs")}   # no database
    trained = subprocess.run(train, shell=True, cwd=tmp_path, env=files, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    assert manifest.heads["verb"] == ["take", "put-down", "open"] and manifest.heads["noun"][3] == "bike"


def test_a_run_that_dies_mid_rewrite_keeps_the_old_samples_reusable(tmp_path, video_folder, monkeypatch):
    """Killed while rewriting: no manifest entry describes the half-written split, and the
    next run (inputs back as before) copies the old samples instead of encoding them."""
    from lvmae.components.data.writing import shard_files as writer
    folder, write = video_folder
    for i in range(4):
        write(f"v{i}.mp4", 8, seed=i)
    annotation = tmp_path / "train.csv"
    annotation.write_text("".join(f"v{i}.mp4,c{i % 2}\n" for i in range(4)))
    out = tmp_path / "shards"
    options = WriteOptions(codec="npy", short_side=8)
    write_split(folder, str(annotation), "generic", str(out), options=options, samples_per_shard=1, progress=False)
    real_encode, encoded = writer.encode_clip, []

    def dies_on_the_second(spec, *args, **kwargs):
        encoded.append(spec.key)
        if len(encoded) == 2:
            raise KeyboardInterrupt
        return real_encode(spec, *args, **kwargs)
    monkeypatch.setattr(writer, "encode_clip", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        write_split(folder, str(annotation), "generic", str(out), options=WriteOptions(codec="npy", short_side=16),
                    samples_per_shard=1, progress=False)
    assert "train" not in load_manifest(out / "manifest.yaml").splits and not list(out.glob("*.tmp"))
    encoded.clear()
    manifest = write_split(folder, str(annotation), "generic", str(out), options=options, samples_per_shard=1,
                           progress=False)
    assert encoded == [] and manifest.splits["train"].samples == 4 and not (out / ".replaced").exists()
    assert validate_manifest(str(out / "manifest.yaml"), progress=False).ok


def test_validate_refuses_an_empty_split(tmp_path):
    save_manifest(Manifest(name="empty", splits={"train": Split(shards="train-000000.tar", samples=0)},
                           heads={"label": ["a"]}), tmp_path / "manifest.yaml")
    import tarfile
    with tarfile.open(tmp_path / "train-000000.tar", "w"):
        pass
    report = validate_manifest(str(tmp_path / "manifest.yaml"), progress=False)
    assert not report.ok and report.problems == ["split train: no samples"]


def test_validate_sources_recomputes_fingerprints(tmp_path, video_folder):
    """validate_shards sources=True: shards older than their inputs are reported, by key."""
    folder, write = video_folder
    write("a.mp4", 8)
    write("b.mp4", 8, seed=1)
    annotation = tmp_path / "train.csv"
    annotation.write_text("path,label\na.mp4,x\nb.mp4,y\nghost.mp4,y\n")
    out = tmp_path / "shards"
    write_split(folder, str(annotation), "generic", str(out), options=WriteOptions(codec="npy", short_side=8),
                progress=False)
    manifest_path = str(out / "manifest.yaml")
    assert validate_manifest(manifest_path, progress=False, sources=True).ok     # the skipped ghost is no problem
    annotation.write_text("path,label\na.mp4,y\nb.mp4,y\nghost.mp4,y\nc.mp4,x\n")
    write("b.mp4", 9, seed=2)
    problems = validate_manifest(manifest_path, progress=False, sources=True).problems
    assert problems == [("split train: 2 sample(s) no longer match their inputs (source, range, labels or options "
                        "changed since writing: a_0_end, b_0_end); rerun write_shards"),
                        "split train: 1 annotated clip(s) not in the shards (c_0_end); rerun write_shards"]
    assert validate_manifest(manifest_path, progress=False).ok       # without sources: the shards are consistent


@pytest.mark.slow
def test_parallel_fail_leaves_no_tmp(tmp_path, real_videos):
    """A truncation found while encoding in a worker process, on_error='fail': the error names
    the clip, the pool stops, no shard is left half-written."""
    from video_fixtures import cut_file, write_container

    from lvmae.components.data.writing.writer import WriteError
    videos = tmp_path / "videos"
    videos.mkdir()
    frames = _real_frames(real_videos, 120)
    for name in ("a", "b", "c"):
        write_container(str(videos / f"{name}.mp4"), frames, 25.0, "mp4", "libx264", {"movflags": "faststart"})
    cut_file(str(videos / "b.mp4"), 0.5)
    annotation = tmp_path / "train.csv"
    annotation.write_text("a.mp4,x\nb.mp4,y\nc.mp4,x\n")
    out = tmp_path / "out"
    with pytest.raises(WriteError, match=r"clip b_0_end \(b\.mp4\): decoded"):
        write_split(str(videos), str(annotation), "generic", str(out), options=WriteOptions(short_side=32),
                    samples_per_shard=1, on_error="fail", progress=False, workers=2)
    assert not list(out.glob("*.tmp"))

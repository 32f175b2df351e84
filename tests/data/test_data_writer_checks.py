"""The writer verifies what it reuses and leaves nothing half-done: a rerun rewrites a damaged
shard, image-sequence folders are read in frame-number order (or refused when ambiguous), an
all-invalid write leaves no shard, and a byte-truncated source is reported as truncation."""
from __future__ import annotations

import os
import tarfile

import av
import numpy as np
import pytest
from video_fixtures import cut_file, moving_clip, write_container

from lvmae.components.data.formats.manifest import load_manifest
from lvmae.components.data.formats.shard_index import ShardCheckError, check_shards
from lvmae.components.data.reading.reader import ClipStream
from lvmae.components.data.writing.validate import validate_manifest
from lvmae.components.data.writing.writer import WriteError, WriteOptions, write_split

NPY = WriteOptions(codec="npy", short_side=16)


def _csv(path, rows: list[tuple[str, str]]) -> str:
    path.write_text("path,label\n" + "".join(f"{video},{label}\n" for video, label in rows))
    return str(path)


def test_a_rerun_rewrites_a_damaged_shard_so_that_validate_passes(tmp_path, video_folder):
    folder, write = video_folder
    for i in range(4):
        write(f"v{i}.mp4", 12, seed=i)
    annotation = _csv(tmp_path / "train.csv", [(f"v{i}.mp4", "ab"[i % 2]) for i in range(4)])
    out = tmp_path / "shards"
    write_split(folder, annotation, "generic", str(out), options=NPY, samples_per_shard=4, progress=False)
    shard = out / "train-000000.tar"
    original = shard.read_bytes()
    with tarfile.open(shard) as tar:
        member = [m for m in tar][3]                 # a member header in the middle of the shard
    damaged = bytearray(original)
    damaged[member.offset:member.offset_data] = bytes(range(1, 256)) * 2 + bytes(member.offset_data - member.offset - 510)
    shard.write_bytes(bytes(damaged))
    assert not validate_manifest(str(out / "manifest.yaml"), progress=False).ok
    with pytest.raises(ShardCheckError, match="train-000000.tar"):
        check_shards(load_manifest(out / "manifest.yaml"), digests=True)
    manifest = write_split(folder, annotation, "generic", str(out), options=NPY, samples_per_shard=4, progress=False)
    assert manifest.splits["train"].summary.written == 4
    assert validate_manifest(str(out / "manifest.yaml"), progress=False).ok
    assert shard.read_bytes() == original            # the same inputs give the same bytes again


def _write_pngs(folder, names_and_values: dict[str, int]) -> None:
    os.makedirs(folder)
    for name, value in names_and_values.items():
        with av.open(os.path.join(folder, name), "w", format="image2", options={"update": "1"}) as handle:
            stream = handle.add_stream("png")
            stream.width, stream.height, stream.pix_fmt = 16, 16, "rgb24"
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), value, np.uint8), format="rgb24")
            handle.mux(stream.encode(frame))
            handle.mux(stream.encode())


def test_image_sequences_follow_frame_numbers_or_are_refused(tmp_path):
    videos = tmp_path / "videos"
    _write_pngs(str(videos / "numbered"), {f"{i}.png": 10 * i for i in range(12)})     # 0 … 11
    _write_pngs(str(videos / "ambiguous"), {"1.png": 0, "01.png": 10, "2.png": 20})
    annotation = _csv(tmp_path / "train.csv", [("numbered", "a"), ("ambiguous", "b")])
    options = WriteOptions(codec="npy", sequence_fps=10.0)
    manifest = write_split(str(videos), annotation, "generic", str(tmp_path / "out"), options=options,
                           progress=False)
    assert manifest.splits["train"].summary.skipped == {"ambiguous_frame_order": 1}
    (sample,) = ClipStream(manifest.urls("train"), train=False).raw_samples()
    assert sample.clip[:, 0, 0, 0].tolist() == [10 * i for i in range(12)]
    with pytest.raises(WriteError, match=r"ambiguous.*ambiguous: the same frame number twice \(01\.png, 1\.png\)"):
        write_split(str(videos), annotation, "generic", str(tmp_path / "fail"), options=options,
                    on_error="fail", progress=False)


def test_an_all_invalid_write_leaves_nothing_behind(tmp_path, video_folder):
    folder, _ = video_folder
    annotation = _csv(tmp_path / "train.csv", [("absent_a.mp4", "a"), ("absent_b.mp4", "b")])
    out = tmp_path / "out"
    with pytest.raises(WriteError, match="nothing was left behind"):
        write_split(folder, annotation, "generic", str(out), options=NPY, progress=False)
    assert not out.exists()


def test_a_byte_truncated_source_is_reported_as_truncation(tmp_path):
    """Frames of a clip past the point where the file was cut: 'truncated', not 'empty_range'."""
    videos = tmp_path / "videos"
    videos.mkdir()
    cut_file(write_container(str(videos / "cut.mp4"), moving_clip(120, 32, 48), 25.0, "mp4", "libx264",
                             {"movflags": "faststart"}), 0.6)       # index first: it still opens
    annotation = tmp_path / "train.csv"
    annotation.write_text("path,label,start,end\ncut.mp4,a,0,20\ncut.mp4,b,100,120\n")
    manifest = write_split(str(videos), str(annotation), "generic", str(tmp_path / "out"), options=NPY,
                           progress=False)
    assert manifest.splits["train"].summary.skipped == {"truncated": 1}

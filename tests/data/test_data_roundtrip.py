"""Real video files → shards → reader: npy frames identical, mp4 ≥ 35 dB, labels and meta intact."""
from __future__ import annotations

import os
import shutil

import av
import numpy as np
import pytest

from lvmae.components.data.decoding.codec import read_video_file
from lvmae.components.data.reading.loader import make_loader
from lvmae.components.data.reading.reader import ClipStream
from lvmae.components.data.writing.writer import WriteOptions, write_split

MIN_PSNR_DB = 35.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def decode_all(path: str) -> np.ndarray:
    """Every frame of a file, decoded independently of the project's code."""
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def raw_samples(urls: str) -> dict:
    """key → (uint8 frames, json meta) with every stored frame, in file order."""
    stream = ClipStream(urls, train=False)
    return {raw.key: (stream.decode_frames(raw, np.random.default_rng(0)), raw.meta)
            for raw in stream.raw_samples()}


@pytest.fixture
def annotated(tmp_path, real_videos):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("carphone_pristine.mp4", "bikes.mp4"):
        shutil.copy(os.path.join(real_videos, name), videos / name)
    annotation = tmp_path / "train.csv"
    annotation.write_text("path,label,start,end\ncarphone_pristine.mp4,phone,10,100\nbikes.mp4,bike,30,90\n")
    return str(videos), str(annotation)


@pytest.mark.parametrize("codec", ["npy", "mp4"])
def test_real_video_round_trip(tmp_path, annotated, codec):
    videos, annotation = annotated
    manifest = write_split(videos, annotation, "generic", str(tmp_path / "shards"), "train",
                           options=WriteOptions(codec=codec, gop=16), samples_per_shard=1, progress=False)
    assert manifest.splits["train"].samples == 2 and manifest.codec == codec
    assert manifest.heads == {"label": ["bike", "phone"]}
    assert (manifest.splits["train"].frames.min, manifest.splits["train"].frames.max) == (60, 90)
    samples = raw_samples(manifest.urls("train"))
    for key, name, (start, stop), label in [("carphone_pristine_10_100", "carphone_pristine.mp4", (10, 100), 1),
                                            ("bikes_30_90", "bikes.mp4", (30, 90), 0)]:
        frames, meta = samples[key]
        source = decode_all(os.path.join(videos, name))[start:stop]
        assert frames.shape == source.shape
        if codec == "npy":
            assert np.array_equal(frames, source)
        else:
            assert psnr(frames, source) >= MIN_PSNR_DB
        assert meta["labels"] == {"label": label} and meta["frames"] == [start, stop]
        assert meta["source"] == name and meta["num_frames"] == stop - start
        assert meta["size"] == list(source.shape[1:3])


def test_sampled_clip_matches_source_frames(tmp_path, annotated):
    """Centred 16 frames at stride 3 from the stream are the right source frames (seek + stride)."""
    videos, annotation = annotated
    manifest = write_split(videos, annotation, "generic", str(tmp_path / "shards"), "train",
                           options=WriteOptions(codec="mp4", gop=8), samples_per_shard=2, progress=False)
    stream = ClipStream(manifest.urls("train"), clip_frames=16, stride=3, train=False,
                        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    batch = next(b for b in make_loader(stream, batch_size=1) if b["key"] == ["carphone_pristine_10_100"])
    assert batch["video"].shape == (1, 3, 16, 144, 176)
    source = decode_all(os.path.join(videos, "carphone_pristine.mp4"))[10:100]
    first = (90 - 46) // 2                       # span = 15·3 + 1 = 46, centred
    expected = source[first:first + 46:3]
    got = (batch["video"][0].permute(1, 2, 3, 0).numpy() * 255).round().astype(np.uint8)
    assert psnr(got, expected) >= MIN_PSNR_DB
    assert batch["labels"] == {"label": batch["label"]} and batch["label"].tolist() == [1]


def test_resized_resampled_write(tmp_path, annotated):
    """Short side, fps and max-frames options: stored clips have the asked shape and rate."""
    videos, annotation = annotated
    manifest = write_split(videos, annotation, "generic", str(tmp_path / "shards"), "train",
                           options=WriteOptions(codec="mp4", short_side=64, fps=10, max_frames=20),
                           samples_per_shard=2, progress=False)
    samples = raw_samples(manifest.urls("train"))
    frames, meta = samples["bikes_30_90"]
    assert frames.shape[1] == 64 and frames.shape[0] == meta["num_frames"] <= 20 and meta["fps"] == 10
    reference, _ = read_video_file(os.path.join(videos, "bikes.mp4"), 64, 10, 30, 90, 20)
    assert psnr(frames, reference) >= MIN_PSNR_DB


@pytest.mark.parametrize("name", ["carphone_pristine.mp4", "bikes.mp4"])
def test_reading_late_ranges_seeks_to_the_same_frames(real_videos, name):
    """Ranges far into a video are read by seeking (codec.SEEK_AFTER_FRAMES) and must give the
    very frames a decode from the start gives."""
    path = os.path.join(real_videos, name)
    source = decode_all(path)
    for start, stop in [(70, 100), (100, None), (65, 66), (len(source) - 1, None)]:
        frames, _ = read_video_file(path, start_frame=start, stop_frame=stop)
        assert np.array_equal(frames, source[start:stop])
    frames, _ = read_video_file(path, start_frame=80, max_frames=12)
    assert np.array_equal(frames, source[80:92])

"""The real-footage arrow-of-time task: forward/backward pairs, disjoint train/validation frames,
clear errors."""
from __future__ import annotations

import glob
import io
import json
import os
import tarfile

import numpy as np
import pytest

from lvmae.components.data.datasets.arrow_of_time import ArrowOfTime, ArrowOfTimeWindows
from lvmae.components.kit import check_dataset


def _samples(folder: str, split: str) -> dict[str, tuple[np.ndarray, dict]]:
    """key → (clip, json) of every sample in ``split``'s shards."""
    parts: dict[str, dict] = {}
    for shard in sorted(glob.glob(os.path.join(folder, f"{split}-*.tar"))):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                parts.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return {key: (np.load(io.BytesIO(p["npy"])), json.loads(p["json"])) for key, p in parts.items()}


def test_every_window_comes_forwards_and_reversed(video_folder, tmp_path):
    folder, write = video_folder
    write("a.mp4", 90)
    write("b.mp4", 60, seed=1)
    dataset = ArrowOfTime(root=str(tmp_path / "data"), videos=folder, clip_frames=8, frame_stride=2,
                          image_size=16, train_windows=12, val_windows=6, samples_per_shard=8)
    check_dataset(dataset)               # the plugin kit's dataset contract (writes the shards)
    manifest = dataset.prepare()
    assert manifest.heads == {"label": ["forward", "backward"]}
    assert (manifest.splits["train"].samples, manifest.splits["val"].samples) == (24, 12)
    for split, windows in (("train", 12), ("val", 6)):
        samples = _samples(dataset.folder, split)
        assert len(samples) == 2 * windows
        for key, (clip, meta) in samples.items():
            if key.endswith("_forward"):
                backward, backward_meta = samples[key[: -len("forward")] + "backward"]
                assert clip.shape == (8, 16, 16, 3) and clip.dtype == np.uint8
                assert np.array_equal(backward, clip[::-1])        # same pixels, opposite order
                assert (meta["label"], backward_meta["label"]) == (0, 1)
                assert not np.array_equal(clip[0], clip[-1])       # the footage moves
    # Written once: a second prepare reuses the shards; another parameter writes elsewhere.
    assert dataset.prepare().root == manifest.root
    other = ArrowOfTime(root=str(tmp_path / "data"), videos=folder, clip_frames=8, frame_stride=1,
                        image_size=16, train_windows=12, val_windows=6)
    assert other.folder != dataset.folder


def test_validation_windows_never_share_frames_with_training(video_folder):
    _folder, write = video_folder
    paths = [write("a.mp4", 100), write("b.mp4", 61, seed=1)]
    windows = ArrowOfTimeWindows(paths, clip_frames=6, frame_stride=3, val_fraction=0.3)
    assert windows.span == 16
    for (train_lo, train_hi), (val_lo, val_hi), frames in zip(windows.ranges["train"], windows.ranges["val"], (100, 61)):
        boundary = round(frames * 0.7)
        assert train_lo == 0 and train_hi - 1 + windows.span <= boundary      # last training window ends before
        assert val_lo == boundary and val_hi - 1 + windows.span <= frames     # validation starts at the boundary


def test_real_footage_by_default(real_videos, tmp_path):
    dataset = ArrowOfTime(root=str(tmp_path / "data"), train_windows=4, val_windows=2)
    assert [os.path.basename(p) for p in dataset.paths] == ["bikes.mp4", "carphone_pristine.mp4"]
    samples = _samples(dataset.prepare().root, "val")
    assert len(samples) == 4 and {m["source"] for _, m in samples.values()} <= {"bikes.mp4", "carphone_pristine.mp4"}


def test_bad_input_names_the_parameter(video_folder, tmp_path):
    folder, write = video_folder
    with pytest.raises(ValueError, match="videos: no video files"):
        ArrowOfTime(root=str(tmp_path), videos=str(tmp_path))
    with pytest.raises(ValueError, match="no such file"):
        ArrowOfTime(root=str(tmp_path), videos=[str(tmp_path / "missing.mp4")])
    with pytest.raises(ValueError, match="crop_scale"):
        ArrowOfTime(root=str(tmp_path), videos=folder, crop_scale=(0.0, 1.0))
    short = write("short.mp4", 30)
    with pytest.raises(ValueError, match=r"short\.mp4 has 30 frames; its train part .* shorter than one window"):
        ArrowOfTime(root=str(tmp_path / "data"), videos=[short], clip_frames=16, frame_stride=2).prepare()

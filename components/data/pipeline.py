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

Batches follow the cross-team contract of components/data/loader.py, plus ``views``:

    {"video": float (b·v, c, t, h, w), "views": v, "label": long (b,), "labels": {head: (b,)},
     "key": list[str] (b)}  + optional "latents" (b, d, t', h', w'), "indices"/"scores" (b, t', h', w')

``v`` is 1 in training; in evaluation the v = temporal_views · spatial_views views of sample i
are rows i·v … i·v + v − 1 (average the model's outputs over them).

Order and resumption: consumers (rank × worker, components/data/splitting.py) read disjoint
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
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from typing import Literal

import gin
import numpy as np
import torch
from webdataset.shardlists import expand_urls

from lvmae import registry
from lvmae.components.data.augment import SpatialAugment, crop_resize, normalise, short_side_boxes
from lvmae.components.data.base import Dataset
from lvmae.components.data.codec import CorruptVideoError, VideoDecoder
from lvmae.components.data.label_safety import UnsafeAugmentationError
from lvmae.components.data.loader import to_device
from lvmae.components.data.manifest import Manifest, View, load_manifest
from lvmae.components.data.reader import IMAGENET_MEAN, IMAGENET_STD, CorruptSampleError, raw_stream
from lvmae.components.data.schema import RawSample, SampleError
from lvmae.components.data.shard_index import expected_samples
from lvmae.components.data.splitting import Consumer, consumer_share, epoch_quota
from lvmae.components.data.temporal import SHORT_POLICIES, ShortClipError, ShortPolicy, TemporalSampler

Mode = Literal["train", "eval"]
MODES = ("train", "eval")
CorruptPolicy = Literal["skip", "fail"]
CORRUPT_POLICIES = ("skip", "fail")
# Why a sample gave no clip: undecodable/truncated bytes or tar, or shorter than the window
# under short_policy="skip".
SKIP_REASONS = ("corrupt", "short")
# Batch entries the workers add for the main process (removed before a batch is yielded).
_POSITION, _SKIPS, _REPORT = "_position", "_skips", "_report"
STATE_VERSION = 1
# Unreadable clips a training run accepts, as a fraction of the split (data_pipeline.max_skip_fraction).
DEFAULT_MAX_SKIP_FRACTION = 0.01
# Skipped clips named in a DataLossError's message.
NAMED_IN_MESSAGE = 3
log = logging.getLogger(__name__)


class EmptyPipelineError(ValueError):
    """The pipeline would yield no batch; names the manifest and why."""


class DataLossError(RuntimeError):
    """A training loader lost more clips than ``max_skip_fraction`` allows; names them."""


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


@gin.configurable("data_pipeline")
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
        it (components/data/label_safety.py); ``scale`` = (1, 1) turns the random crop off.
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
        from lvmae.components.data.mixture import MixedManifest  # pylint: disable=import-outside-toplevel
        if isinstance(manifest, MixedManifest):      # dataset.mixture: one loader per source
            from lvmae.components.data.mixture_loader import MixtureLoader  # pylint: disable=import-outside-toplevel
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


def collate(items: list[dict]) -> dict:
    """Items → one batch (uint8 video (b·v, c, t, h, w))."""
    heads = items[0]["labels"].keys()
    video = torch.cat([item["video"] for item in items])
    batch = {"key": [item["key"] for item in items], "video": video, "views": items[0]["video"].shape[0],
             "label": torch.tensor([item["label"] for item in items], dtype=torch.long),
             "labels": {h: torch.tensor([item["labels"].get(h, -1) for item in items], dtype=torch.long)
                        for h in heads}}
    for name in ("latents", "indices", "scores"):
        if name in items[0]:
            batch[name] = torch.stack([item[name] for item in items])
    return batch


@dataclasses.dataclass
class Position:
    """Where one consumer is: epoch, samples of this epoch's order passed (cursor) and batches
    yielded in this epoch."""
    epoch: int = 0
    cursor: int = 0
    batches: int = 0


class _Stream(torch.utils.data.IterableDataset):
    """The worker side: one consumer's batches, epoch after epoch (training) or one pass."""

    def __init__(self, pipeline: DataPipeline, shards: list[str], loader: PipelineLoader,
                 positions: dict[int, Position], rotation: int):
        super().__init__()
        self.pipeline, self.shards, self.positions, self.rotation = pipeline, shards, positions, rotation
        self.mode, self.batch_size, self.seed = loader.mode, loader.batch_size, loader.seed
        self.rank, self.world_size, self.samples = loader.rank, loader.world_size, loader.samples
        self.primary_head, self.batches_per_epoch = loader.primary_head, loader.batches_per_epoch
        self.where, self.expected = loader.where, loader.expected
        self.view = loader.manifest.view if loader.manifest.fields else None
        self._pending: list[dict] = []     # skipped clips not yet sent to the main process
        self._known: set[str] = set()      # every clip this worker has skipped (never decoded again)

    def consumer(self) -> Consumer:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # Rotation: after resuming at batch k, DataLoader worker 0 must play the worker whose
        # batch is next (k mod workers), so the round-robin continues where it stopped.
        return Consumer(self.rank, self.world_size, (worker + self.rotation) % workers, workers)

    def _order(self, consumer: Consumer, epoch: int) -> Iterator[RawSample | Exception]:
        """This consumer's samples for one epoch, in its order (training: passes over its share,
        each shuffled through a buffer seeded by (seed, epoch, consumer, pass)); nothing decoded."""
        passes = range(10 ** 9) if self.mode == "train" else range(1)
        for pass_number in passes:
            order_seed = self.seed * 100_003 + epoch * 1_009 + pass_number if self.mode == "train" else None
            share = consumer_share(self.shards, consumer, order_seed)
            stream = raw_stream(share.shards, share.sample_residue, share.sample_modulus, self.expected)
            if self.mode != "train" or self.pipeline.shuffle_buffer <= 1:
                yield from stream
                yield None      # end of a pass
                continue
            rng = np.random.default_rng([self.seed, epoch, consumer.index, pass_number, 1])
            buffer: list = []
            for item in stream:
                if isinstance(item, Exception):
                    yield item
                    continue
                buffer.append(item)
                if len(buffer) >= self.pipeline.shuffle_buffer:
                    yield buffer.pop(int(rng.integers(len(buffer))))
            while buffer:
                yield buffer.pop(int(rng.integers(len(buffer))))
            yield None

    def __iter__(self) -> Iterator[dict]:
        consumer = self.consumer()
        position = dataclasses.replace(self.positions.get(consumer.index, Position()))
        while True:
            yield from self._epoch(consumer, position)
            if self.mode != "train":
                yield {_REPORT: consumer.index, _SKIPS: self._take()}
                return
            position = Position(position.epoch + 1)

    def _skip(self, epoch: int, reason: str, error: Exception, where: str, count: int = 1) -> None:
        """Counts a clip once under its name; later sightings (another pass or epoch) are not."""
        if self.pipeline.corrupt == "fail" and reason == "corrupt":
            raise CorruptSampleError(f"{where}: {error}") from error
        if where in self._known:
            return
        self._known.add(where)
        self._pending.append({"name": where, "reason": reason, "count": int(count), "epoch": int(epoch),
                              "message": str(error)})

    def _take(self) -> list[dict]:
        pending, self._pending = self._pending, []
        return pending

    def _epoch(self, consumer: Consumer, position: Position) -> Iterator[dict]:
        epoch, items = position.epoch, []
        if self.mode == "train" and position.batches >= self.batches_per_epoch:
            return
        cursor, usable_in_pass = 0, 0
        for entry in self._order(consumer, epoch):
            if entry is None:          # a pass over the consumer's share has ended
                if usable_in_pass == 0 and self.mode == "train":
                    raise EmptyPipelineError(
                        f"{self.where}: reader {consumer.index} of {consumer.count} got no usable "
                        f"sample from its shards ({len(self.shards)} in all; skipped: "
                        f"{sorted(self._known)[:NAMED_IN_MESSAGE]}{' …' if len(self._known) > NAMED_IN_MESSAGE else ''})")
                usable_in_pass = 0
                continue
            if isinstance(entry, Exception):
                if cursor >= position.cursor:    # a resumed consumer counted it before
                    self._skip(epoch, "corrupt", entry, getattr(entry, "where", None) or str(entry)[:200],
                               getattr(entry, "count", 1))
                continue
            cursor += 1
            if cursor <= position.cursor:        # consumed before the checkpoint: not decoded
                usable_in_pass += 1
                continue
            where = f"shard {entry.shard} sample {entry.key}"
            if where in self._known:             # skipped before: not decoded again
                continue
            rng = np.random.default_rng([self.seed, epoch, consumer.index, cursor])
            try:
                items.append(self.pipeline.item(entry, self.mode, rng, self.primary_head, self.view))
            except ShortClipError as error:
                self._skip(epoch, "short", error, where)
                continue
            except (CorruptVideoError, SampleError, ValueError) as error:
                self._skip(epoch, "corrupt", error, where)
                continue
            usable_in_pass += 1
            if len(items) == self.batch_size:
                position = Position(epoch, cursor, position.batches + 1)
                yield self._batch(items, consumer, position)
                items = []
                if self.mode == "train" and position.batches >= self.batches_per_epoch:
                    return
        if items:      # evaluation: the last, smaller batch
            yield self._batch(items, consumer, Position(epoch, cursor, position.batches + 1))

    def _batch(self, items: list[dict], consumer: Consumer, position: Position) -> dict:
        batch = collate(items)
        batch[_POSITION] = (consumer.index, dataclasses.asdict(position))
        batch[_SKIPS] = self._take()    # the clips skipped while this batch was gathered
        return batch


class PipelineLoader:
    """Batches of one split; ``state_dict``/``load_state_dict`` hold the data position and the
    skip counts. Iterating a training loader again continues where the last batch left off."""

    def __init__(self, pipeline: DataPipeline, manifest: Manifest, split: str, mode: Mode, batch_size: int,
                 seed: int, rank: int, world_size: int, device):
        if mode not in MODES:
            raise ValueError(f"loader mode must be one of {MODES}, got {mode!r}")
        if batch_size < 1:
            raise ValueError(f"loader batch_size must be ≥ 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"loader rank must be in [0, world_size), got rank={rank} world_size={world_size}")
        self.where = f"manifest {os.path.join(manifest.root, 'manifest.yaml')} split {split!r}"
        self.pipeline, self.manifest, self.split, self.mode = pipeline, manifest, split, mode
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.device = torch.device(device) if device is not None else None
        self.shards = expand_urls(manifest.urls(split))
        if not self.shards:
            raise EmptyPipelineError(f"{self.where}: the shard pattern names no shard")
        self.samples = manifest.splits[split].samples
        self.expected = expected_samples(manifest, split)     # shard → samples it should hold
        self.primary_head = manifest.primary_head
        self.workers = pipeline.workers
        self.consumers = world_size * max(1, self.workers)
        quota = epoch_quota(self.samples, Consumer(rank, world_size, 0, max(1, self.workers)))
        if mode == "train" and self.samples < self.consumers:
            raise EmptyPipelineError(
                f"{self.where}: {self.samples} samples cannot feed {self.consumers} readers "
                f"({world_size} ranks × {max(1, self.workers)} workers): some would read nothing; "
                f"lower data_pipeline.workers")
        # A split smaller than batch × readers still trains: each reader wraps around its share
        # (samples repeat within an epoch of one batch per reader).
        self.batches_per_epoch = max(1, quota // batch_size)
        if mode == "train" and quota < batch_size:
            log.warning("%s: %d samples over %d readers give %d each, fewer than batch_size=%d: samples "
                        "repeat within each batch", self.where, self.samples, self.consumers, quota, batch_size)
        if mode == "train" and manifest.fields and pipeline.clip_frames != manifest.view.frames:
            raise ValueError(f"{self.where}: precomputed fields hold for {manifest.view.frames}-frame "
                             f"clips; data_pipeline.clip_frames is {pipeline.clip_frames}")
        self.positions: dict[int, Position] = {}
        self.batches = 0
        self.skipped_clips: dict[str, dict] = {}    # name → {reason, count, epoch, message}
        self.on_data_loss = None    # called before DataLossError is raised (e.g. to record the run)
        self._loader = None

    # -- state ----------------------------------------------------------------------------------
    @property
    def skipped(self) -> dict[str, int]:
        """Clips skipped so far, by reason, each counted once (this rank, every worker)."""
        total = dict.fromkeys(SKIP_REASONS, 0)
        for record in self.skipped_clips.values():
            total[record["reason"]] += record["count"]
        return total

    @property
    def skips_by_epoch(self) -> dict[int, dict[str, int]]:
        """{epoch: {reason: count}}: clips by the epoch they were first skipped in."""
        out: dict[int, dict[str, int]] = {}
        for record in self.skipped_clips.values():
            row = out.setdefault(int(record["epoch"]), dict.fromkeys(SKIP_REASONS, 0))
            row[record["reason"]] += record["count"]
        return dict(sorted(out.items()))

    def _receive(self, records: list[dict]) -> None:
        """Skipped clips a worker reports with a batch: logged and counted once; a training
        loader past ``max_skip_fraction`` stops."""
        for record in records:
            if record["name"] in self.skipped_clips:
                continue
            self.skipped_clips[record["name"]] = record
            log.warning("skipped %s clip (%d of this reason so far): %s: %s", record["reason"],
                        self.skipped[record["reason"]], record["name"], record["message"])
        lost = self.skipped["corrupt"]
        if self.mode != "train" or lost <= self.pipeline.max_skip_fraction * self.samples:
            return
        if self.on_data_loss is not None:
            self.on_data_loss()
        names = [n for n, r in self.skipped_clips.items() if r["reason"] == "corrupt"]
        raise DataLossError(
            f"{self.where}: {lost} of its {self.samples} clips could not be read ({lost / self.samples:.1%}, more "
            f"than {self.pipeline.gin_name}.max_skip_fraction = {self.pipeline.max_skip_fraction}), so training "
            f"stops rather than train on less data than the manifest lists. First: "
            f"{'; '.join(names[:NAMED_IN_MESSAGE])}{' …' if len(names) > NAMED_IN_MESSAGE else ''}. "
            f"validate_shards names every damaged sample; a write_shards rerun rewrites damaged shards; "
            f"binding a larger max_skip_fraction accepts the loss.")

    @property
    def epoch(self) -> int:
        """The earliest epoch a consumer of this rank is still in (training)."""
        return min((p.epoch for p in self.positions.values()), default=0)

    def _identity(self) -> dict:
        return {"seed": self.seed, "batch_size": self.batch_size, "world_size": self.world_size,
                "workers": max(1, self.workers), "samples": self.samples, "mode": self.mode}

    def state_dict(self) -> dict:
        """The data position of this rank: plain values (safe in any checkpoint)."""
        return {"version": STATE_VERSION, **self._identity(), "batches": self.batches,
                "positions": {int(c): dataclasses.asdict(p) for c, p in self.positions.items()},
                "skipped_clips": [dict(r) for r in self.skipped_clips.values()]}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``; the layout (seed, batch size, ranks, workers, samples) must
        match, since the order derives from it."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"data position version {state.get('version')!r} is not {STATE_VERSION}")
        saved = {k: state.get(k) for k in self._identity()}
        if saved != self._identity():
            raise ValueError(f"cannot resume the data position of {self.where}: it was saved with "
                             f"{saved}, this loader has {self._identity()}")
        workers = max(1, self.workers)
        mine = range(self.rank * workers, (self.rank + 1) * workers)
        self.batches = int(state["batches"])
        self.positions = {int(c): Position(**p) for c, p in state["positions"].items() if int(c) in mine}
        self.skipped_clips = {r["name"]: dict(r) for r in state.get("skipped_clips", [])}
        missing = [c for c in mine if c not in self.positions]
        if self.batches and missing:
            # Another rank's state (not merged): derive this rank's positions from the batch
            # count — worker w delivered batches w, w + W, …; exact when no sample was skipped.
            log.warning("%s: the data position holds no readers of rank %d (save merge_states of "
                        "every rank's state); derived from the batch count", self.where, self.rank)
            for consumer in missing:
                worker = consumer - self.rank * workers
                delivered = self.batches // workers + (worker < self.batches % workers)
                epoch, batches = divmod(delivered, self.batches_per_epoch)
                self.positions[consumer] = Position(epoch, batches * self.batch_size, batches)
        self._loader = None

    # -- iteration ------------------------------------------------------------------------------
    def _data_loader(self) -> torch.utils.data.DataLoader:
        workers = max(1, self.workers)
        positions = self.positions if self.mode == "train" else {}
        stream = _Stream(self.pipeline, self.shards, self, positions,
                         self.batches % workers if self.mode == "train" else 0)
        pin = self.pipeline.pin_memory and self.device is not None and self.device.type == "cuda"
        return torch.utils.data.DataLoader(
            stream, batch_size=None, num_workers=self.workers, pin_memory=pin,
            prefetch_factor=self.pipeline.prefetch if self.workers else None,
            persistent_workers=self.pipeline.persistent_workers and self.workers > 0 and self.mode == "eval")

    def __iter__(self) -> Iterator[dict]:
        if self.mode == "eval":
            self.skipped_clips = {}
            if self._loader is None or not self.pipeline.persistent_workers:
                self._loader = self._data_loader()
        else:
            self._loader = self._data_loader()
        produced = 0
        for batch in self._loader:
            self._receive(batch.pop(_SKIPS))
            if _REPORT in batch:       # an evaluation consumer has finished its pass
                continue
            consumer, position = batch.pop(_POSITION)
            self.positions[consumer] = Position(**position)
            self.batches += 1
            produced += 1
            yield self._finish(batch)
        if produced == 0:
            raise EmptyPipelineError(f"{self.where}: no batch — {self.samples} samples listed, "
                                     f"skipped {self.skipped}")

    def _finish(self, batch: dict) -> dict:
        if self.device is not None:
            batch = to_device(batch, self.device)
        batch["video"] = normalise(batch["video"], self.pipeline.mean, self.pipeline.std)
        return batch


def merge_states(states: list[dict]) -> dict:
    """One data position from every rank's ``state_dict()`` (e.g. gathered before rank 0 writes
    the checkpoint): each rank's ``load_state_dict`` then takes its own readers' positions.
    Every rank has yielded the same number of batches, so the states differ only in them."""
    if not states:
        raise ValueError("merge_states: no state given")
    if states[0].get("kind") == "mixture":
        from lvmae.components.data.mixture_loader import merge_mixture_states  # pylint: disable=import-outside-toplevel
        return merge_mixture_states(states)
    merged = {**states[0], "positions": {}, "skipped_clips": []}
    names: set[str] = set()
    for state in states:
        if state.get("batches") != merged["batches"] or state.get("seed") != merged["seed"]:
            raise ValueError(f"merge_states: ranks disagree on the data position "
                             f"({state.get('batches')} vs {merged['batches']} batches)")
        merged["positions"].update(state["positions"])
        for record in state.get("skipped_clips", []):
            if record["name"] not in names:
                names.add(record["name"])
                merged["skipped_clips"].append(record)
    return merged


def record_skips(run, loader: PipelineLoader, prefix: str = "data") -> dict[str, int]:
    """Stores the loader's skip counts in a Sacred run: ``info[<prefix>_skipped]`` (totals by
    reason), one ``<prefix>/skipped_<reason>`` metric point per epoch (x = epoch) and, when any
    clip was skipped, every skipped clip's name, reason and error as the artifact
    ``<prefix>_skipped.json``."""
    totals = loader.skipped
    if run is None:
        return totals
    run.info[f"{prefix}_skipped"] = totals
    if hasattr(loader, "drawn"):        # dataset.mixture: the clips drawn from each source
        run.info[f"{prefix}_drawn"] = loader.drawn
    if loader.skipped_clips:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"{prefix}_skipped.json")
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(list(loader.skipped_clips.values()), handle, indent=1)
            run.add_artifact(path, f"{prefix}_skipped.json")
    logged = run.info.setdefault(f"{prefix}_skip_epochs_logged", [])
    for epoch, counts in loader.skips_by_epoch.items():
        if epoch in logged or (loader.mode == "train" and epoch >= loader.epoch):
            continue    # an epoch still in progress is logged once it has finished
        for reason, count in counts.items():
            run.log_scalar(f"{prefix}/skipped_{reason}", count, epoch)
        logged.append(epoch)
    return totals

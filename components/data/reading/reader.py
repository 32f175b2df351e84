"""Streaming clips from WebDataset shards (local paths or any URL webdataset opens).

Axis legend: b batch, c channels, t frames, h/w pixels; d latent channels, t'/h'/w' token grid.

One pass of :class:`ClipStream` per epoch: its shards are split over ranks × workers
(components/data/reading/splitting.py), each sample is parsed (components/data/formats/schema.py), ``clip_frames``
frames at ``stride`` are chosen (components/data/reading/temporal.py) and decoded, cropped/flipped
identically with any token-grid fields (components/data/reading/augment.py) and normalised. Batches
(components/data/reading/loader.py) follow the cross-team contract:

    {"video": float (b, c, t, h, w), "label": long (b,), "labels": {head: long (b,)},
     "key": list[str]}  + optional "latents" (b, d, t', h', w'), "indices"/"scores" (b, t', h', w')

Corrupt samples (an undecodable or truncated mp4, a broken member, a truncated tar) are
skipped and counted (``corrupt="skip"``; each skip is logged with its shard and key, and
``ClipStream.skipped`` sums all workers) or raise :class:`CorruptSampleError` naming the shard
and key (``corrupt="fail"``).
"""
from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch
from webdataset.shardlists import expand_urls

from lvmae import registry
from lvmae.components.data.decoding.codec import CorruptVideoError, VideoDecoder
from lvmae.components.data.formats.manifest import Manifest, View
from lvmae.components.data.formats.schema import RawSample, SampleError, parse_sample
from lvmae.components.data.reading.augment import SpatialAugment, channels_first, normalise
from lvmae.components.data.reading.splitting import consumer_share, current_consumer, epoch_quota
from lvmae.components.data.reading.tar_stream import ShardLoss, tar_samples
from lvmae.components.data.reading.temporal import ShortPolicy, TemporalSampler

# ImageNet statistics, as VideoMAE normalises its inputs.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CorruptPolicy = Literal["skip", "fail"]
CORRUPT_POLICIES = ("skip", "fail")
log = logging.getLogger(__name__)


def raw_stream(shards: list[str], residue: int | None = None, modulus: int = 1,
               expected: dict[str, int] | None = None) -> Iterator[RawSample | Exception]:
    """Parsed samples of ``shards`` in file order (only index ≡ residue mod modulus when
    splitting by sample), nothing decoded; failures — a sample breaking the schema, a damaged,
    truncated or unreadable tar (components/data/reading/tar_stream.py; ``expected``: shard → samples
    the manifest lists, so that samples lost with their keys are counted) — are yielded, not
    raised, so the caller applies its policy in one place. When splitting by sample every
    consumer reads every shard: only the consumer of residue 0 yields a shard's loss."""
    index = -1
    for raw in tar_samples(shards, expected):
        if isinstance(raw, Exception):
            if residue in (None, 0) or not isinstance(raw, ShardLoss):
                yield raw
            continue
        index += 1
        if residue is not None and index % modulus != residue:
            continue
        try:
            yield parse_sample(raw)
        except SampleError as error:
            yield error


class CorruptSampleError(RuntimeError):
    """A sample the reader cannot use, under ``corrupt="fail"``; names shard and key."""


class ClipStream(torch.utils.data.IterableDataset):
    """Decoded, augmented clips from shards; one iteration = one epoch of this consumer.

    Args:
      urls: brace pattern(s) of shards (``::`` separates several), local or URL.
      clip_frames: frames per clip (None = every stored frame, for fixed-length sets).
      stride: stored frames between sampled frames.
      train: random start, random resized crop + flip, shuffling and equal-length epochs;
        otherwise centred start, centre crop, file order, every sample exactly once.
      out_size: output side in pixels (None = stored size, no spatial augmentation).
      short_policy: for clips shorter than the window: loop, pad or resample.
      samples: samples in the split (the manifest's count); needed for equal-length epochs.
      view: the manifest's view, when samples carry precomputed token-grid fields.
      corrupt: skip (and count) or fail on a bad sample.
      shuffle_buffer: samples held for shuffling within a consumer (default 64 when training,
        0 = file order otherwise).
      seed: with the epoch (``set_epoch``), seeds shard order, sampling and augmentation.
      decoder: a registered ``video_decoder.<name>`` (pyav; video_reader_rs, faster, optional).
      rank, world_size: override torch.distributed / $RANK / $WORLD_SIZE.
      primary_head: the label head copied into ``label`` (default: the first head in a sample).
    """

    def __init__(self, urls: str, clip_frames: int | None = None, stride: int = 1, train: bool = True,
                 out_size: int | None = None, short_policy: ShortPolicy = "loop", samples: int | None = None,
                 view: View | None = None, corrupt: CorruptPolicy = "skip", shuffle_buffer: int | None = None,
                 seed: int = 0, decoder: str = "pyav", decoder_threads: int = 1,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                 rank: int | None = None, world_size: int | None = None, primary_head: str | None = None):
        super().__init__()
        if corrupt not in CORRUPT_POLICIES:
            raise ValueError(f"corrupt must be one of {CORRUPT_POLICIES}, got {corrupt!r}")
        registry.discover()
        decoder_entry = registry.get(f"video_decoder.{decoder}")   # unknown names list the choices
        self.shards = expand_urls(urls)
        if not self.shards:
            raise ValueError(f"urls {urls!r} name no shard")
        self.view = view if view is not None and view.frames > 0 else None
        if self.view is not None and clip_frames not in (None, self.view.frames):
            raise ValueError(f"clip_frames={clip_frames} differs from the precomputed view's "
                             f"{self.view.frames} frames: the token grid would not match the clip")
        self.sampler = TemporalSampler(clip_frames, stride, "random" if train else "center",
                                       short_policy) if clip_frames else None
        self.augment = SpatialAugment(out_size, train=train) if out_size else None
        self.train, self.samples, self.corrupt = train, samples, corrupt
        self.shuffle_buffer = (64 if train else 0) if shuffle_buffer is None else shuffle_buffer
        self.seed, self.epoch = seed, 0
        self.decoder: VideoDecoder = decoder_entry.obj(threads=decoder_threads)
        self.mean, self.std = mean, std
        self.rank, self.world_size, self.primary_head = rank, world_size, primary_head
        self._skipped = multiprocessing.Value("q", 0)
        self.emit_uint8 = False    # set by loader.BatchLoader: items carry uint8 video

    @classmethod
    def from_manifest(cls, manifest: Manifest, split: str, **options) -> ClipStream:
        """A stream of one split: shards, sample count, precomputed view and primary head
        from the manifest; ``options`` as for the constructor."""
        options.setdefault("samples", manifest.splits[split].samples if split in manifest.splits else None)
        options.setdefault("view", manifest.view if manifest.fields else None)
        options.setdefault("primary_head", manifest.primary_head if manifest.heads else None)
        return cls(manifest.urls(split), **options)

    @property
    def skipped(self) -> int:
        """Corrupt samples skipped so far, summed over every worker process."""
        return int(self._skipped.value)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    # -- reading ------------------------------------------------------------------------------
    def _raw_samples(self, shards: list[str], residue: int | None, modulus: int) -> Iterator[RawSample | Exception]:
        return raw_stream(shards, residue, modulus)

    def raw_samples(self) -> Iterator[RawSample]:
        """Every parsed sample of every shard in file order, ignoring the split and the
        corrupt policy (inspection and tests): the first bad one raises."""
        for item in self._raw_samples(self.shards, None, 1):
            if isinstance(item, Exception):
                raise item
            yield item

    def _reject(self, error: Exception, where: str) -> None:
        if self.corrupt == "fail":
            raise CorruptSampleError(f"{where}: {error}") from error
        with self._skipped.get_lock():
            self._skipped.value += 1
            total = self._skipped.value
        log.warning("skipped corrupt sample (%d so far): %s: %s", total, where, error)

    def _frame_idx(self, sample: RawSample, rng: np.random.Generator) -> np.ndarray:
        if self.view is not None:
            return self.view.start + np.arange(self.view.frames) * self.view.stride
        if self.sampler is None:
            return np.arange(sample.num_frames)
        return self.sampler(sample.num_frames, rng)

    def decode_frames(self, sample: RawSample, rng: np.random.Generator) -> np.ndarray:
        """The sampled frames, uint8 (t, h, w, c)."""
        frame_idx = self._frame_idx(sample, rng)
        if sample.codec == "mp4":
            return self.decoder.decode(sample.clip, frame_idx)
        if frame_idx.max() >= sample.clip.shape[0]:
            raise CorruptVideoError(f"npy clip has {sample.clip.shape[0]} frames, frame {frame_idx.max()} wanted")
        return sample.clip[frame_idx]

    def _to_item(self, sample: RawSample, frames: np.ndarray, rng: np.random.Generator) -> dict:
        if self.augment is not None:
            video, grids = self.augment(frames, sample.fields, rng)
        else:
            video = channels_first(frames)
            grids = {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in sample.fields.items()}
        labels = sample.labels
        head = self.primary_head or next(iter(labels))
        if head not in labels:
            raise SampleError(f"no label head {head!r} (heads: {list(labels)})")
        if not self.emit_uint8:
            video = normalise(video, self.mean, self.std)
        return {"key": sample.key, "video": video, "label": int(labels[head]), "labels": dict(labels), **grids}

    def _one_pass(self, pass_number: int, rng: np.random.Generator, consumer) -> Iterator[dict]:
        order_seed = self.seed * 100_003 + self.epoch * 1_009 + pass_number if self.train else None
        share = consumer_share(self.shards, consumer, order_seed)
        for item in self._raw_samples(share.shards, share.sample_residue, share.sample_modulus):
            if isinstance(item, Exception):
                self._reject(item, getattr(item, "where", "shard stream"))
                continue
            where = f"shard {item.shard} sample {item.key}"
            try:
                yield self._to_item(item, self.decode_frames(item, rng), rng)
            except (CorruptVideoError, SampleError, ValueError) as error:
                self._reject(error, where)

    def _shuffled(self, items: Iterator[dict], rng: np.random.Generator) -> Iterator[dict]:
        buffer: list[dict] = []
        for item in items:
            buffer.append(item)
            if len(buffer) >= self.shuffle_buffer:
                yield buffer.pop(int(rng.integers(len(buffer))))
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))))

    def __iter__(self) -> Iterator[dict]:
        consumer = current_consumer(self.rank, self.world_size)
        rng = np.random.default_rng([self.seed, self.epoch, consumer.rank, consumer.worker])
        if not self.train:
            stream = self._one_pass(0, rng, consumer)
            yield from (self._shuffled(stream, rng) if self.shuffle_buffer > 1 else stream)
            return
        if self.samples is None:
            raise ValueError("ClipStream(train=True) needs samples= (the split's sample count) so that "
                             "every rank yields the same number of samples per epoch")
        quota = epoch_quota(self.samples, consumer)
        produced, pass_number = 0, 0
        while produced < quota:
            before = produced
            stream = self._one_pass(pass_number, rng, consumer)
            for item in (self._shuffled(stream, rng) if self.shuffle_buffer > 1 else stream):
                yield item
                produced += 1
                if produced >= quota:
                    break
            if produced == before:
                raise RuntimeError(f"consumer {consumer} read no usable sample from its shards "
                                   f"{consumer_share(self.shards, consumer, None).shards[:3]}…")
            pass_number += 1

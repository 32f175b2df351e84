"""The worker side of the data pipeline: one consumer's batches, epoch after epoch.

Axis legend: b batch, v views, c channels, t frames, h/w pixels.

A consumer (rank × DataLoader worker, reading/splitting.py) reads its share of the shards in its
order (training: passes shuffled through a buffer seeded by (seed, epoch, consumer, pass)),
turns each sample into a clip through the pipeline (reading/pipeline.py), batches them with
its position, and reports every clip it had to skip once, under its name
(reading/pipeline_loader.py counts them in the main process).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from lvmae.components.data.decoding.codec import CorruptVideoError
from lvmae.components.data.formats.schema import RawSample, SampleError
from lvmae.components.data.reading.reader import CorruptSampleError, raw_stream
from lvmae.components.data.reading.splitting import Consumer, consumer_share
from lvmae.components.data.reading.temporal import ShortClipError

if TYPE_CHECKING:
    from lvmae.components.data.reading.pipeline import DataPipeline
    from lvmae.components.data.reading.pipeline_loader import PipelineLoader

Mode = Literal["train", "eval"]
MODES = ("train", "eval")
CorruptPolicy = Literal["skip", "fail"]
CORRUPT_POLICIES = ("skip", "fail")
# Why a sample gave no clip: undecodable/truncated bytes or tar, or shorter than the window
# under short_policy="skip".
SKIP_REASONS = ("corrupt", "short")
# Batch entries the workers add for the main process (removed before a batch is yielded).
_POSITION, _SKIPS, _REPORT = "_position", "_skips", "_report"
# Skipped clips named in a DataLossError's message.
NAMED_IN_MESSAGE = 3
log = logging.getLogger(__name__)


class EmptyPipelineError(ValueError):
    """The pipeline would yield no batch; names the manifest and why."""


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

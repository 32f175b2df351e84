"""Who reads what: splitting shards over ranks × data-loader workers without hangs.

Every (rank, worker) pair is one *consumer*, numbered ``rank · workers + worker`` out of
``ranks · workers``. All consumers order the shard list the same way (one shared seed per
epoch), then:

- with at least as many shards as consumers, consumer c reads shards c, c + C, c + 2C, …;
- with fewer shards than consumers (the case where webdataset's own splitters leave a worker
  with nothing and DDP hangs), every consumer streams every shard and keeps samples
  j ≡ c (mod C) — slower tar reading, but nobody starves.

Either way the consumers read disjoint samples that together cover the split. For training,
``ConsumerQuota`` then makes every consumer yield exactly ⌊samples / C⌋ samples per epoch
(wrapping around its share when it runs short, stopping early when it has more), so every rank
yields the same number of batches and DDP's collectives stay in step.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class Consumer:
    rank: int
    world_size: int
    worker: int
    num_workers: int

    @property
    def index(self) -> int:
        return self.rank * self.num_workers + self.worker

    @property
    def count(self) -> int:
        return self.world_size * self.num_workers


def current_consumer(rank: int | None = None, world_size: int | None = None) -> Consumer:
    """This process's consumer: rank from the argument, torch.distributed or $RANK/$WORLD_SIZE;
    worker from the data-loader worker info."""
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank={rank} world_size={world_size}")
    info = torch.utils.data.get_worker_info()
    worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return Consumer(rank, world_size, worker, num_workers)


@dataclasses.dataclass(frozen=True)
class Share:
    """What one consumer reads in one pass: its shards and, when splitting by sample, the
    residue of the global sample index it keeps (None = keep every sample of its shards)."""

    shards: list[str]
    sample_residue: int | None
    sample_modulus: int


def consumer_share(shards: list[str], consumer: Consumer, order_seed: int | None) -> Share:
    """The consumer's part of ``shards``; ``order_seed`` shuffles the order (same for everyone)."""
    ordered = list(shards)
    if order_seed is not None:
        ordered = [ordered[i] for i in np.random.default_rng(order_seed).permutation(len(ordered))]
    if len(ordered) >= consumer.count:
        return Share(ordered[consumer.index::consumer.count], None, 1)
    return Share(ordered, consumer.index, consumer.count)


def epoch_quota(total_samples: int, consumer: Consumer) -> int:
    """Samples each consumer yields per training epoch (equal for all)."""
    return total_samples // consumer.count

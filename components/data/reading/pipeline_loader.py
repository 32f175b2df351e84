"""The main-process side of the data pipeline: a split's batches, its data position and skip accounting.

Axis legend: b batch, v views, c channels, t frames, h/w pixels.

:class:`PipelineLoader` runs the consumers (reading/pipeline_stream.py) in DataLoader workers,
normalises each batch once, keeps each consumer's position (``state_dict``/``load_state_dict``
resume exactly) and counts every skipped clip once under its name; a training loader past
``max_skip_fraction`` stops with :class:`DataLossError`. :func:`merge_states` joins the ranks'
positions; :func:`record_skips` stores the counts and names in a Sacred run.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from webdataset.shardlists import expand_urls

from lvmae.components.data.formats.manifest import Manifest
from lvmae.components.data.formats.shard_index import expected_samples
from lvmae.components.data.reading.augment import normalise
from lvmae.components.data.reading.loader import to_device
from lvmae.components.data.reading.pipeline_stream import (
    _POSITION,
    _REPORT,
    _SKIPS,
    MODES,
    NAMED_IN_MESSAGE,
    SKIP_REASONS,
    EmptyPipelineError,
    Mode,
    Position,
    _Stream,
)
from lvmae.components.data.reading.splitting import Consumer, epoch_quota

if TYPE_CHECKING:
    from lvmae.components.data.reading.pipeline import DataPipeline

STATE_VERSION = 1
log = logging.getLogger(__name__)


class DataLossError(RuntimeError):
    """A training loader lost more clips than ``max_skip_fraction`` allows; names them."""


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
        from lvmae.components.data.reading.mixture_loader import merge_mixture_states  # pylint: disable=import-outside-toplevel
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

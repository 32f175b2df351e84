"""The training loader of a ``dataset.mixture``: batches whose clips come from several sources.

Axis legend: b batch, c channels, t frames, h/w pixels.

Each source has its own :class:`PipelineLoader` (its pipeline's temporal sampling, workers, skip
accounting and exact resumption). Clip k of the mixture (k = 0, 1, … over the run) comes from
source ``draw(k)``, a categorical draw with the weights from a generator seeded by (seed, k //
block): the order depends on the seed and the clip number only, so a resumed loader continues
the same sequence. Each batch is assembled row by row from the sources' batches (rows one source
does not use yet wait for the next mixture batch).

webdataset's ``RandomMix`` draws with the process-global ``random`` module — neither seedable
per loader nor resumable at a position — and ``ResampledShards`` draws shards with replacement,
which would give up the equal-length epochs and exact resumption of each source's loader; so
both were left aside for this counter-based draw.

State: the draw position, the clips drawn per source, and per source its loader's state from
before its current batch plus the rows of that batch already used (the batch is read again on
resume — each source loader is deterministic — and those rows are passed over).
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Iterator

import numpy as np
import torch

from lvmae.components.data.reading.pipeline import PipelineLoader, merge_states

# Draws made per generator: clip k uses the generator of block k // DRAW_BLOCK.
DRAW_BLOCK = 1024
# Tells the draw generator apart from every other generator seeded by the run's seed.
DRAW_STREAM = 7_919
MIXTURE_STATE = "mixture"
MIXTURE_STATE_VERSION = 1
log = logging.getLogger(__name__)


def source_draws(weights: list[float], seed: int, start: int, count: int) -> np.ndarray:
    """The sources of clips ``start … start + count − 1`` (int array)."""
    probabilities = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    out = np.empty(count, dtype=np.int64)
    position = start
    while position < start + count:
        block, offset = divmod(position, DRAW_BLOCK)
        draws = np.random.default_rng([seed, DRAW_STREAM, block]).choice(len(weights), DRAW_BLOCK, p=probabilities)
        take = min(DRAW_BLOCK - offset, start + count - position)
        out[position - start:position - start + take] = draws[offset:offset + take]
        position += take
    return out


def _rows(batch: dict) -> list[dict]:
    """A finished training batch (one view per clip) → one dict per clip."""
    heads = batch["labels"]
    return [{"key": key, "video": batch["video"][i:i + 1], "label": batch["label"][i:i + 1],
             "labels": {h: v[i:i + 1] for h, v in heads.items()}} for i, key in enumerate(batch["key"])]


def _collate(rows: list[dict]) -> dict:
    """Rows of several sources → one batch; a label head a source lacks reads −1."""
    heads = list(dict.fromkeys(h for row in rows for h in row["labels"]))
    missing = torch.full((1,), -1, dtype=torch.long, device=rows[0]["label"].device)
    return {"key": [row["key"] for row in rows], "video": torch.cat([row["video"] for row in rows]), "views": 1,
            "label": torch.cat([row["label"] for row in rows]),
            "labels": {h: torch.cat([row["labels"].get(h, missing) for row in rows]) for h in heads}}


class MixtureLoader(PipelineLoader):
    """Training batches of a ``MixedManifest`` (components/data/datasets/mixture.py) with the interface of
    :class:`PipelineLoader`: iteration, ``state_dict``/``load_state_dict``, skip accounting (the
    sources' together) and ``drawn`` (clips drawn per source)."""

    def __init__(self, pipeline, mixed, mode: str, batch_size: int, seed: int, rank: int, world_size: int,
                 device):  # pylint: disable=super-init-not-called  (the sources' loaders do the reading)
        if mode != "train":
            raise ValueError(f"{mixed.name}: a mixture of datasets is for training; evaluate on one dataset "
                             f"(mode={mode!r})")
        self.pipeline, self.manifest, self.split, self.mode = pipeline, mixed, "train", mode
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.where = f"dataset.mixture {mixed.name}"
        self.names = [name for name, *_ in mixed.parts]
        self.weights = [weight for _, _, weight, _ in mixed.parts]
        self.sources: list[PipelineLoader] = []
        for index, (name, manifest, _, own) in enumerate(mixed.parts):
            source_pipeline = own if own is not None else pipeline
            if (source_pipeline.clip_frames, source_pipeline.size) != (pipeline.clip_frames, pipeline.size):
                raise ValueError(f"dataset.mixture source {index} ({name}): its pipeline "
                                 f"{source_pipeline.gin_name} gives {source_pipeline.clip_frames} frames at "
                                 f"{source_pipeline.size}², the command's {pipeline.gin_name} "
                                 f"{pipeline.clip_frames} at {pipeline.size}²: every source must give the same "
                                 f"clip shape (bind {source_pipeline.gin_name}.clip_frames and .size)")
            source_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
            loader = source_pipeline.loader(manifest, "train", mode="train", batch_size=batch_size,
                                            seed=source_seed, rank=rank, world_size=world_size, device=device)
            loader.on_data_loss = self._data_loss
            self.sources.append(loader)
        self.samples = sum(source.samples for source in self.sources)
        self.on_data_loss = None
        self.position = 0                                   # clips drawn so far
        self.drawn_counts = [0] * len(self.sources)
        self.batches = 0
        self._before = [source.state_dict() for source in self.sources]   # state before the current batch
        self._used = [0] * len(self.sources)                # rows of the current batch already used
        self._pending: list[list[dict]] = [[] for _ in self.sources]
        self._streams: list[Iterator | None] = [None] * len(self.sources)

    def _data_loss(self) -> None:
        if self.on_data_loss is not None:
            self.on_data_loss()

    # -- accounting -----------------------------------------------------------------------------
    @property
    def drawn(self) -> dict[str, int]:
        """Clips drawn from each source so far (this rank)."""
        return dict(zip(self.names, self.drawn_counts))

    @property
    def skipped_clips(self) -> dict[str, dict]:
        return {name: record for source in self.sources for name, record in source.skipped_clips.items()}

    @property
    def skipped(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for source in self.sources:
            for reason, count in source.skipped.items():
                total[reason] = total.get(reason, 0) + count
        return total

    @property
    def skips_by_epoch(self) -> dict[int, dict[str, int]]:
        out: dict[int, dict[str, int]] = {}
        for source in self.sources:
            for epoch, counts in source.skips_by_epoch.items():
                row = out.setdefault(epoch, dict.fromkeys(counts, 0))
                for reason, count in counts.items():
                    row[reason] = row.get(reason, 0) + count
        return dict(sorted(out.items()))

    @property
    def epoch(self) -> int:
        return min(source.epoch for source in self.sources)

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"kind": MIXTURE_STATE, "version": MIXTURE_STATE_VERSION, "seed": self.seed,
                "batch_size": self.batch_size, "weights": list(self.weights), "names": list(self.names),
                "position": self.position, "drawn": list(self.drawn_counts), "batches": self.batches,
                "sources": [{"state": copy.deepcopy(before), "used": used}
                            for before, used in zip(self._before, self._used)]}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != MIXTURE_STATE or state.get("version") != MIXTURE_STATE_VERSION:
            raise ValueError(f"cannot resume {self.where} from a data position that is not a mixture's "
                             f"(kind {state.get('kind')!r})")
        layout = {k: state.get(k) for k in ("seed", "batch_size", "weights")}
        mine = {"seed": self.seed, "batch_size": self.batch_size, "weights": list(self.weights)}
        if layout != mine or len(state["sources"]) != len(self.sources):
            raise ValueError(f"cannot resume the data position of {self.where}: it was saved with {layout} and "
                             f"{len(state['sources'])} sources, this loader has {mine} and {len(self.sources)}")
        self.position, self.batches = int(state["position"]), int(state["batches"])
        self.drawn_counts = [int(n) for n in state["drawn"]]
        for index, (source, saved) in enumerate(zip(self.sources, state["sources"])):
            source.load_state_dict(saved["state"])
            self._before[index] = copy.deepcopy(saved["state"])
            self._used[index] = int(saved["used"])
            self._pending[index] = []
            self._streams[index] = None

    # -- iteration ------------------------------------------------------------------------------
    def _row(self, index: int) -> dict:
        """The next unused clip of source ``index``, reading its next batch when needed."""
        if not self._pending[index]:
            if self._streams[index] is None:
                self._streams[index] = iter(self.sources[index])
                rows = _rows(next(self._streams[index]))[self._used[index]:]    # resumed: rows used before
            else:
                self._before[index] = self.sources[index].state_dict()
                self._used[index] = 0
                rows = _rows(next(self._streams[index]))
            self._pending[index] = rows
        self._used[index] += 1
        return self._pending[index].pop(0)

    def __iter__(self) -> Iterator[dict]:
        while True:
            draws = source_draws(self.weights, self.seed, self.position, self.batch_size)
            rows = [self._row(int(index)) for index in draws]
            self.position += self.batch_size
            for index in draws:
                self.drawn_counts[int(index)] += 1
            self.batches += 1
            yield _collate(rows)


def merge_mixture_states(states: list[dict]) -> dict:
    """One data position from every rank's mixture state: each source's states merged as
    :func:`merge_states` does (the draw sequence, hence positions and rows used, is the same on
    every rank)."""
    merged = copy.deepcopy(states[0])
    for index, source in enumerate(merged["sources"]):
        source["state"] = merge_states([state["sources"][index]["state"] for state in states])
    return merged

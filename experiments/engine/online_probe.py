"""The online probe: a frozen kNN classifier on the encoder's features while pre-training runs.

Every ``every`` steps (on a logging step) the encoder being trained extracts features — the
frozen evaluation's own extraction (``feature_cache.extract``: mean token, one centred view)
— of the first ``bank_clips`` clips of ``dataset``'s ``train`` split (the labelled bank) and
the first ``query_clips`` of its ``val`` split, and the weighted kNN of ``knn.py`` (DINO's;
nothing trained, nothing tuned) classifies the queries: ``probe/knn_top1`` (the manifest's
first label head; ``probe/knn_top1/<head>`` for the others). A user sees the representation
improve or stall long before fine-tuning. The features change with every step, so they are
extracted afresh each time (never cached); the clips are read again through the data
pipeline's evaluation view. Off unless ``online_probe.dataset`` and ``online_probe.every``
are bound (the LVMAE pipeline binds them: gin/pipelines/lvmae.gin).
"""
from __future__ import annotations

import itertools
import math

import gin
import torch
from torch import nn

from lvmae.experiments.engine.classifier_setup import manifest_heads
from lvmae.experiments.engine.feature_cache import FeatureSet, extract
from lvmae.experiments.engine.knn import knn_top1
from lvmae.experiments.engine.trainer import Precision, eval_loader, input_size

BANK_SPLIT, QUERY_SPLIT = "train", "val"
METRIC = "probe/knn_top1"


@gin.configurable("online_probe")
class OnlineProbe:
    """A monitor of the training engine (``trainer.monitors``); see the module docstring.

    Args:
      dataset: a labelled dataset (``dataset.*``) with train and val splits; None: off.
      every: steps between probes (on the first logging step at or after each multiple; also
        at the first step when the run has ≥ ``every`` steps, and at the last); 0: off.
      bank_clips, query_clips: clips read from train (the kNN's bank) and val (its queries).
      k: neighbours that vote.
      batch_size: clips per feature batch.
      pipeline: the data pipeline (default: the gin-bound ``data_pipeline``).
    """

    def __init__(self, encoder: nn.Module | None = None, total_steps: int = 1, device: torch.device | None = None,
                 precision: Precision = "auto", dataset=None, every: int = 0, bank_clips: int = 64,
                 query_clips: int = 64, k: int = 20, batch_size: int = 16, pipeline=None):
        if min(every, bank_clips, query_clips, k, batch_size) < 0 or min(bank_clips, query_clips, k, batch_size) < 1:
            raise ValueError(f"online_probe: every must be ≥ 0 and bank_clips, query_clips, k, batch_size ≥ 1, got "
                             f"{every}, {bank_clips}, {query_clips}, {k}, {batch_size}")
        self.encoder, self.total_steps, self.device, self.precision = encoder, total_steps, device, precision
        self.every, self.bank_clips, self.query_clips, self.k = every, bank_clips, query_clips, k
        self.batch_size, self.pipeline = batch_size, pipeline
        self.manifest = dataset.prepare() if dataset is not None and every else None
        self.classes = manifest_heads(self.manifest) if self.manifest is not None else {}
        # The first probe at step 1 (the baseline) when the run is long enough for a second
        # one at ``every``; shorter runs (tests, smoke runs) probe at their last step only.
        self.next_step = 1 if every and total_steps >= every else total_steps

    @property
    def enabled(self) -> bool:
        return self.manifest is not None

    def due(self, step: int) -> bool:
        return self.enabled and (step >= self.next_step or step == self.total_steps)

    def features(self, split: str, clips: int) -> FeatureSet:
        frames, side = input_size(self.encoder)
        batches = eval_loader(self.pipeline, self.manifest, split, self.batch_size, frames, side, 1, 1, self.device)
        first = itertools.islice(batches, math.ceil(clips / self.batch_size))
        found = extract(self.encoder, first, list(self.classes), (-1,), 1, 1, False, self.device, self.precision,
                        f"online probe: features of {split}")
        return found.subset(torch.arange(min(clips, len(found))))

    def __call__(self, step: int, batch: dict | None = None) -> dict[str, float]:
        self.next_step = (step // self.every + 1) * self.every
        top1 = knn_top1(self.features(BANK_SPLIT, self.bank_clips), self.features(QUERY_SPLIT, self.query_clips),
                        self.classes, self.k)
        primary = next(iter(self.classes))
        return {METRIC: top1[primary], **{f"{METRIC}/{head}": v for head, v in top1.items() if head != primary}}

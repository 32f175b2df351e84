"""Weighted k-nearest-neighbour classification of frozen features (DINO's evaluation).

Axis legend: N bank clips, M query clips, D feature width, k classes.

Each clip is its features' mean over views and tokens, L2-normalised; a query's k most
cosine-similar bank clips vote for their labels with weight exp(similarity / temperature).
No training and no hyper-parameter to tune on the reported split: a second opinion beside
the probe grid that an optimiser cannot flatter.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lvmae.experiments.engine.feature_cache import FeatureSet

DEFAULT_TEMPERATURE = 0.07     # DINO's kNN temperature
QUERY_CHUNK = 1024             # queries per similarity matrix (memory M·N floats per chunk)


def pooled(found: FeatureSet) -> torch.Tensor:
    """features (N, v, n, D) → (N, D) unit vectors: mean over views and tokens."""
    return F.normalize(found.features.float().mean(dim=(1, 2)), dim=-1)


def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, classes: int,
                k: int, temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """bank (N, D), bank_labels (N,), queries (M, D) (unit vectors) → class scores (M, classes)."""
    if k < 1:
        raise ValueError(f"probe_loop.knn_k must be ≥ 1, got {k}")
    k = min(k, len(bank))
    scores = []
    for start in range(0, len(queries), QUERY_CHUNK):
        similarity = queries[start:start + QUERY_CHUNK] @ bank.T                 # (m, N)
        top, index = similarity.topk(k, dim=1)                                    # (m, k)
        votes = F.one_hot(bank_labels[index], classes).float()                    # (m, k, classes)
        scores.append((votes * (top / temperature).exp()[..., None]).sum(1))
    return torch.cat(scores)


def knn_top1(fit: FeatureSet, report: FeatureSet, classes: dict[str, int], k: int) -> dict[str, float]:
    """{label head: top-1 of the kNN classifier with ``fit`` as the bank, on ``report``}."""
    bank, queries = pooled(fit), pooled(report)
    return {head: float((knn_predict(bank, fit.labels[head], queries, count, k).argmax(1)
                         == report.labels[head]).float().mean())
            for head, count in classes.items()}

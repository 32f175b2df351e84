"""Classification metrics per label head, and EPIC-Kitchens action accuracy.

Axis legend: N samples, k classes of a head, V verbs, U nouns.

- top-1 / top-5: the label is among the 1 / 5 highest logits (top-k capped at k classes).
- mean-class: recall averaged over the classes present in the labels (EPIC's "mean class
  accuracy"; classes never seen in the labels are not counted).
- action (EPIC-100): a clip is right when verb *and* noun are right; action top-5 ranks the
  (verb, noun) pairs by the product of the two softmax probabilities, as the EPIC
  evaluation code does; action mean-class averages over the (verb, noun) pairs present.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

TOP_K = 5
ACTION = "action"
# The label heads that make an EPIC-style action, when a dataset has both.
ACTION_HEADS = ("verb", "noun")


def _mean_class(correct: torch.Tensor, labels: torch.Tensor) -> float:
    classes = labels.unique()
    return float(torch.stack([correct[labels == c].float().mean() for c in classes]).mean())


def head_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """logits (N, k), labels (N,) → {top1, top5, mean_class}."""
    if logits.shape[0] != labels.shape[0] or logits.shape[0] == 0:
        raise ValueError(f"need as many labels as logits rows (> 0), got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    ranked = logits.topk(min(TOP_K, logits.shape[1]), dim=1).indices                 # (N, 5)
    correct1 = ranked[:, 0] == labels
    correct5 = (ranked == labels[:, None]).any(dim=1)
    return {"top1": float(correct1.float().mean()), "top5": float(correct5.float().mean()),
            "mean_class": _mean_class(correct1, labels)}


def action_metrics(verb_logits: torch.Tensor, noun_logits: torch.Tensor,
                   verb_labels: torch.Tensor, noun_labels: torch.Tensor) -> dict[str, float]:
    """(N, V), (N, U), (N,), (N,) → {top1, top5, mean_class} of the (verb, noun) action."""
    nouns = noun_logits.shape[1]
    correct1 = (verb_logits.argmax(1) == verb_labels) & (noun_logits.argmax(1) == noun_labels)
    action_labels = verb_labels * nouns + noun_labels                         # pair → one id
    top5 = []
    for start in range(0, verb_logits.shape[0], 256):          # (256, V·U) stays small
        pair = torch.einsum("nv,nu->nvu", verb_logits[start:start + 256].softmax(1),
                            noun_logits[start:start + 256].softmax(1)).flatten(1)
        ranked = pair.topk(min(TOP_K, pair.shape[1]), dim=1).indices
        top5.append((ranked == action_labels[start:start + 256, None]).any(dim=1))
    return {"top1": float(correct1.float().mean()), "top5": float(torch.cat(top5).float().mean()),
            "mean_class": _mean_class(correct1, action_labels)}


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """(classes, classes) long: row = true class, column = predicted class."""
    flat = labels.long() * classes + predictions.long()
    return torch.bincount(flat, minlength=classes * classes).reshape(classes, classes)


class Accumulator:
    """Collects logits, labels and keys batch by batch; ``metrics`` summarises every head."""

    def __init__(self, heads: Mapping[str, int]):
        self.heads = dict(heads)
        self.logits: dict[str, list[torch.Tensor]] = {h: [] for h in self.heads}
        self.labels: dict[str, list[torch.Tensor]] = {h: [] for h in self.heads}
        self.keys: list[str] = []

    def update(self, logits: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor],
               keys: list[str] | None = None) -> None:
        for head in self.heads:
            self.logits[head].append(logits[head].detach().float().cpu())
            self.labels[head].append(labels[head].detach().long().cpu())
        batch = next(iter(logits.values())).shape[0]
        self.keys.extend(keys if keys is not None else [str(len(self.keys) + i) for i in range(batch)])

    def stacked(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        if not self.keys:
            raise ValueError("no evaluation samples were seen")
        return ({h: torch.cat(v) for h, v in self.logits.items()},
                {h: torch.cat(v) for h, v in self.labels.items()})

    def metrics(self) -> dict[str, dict[str, float]]:
        """{head: {top1, top5, mean_class}} plus ``action`` when verb and noun heads exist."""
        logits, labels = self.stacked()
        result = {h: head_metrics(logits[h], labels[h]) for h in self.heads}
        if all(h in self.heads for h in ACTION_HEADS) and ACTION not in self.heads:
            verb, noun = ACTION_HEADS
            result[ACTION] = action_metrics(logits[verb], logits[noun], labels[verb], labels[noun])
        return result

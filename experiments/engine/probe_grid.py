"""A grid of probes trained together on one cached extraction, chosen on one split, reported on another.

Axis legend: b rows, v views, n tokens, D feature width (layers × encoder width), k classes.

V-JEPA 2's frozen evaluation trains many probes at once (its ``multihead_kwargs``: learning
rate × weight decay) on one pass of the frozen encoder, because the best probe settings
differ between encoders: a single learning rate can leave one encoder's probe stuck at chance
and flatter another (BENCHMARKS: the shipped probe failed to optimise on pre-trained
features). Here every member of ``kinds × lrs × weight_decays`` is an independent head with
its own AdamW parameter group; all see the same batches. Features are standardised per
dimension with the fitting split's statistics first, so one grid of learning rates suits
encoders whose features differ in scale.

Selection is honest: a member is chosen by its accuracy on the *selection* split (never on
the reported one), and the reported number is that member's accuracy on the report split.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import gin
import torch
import torch.nn.functional as F
from torch import nn

from lvmae.components.backbones.heads import ClassAttentionPool, MeanPoolLinear
from lvmae.experiments.engine.feature_cache import FeatureSet

ProbeKind = Literal["attentive", "linear"]
HeadFactory = Callable[..., nn.Module]      # (dim, num_classes) → head (b, n, D) → (b, k)
STD_FLOOR = 1e-6          # dimensions constant over the fitting split are centred, not scaled up


@dataclass(frozen=True)
class Member:
    """One probe setting of the grid."""

    name: str
    factory: HeadFactory
    lr: float
    weight_decay: float
    kind: str


@gin.configurable("probe_grid")
@dataclass(frozen=True)
class ProbeGrid:
    """The probes one run trains: every (kind, lr, weight decay).

    Args:
      kinds: ``attentive`` (class-attention pooling over every token, ``attentive_depth``
        blocks; reads where things are) and/or ``linear`` (LayerNorm + linear on the mean token).
      lrs, weight_decays: the AdamW settings crossed with each kind (peak lr of the warm-up +
        cosine schedule).
      attentive_depth: blocks of the attentive probe (1: one class-attention layer; V-JEPA 2: 4).
    """

    kinds: tuple[str, ...] = ("attentive", "linear")
    lrs: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2)
    weight_decays: tuple[float, ...] = (0.01, 0.1)
    attentive_depth: int = 1

    def __post_init__(self):
        bad = [k for k in self.kinds if k not in get_args(ProbeKind)]
        if bad or not self.kinds:
            raise ValueError(f"probe_grid.kinds must be a non-empty tuple of {get_args(ProbeKind)}, got {self.kinds!r}")
        if not self.lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in self.lrs):
            raise ValueError(f"probe_grid.lrs must be positive finite numbers, got {self.lrs!r}")
        if not self.weight_decays or any(wd < 0 for wd in self.weight_decays):
            raise ValueError(f"probe_grid.weight_decays must be ≥ 0, got {self.weight_decays!r}")
        if self.attentive_depth < 1:
            raise ValueError(f"probe_grid.attentive_depth must be ≥ 1, got {self.attentive_depth}")

    def members(self) -> list[Member]:
        """Every (kind, lr, weight decay), named e.g. ``attentive_lr0.001_wd0.01``."""
        return [Member(f"{kind}_lr{lr:g}_wd{wd:g}", self._factory(kind), lr, wd, kind)
                for kind in self.kinds for lr in self.lrs for wd in self.weight_decays]

    def _factory(self, kind: str) -> HeadFactory:
        if kind == "linear":
            return MeanPoolLinear
        depth = self.attentive_depth
        return lambda dim, num_classes: ClassAttentionPool(dim, num_classes, depth=depth)


def single(head: HeadFactory, lr: float, weight_decay: float) -> list[Member]:
    """A grid of one: ``probe_loop.head`` (any registered head) at ``probe_loop.lr`` / ``.weight_decay``."""
    name = getattr(head, "__name__", type(head).__name__)
    return [Member(name, head, lr, weight_decay, "attentive" if needs_tokens(head) else "linear")]


def needs_tokens(head: HeadFactory) -> bool:
    """Whether a head reads individual tokens (else only their mean); unknown heads: tokens."""
    return bool(getattr(head, "needs_tokens", True))


class Standardise(nn.Module):
    """features (…, D) → (features − mean) / std, with the fitting split's per-dimension statistics."""

    def __init__(self, features: torch.Tensor):
        super().__init__()
        flat = features.reshape(-1, features.shape[-1]).float()
        self.register_buffer("mean", flat.mean(0))
        self.register_buffer("std", flat.std(0).clamp(min=STD_FLOOR))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features.float() - self.mean) / self.std


class GridProbes(nn.Module):
    """One probe per (label head, grid member) behind one standardisation."""

    def __init__(self, members: list[Member], dim: int, classes: dict[str, int], fit_features: torch.Tensor):
        super().__init__()
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ValueError(f"probe names must be unique, got {names}")
        self.members, self.classes = list(members), dict(classes)
        self.standardise = Standardise(fit_features)
        # Module names cannot hold the dots of a learning rate: probes are stored by position.
        self.probes = nn.ModuleDict({head: nn.ModuleList(m.factory(dim=dim, num_classes=k) for m in self.members)
                                     for head, k in classes.items()})

    def param_groups(self) -> list[dict]:
        """Two AdamW groups per member (every label head's probe of it): weights with the
        member's weight decay, biases, norms and class tokens without (as MAE's probes)."""
        groups = []
        for index, member in enumerate(self.members):
            decay, no_decay = [], []
            for head in self.classes:
                for pname, param in self.probes[head][index].named_parameters():
                    (no_decay if param.ndim < 2 or pname.endswith("cls_token") else decay).append(param)
            groups += [{"params": decay, "lr": member.lr, "weight_decay": member.weight_decay},
                       {"params": no_decay, "lr": member.lr, "weight_decay": 0.0}]
        return [g for g in groups if g["params"]]

    def forward(self, features: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """features (b, n, D) → {head: {member: logits (b, k)}}."""
        x = self.standardise(features)
        return {head: {m.name: probe(x) for m, probe in zip(self.members, probes)}
                for head, probes in self.probes.items()}

    def loss(self, features: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over every (label head, member): members share no parameters, so
        each one's gradient is its own loss's."""
        logits = self(features)
        terms = [F.cross_entropy(out, labels[head]) for head, members in logits.items() for out in members.values()]
        return torch.stack(terms).mean()

    @torch.no_grad()
    def predict(self, found: FeatureSet, batch_size: int, device: torch.device) -> dict[str, dict[str, torch.Tensor]]:
        """{head: {member: probabilities (N, k)}} on the CPU, averaged over each clip's views."""
        was_training = self.training
        self.eval()
        out: dict[str, dict[str, list[torch.Tensor]]] = {h: {m.name: [] for m in self.members} for h in self.classes}
        for start in range(0, len(found), batch_size):
            clips = found.features[start:start + batch_size].to(device)            # (b, v, n, D)
            views = clips.shape[1]
            logits = self(clips.flatten(0, 1))
            for head, members in logits.items():
                for name, value in members.items():
                    probs = value.float().softmax(-1).unflatten(0, (-1, views)).mean(1)
                    out[head][name].append(probs.cpu())
        self.train(was_training)
        return {h: {m: torch.cat(v) for m, v in members.items()} for h, members in out.items()}


def top1(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probabilities.argmax(-1) == labels).float().mean())


def select(select_probs: dict[str, dict[str, torch.Tensor]], labels: dict[str, torch.Tensor]) -> dict[str, str]:
    """{label head: the member with the best top-1 on the selection split} (first in grid order on ties)."""
    chosen = {}
    for head, members in select_probs.items():
        scores = {name: top1(probs, labels[head]) for name, probs in members.items()}
        chosen[head] = max(scores, key=lambda name: scores[name])   # max keeps the first of equals
    return chosen


def chosen_per_kind(table: list[dict], head: str) -> dict[str, dict]:
    """{probe kind: the row of ``table`` (probe_loop's per-probe table) of that kind best on the
    selection split} for one label head (first in grid order on ties), so each kind of
    evaluator is reported as if it were the only one: a task the attentive probes solve from a
    random encoder can still rank encoders under the linear probes."""
    best: dict[str, dict] = {}
    for row in table:
        if row["label_head"] == head and (row["kind"] not in best or row["select_top1"] > best[row["kind"]]["select_top1"]):
            best[row["kind"]] = row
    return best

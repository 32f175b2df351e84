"""Representation health: is the encoder still telling inputs apart, or collapsing?

Axis legend: b clips, N rows (tokens of the fixed batch), d feature width.

Every ``every`` steps (on a logging step: the engine reads the device only there) the
encoder runs, without gradients and in eval mode, on a fixed small batch — the first
``clips`` clips this run trained on — and its output tokens, rows (N, d), are summarised:

- ``health/feature_std``: per-dimension standard deviation across rows, averaged over d,
  relative to the features' root-mean-square (scale-free: 0 when every row is the same
  vector; a healthy encoder after its final LayerNorm sits well above 0.1);
- ``health/effective_rank``: exp of the entropy of the normalised singular values of the
  (uncentred) rows (RankMe, Garrido et al. 2023): 1 for a rank-1 batch, min(N, d) when
  every direction is used equally; ``health/effective_rank_fraction`` is that over min(N, d);
- ``health/dead_fraction``: dimensions whose std across rows is below
  :data:`DEAD_FEATURE_STD` × the root-mean-square (constant features);
- ``health/target_mean``, ``health/target_std``: the regression target of the same batch
  (pre-training; a target that collapses gives the encoder nothing to learn);
- the tokenizer's ``health/codebook_usage`` (distinct codes of the kept tokens / codebook
  size) and ``health/perplexity`` (exp of the code histogram's entropy).

**Collapse** (documented thresholds, :data:`COLLAPSE`): effective rank below
``effective_rank`` (the rows span about one direction), or relative std below
``feature_std`` (every row nearly the same vector), or dead fraction above ``dead_fraction``.
Measured on the tiny CPU runs (docs/training.md): healthy runs sit at effective rank 3.7–8.4
and std 0.10–0.79; a learning rate 1000× too high gives 1.03–1.15 and 0.002–0.015. The first time a run crosses one, it prints one line and sets the run's
``info.health`` (``collapsed``, the step, the figures, the reasons); ``info.health`` is
written on every health step, so a healthy run says ``collapsed: false``.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import gin
import torch

#: a dimension is dead (constant) when its std across rows is below this × the features' RMS
DEAD_FEATURE_STD = 1e-3
#: rows of the fixed batch the statistics read (a fixed subset: the SVD stays cheap)
MAX_ROWS = 4096
#: the collapse thresholds: below (``effective_rank``, ``feature_std``) or above
#: (``dead_fraction``) any one of them, the run is flagged
COLLAPSE = {"effective_rank": 1.5, "feature_std": 0.05, "dead_fraction": 0.5}
_TINY = 1e-12


def effective_rank(rows: torch.Tensor) -> float:
    """rows (N, d) → exp(entropy of σ / Σσ) of the uncentred rows' singular values σ: 1 for a
    rank-1 matrix, min(N, d) for one with equal singular values; 0 for all-zero rows."""
    singular = torch.linalg.svdvals(rows.double())
    total = singular.sum()
    if total <= _TINY:
        return 0.0
    p = singular / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def feature_statistics(rows: torch.Tensor) -> dict[str, float]:
    """rows (N, d), N ≥ 2 → the ``health/`` feature figures (see the module docstring)."""
    if rows.dim() != 2 or rows.shape[0] < 2:
        raise ValueError(f"feature statistics need rows (N ≥ 2, d), got {tuple(rows.shape)}")
    rows = rows.detach().float()
    rms = float(rows.pow(2).mean().sqrt())
    std = rows.std(dim=0)                                                     # (d,)
    scale = max(rms, _TINY)
    rank = effective_rank(rows)
    return {"health/feature_std": float(std.mean()) / scale,
            "health/effective_rank": rank,
            "health/effective_rank_fraction": rank / min(rows.shape),
            "health/dead_fraction": float((std < DEAD_FEATURE_STD * scale).float().mean())}


def target_statistics(target: torch.Tensor) -> dict[str, float]:
    """A regression target (any shape) → its mean and std; integer targets (token ids) → {}."""
    if not target.is_floating_point():
        return {}
    target = target.detach().float()
    return {"health/target_mean": float(target.mean()), "health/target_std": float(target.std())}


def collapse_reasons(figures: dict[str, float], thresholds: dict[str, float] = COLLAPSE) -> list[str]:
    """The thresholds ``figures`` cross (empty: healthy, or no feature figures)."""
    reasons = []
    rank = figures.get("health/effective_rank")
    if rank is not None and rank < thresholds["effective_rank"]:
        reasons.append(f"effective rank {rank:.2f} < {thresholds['effective_rank']:g}")
    std = figures.get("health/feature_std")
    if std is not None and std < thresholds["feature_std"]:
        reasons.append(f"feature std {std:.3g} < {thresholds['feature_std']:g} of the RMS")
    dead = figures.get("health/dead_fraction")
    if dead is not None and dead > thresholds["dead_fraction"]:
        reasons.append(f"{dead:.0%} of the features are constant (> {thresholds['dead_fraction']:.0%})")
    return reasons


def rows_of(tokens: torch.Tensor, max_rows: int = MAX_ROWS) -> torch.Tensor:
    """tokens (b, n, d) or (N, d) → rows (≤ max_rows, d): an even stride over every row."""
    rows = tokens.reshape(-1, tokens.shape[-1])
    if rows.shape[0] > max_rows:
        rows = rows[torch.linspace(0, rows.shape[0] - 1, max_rows, device=rows.device).long()]
    return rows


def first_rows(batch: dict, count: int) -> dict:
    """The first ``count`` clips of a batch (tensors and lists sliced on their first axis; a
    copy, detached)."""
    clips = batch["video"].shape[0] if "video" in batch else None

    def cut(value):
        if torch.is_tensor(value) and value.dim() and value.shape[0] == clips:
            return value[:count].detach().clone()
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        if isinstance(value, list) and len(value) == clips:
            return value[:count]
        return value
    return {k: cut(v) for k, v in batch.items()}


Measure = Callable[[dict], dict[str, float]]


@gin.configurable("representation_health")
class HealthMonitor:
    """Runs ``measure(fixed batch)`` every ``every`` steps (first at step 1, always at the last
    step) and flags collapse; a monitor of the training engine (``trainer.monitors``).

    Args:
      every: steps between health checks (on the first logging step at or after each
        multiple); 0 turns them off.
      clips: clips in the fixed batch (the first ones the run trains on).
      thresholds: overrides of :data:`COLLAPSE` (same keys).
    """

    def __init__(self, run=None, measure: Measure | None = None, total_steps: int = 1, show: bool = True,
                 every: int = 100, clips: int = 4, thresholds: dict[str, float] | None = None):
        if every < 0 or clips < 1:
            raise ValueError(f"representation_health.every must be ≥ 0 and .clips ≥ 1, got {every}, {clips}")
        unknown = set(thresholds or {}) - set(COLLAPSE)
        if unknown:
            raise ValueError(f"representation_health.thresholds: unknown {sorted(unknown)}; "
                             f"the thresholds are {sorted(COLLAPSE)}")
        self.run, self.measure, self.total_steps, self.every, self.clips = run, measure, total_steps, every, clips
        self.show = show
        self.thresholds = {**COLLAPSE, **(thresholds or {})}
        self.batch: dict | None = None
        self.next_step = 1
        self.collapsed_at: int | None = None

    def due(self, step: int) -> bool:
        return bool(self.every) and (step >= self.next_step or step == self.total_steps)

    @torch.no_grad()
    def __call__(self, step: int, batch: dict) -> dict[str, float]:
        if self.batch is None:
            self.batch = first_rows(batch, self.clips)
        self.next_step = (step // self.every + 1) * self.every
        figures = {k: v for k, v in self.measure(self.batch).items() if math.isfinite(v)}
        reasons = collapse_reasons(figures, self.thresholds)
        if reasons and self.collapsed_at is None:
            self.collapsed_at = step
            if self.show:
                print(f"lvmae health: step {step}: the representation looks collapsed ({'; '.join(reasons)}); "
                      "see docs/training.md, 'Representation health'", flush=True)
        if self.run is not None:
            self.run.info["health"] = {"collapsed": self.collapsed_at is not None, "collapsed_at": self.collapsed_at,
                                       "step": step, "reasons": reasons,
                                       **{k.split("/", 1)[1]: v for k, v in figures.items()}}
        return figures


def in_eval_mode(module: torch.nn.Module, call: Callable[[], object]):
    """``call()`` with ``module`` in eval mode (restored after)."""
    was_training = module.training
    module.eval()
    try:
        return call()
    finally:
        module.train(was_training)


# ---------------------------------------------------------------- what each command measures

HEALTH_SEED = 0      # the fixed batch's mask plan (target statistics) and window


def mae_health(model) -> Measure:
    """A ``model.mae``: its encoder's output on every token of the fixed clips, and the
    target of a fixed mask plan."""
    def measure(batch: dict) -> dict[str, float]:
        video = batch["video"]
        tokens = in_eval_mode(model, lambda: model.encoder(video))                  # (b, n, d)
        figures = feature_statistics(rows_of(tokens))
        generator = torch.Generator(device=video.device).manual_seed(HEALTH_SEED)
        plan = model.plan(video.shape[0], generator, model.token_scores(batch))
        return figures | target_statistics(model.target(batch, plan, model.encoder.tubelet))
    return measure


def encoder_health(encoder, frames: int, side: int) -> Measure:
    """A classifier's encoder on every token of a fixed ``frames`` × ``side``² window of the
    fixed clips (fine-tuning)."""
    from lvmae.experiments.engine.views import random_window

    def measure(batch: dict) -> dict[str, float]:
        video = random_window(batch["video"], frames, side, torch.Generator().manual_seed(HEALTH_SEED))
        return feature_statistics(rows_of(in_eval_mode(encoder, lambda: encoder(video))))
    return measure

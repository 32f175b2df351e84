"""The statistics a study report decides from: a paired t-test on per-seed differences (arms that
share seeds share their tokenizer and data order, so pairing removes the seed's own effect), Welch's
unequal-variance t-test where they do not pair, the 95% t-interval of the difference, Holm's
step-down correction of a family of p-values, and two one-sided tests (TOST) for equivalence within
a margin. Plain Python (SciPy is not a dependency of lvmae): the t distribution comes from the
regularised incomplete beta function; the tests check it against textbook values, and against
``scipy.stats`` where SciPy happens to be installed.

Every test compares ``arm − reference``: a positive ``diff`` means the arm scored higher.
"""
from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from typing import Literal

CONFIDENCE = 0.95
MIN_VALUES = 2          # a t-test needs a variance: ≥ 2 values (pairs) per side
_BETA_STEPS = 300       # continued-fraction terms (converges in < 100 for the df seen here)
_BETA_TOLERANCE = 1e-12
_TINY = 1e-300
_QUANTILE_STEPS = 200   # bisection halvings: far below 1e-12 of the bracket


@dataclass(frozen=True)
class Difference:
    """One test of ``mean(arm) − mean(reference)``: its kind, estimate, standard error, degrees of
    freedom, t, two-sided p, the ``CONFIDENCE`` interval and the values it used (pairs for a
    paired test, per side for Welch)."""

    kind: Literal["paired", "welch"]
    diff: float
    se: float
    df: float
    t: float
    p: float
    ci_low: float
    ci_high: float
    n: int


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _BETA_STEPS):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _BETA_TOLERANCE:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b), x in [0, 1]."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@functools.lru_cache(maxsize=256)
def t_quantile(q: float, df: float) -> float:
    """The t with P(T ≤ t) = q (bisection on ``t_cdf``; the CDF is monotone). Cached: a report asks
    for the same (q, df) — paired tests over n seeds all have df = n − 1 — many times."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"t_quantile: q must be in (0, 1), got {q}")
    if q < 0.5:
        return -t_quantile(1.0 - q, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < q:
        high *= 2.0
    for _ in range(_QUANTILE_STEPS):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if t_cdf(middle, df) < q else (low, middle)
    return 0.5 * (low + high)


def _difference(kind: Literal["paired", "welch"], diff: float, se: float, df: float, n: int) -> Difference:
    """t, two-sided p and interval of ``diff`` with standard error ``se``. A zero ``se`` (every
    value identical) gives t = ±inf and p = 0 when diff ≠ 0, and p = 1 when diff = 0."""
    if se == 0.0:
        return Difference(kind, diff, se, df, math.copysign(math.inf, diff) if diff else 0.0,
                          0.0 if diff else 1.0, diff, diff, n)
    t = diff / se
    half = t_quantile(0.5 + CONFIDENCE / 2.0, df) * se
    return Difference(kind, diff, se, df, t, incomplete_beta(df / 2.0, 0.5, df / (df + t * t)),
                      diff - half, diff + half, n)


def paired(sample: list[float], reference: list[float]) -> Difference:
    """The paired t-test of ``sample − reference``, value i of each from the same seed."""
    if len(sample) != len(reference) or len(sample) < MIN_VALUES:
        raise ValueError(f"paired: needs ≥ {MIN_VALUES} pairs of aligned values, got {len(sample)} "
                         f"and {len(reference)}")
    differences = [a - b for a, b in zip(sample, reference)]
    se = math.sqrt(statistics.variance(differences) / len(differences))
    return _difference("paired", statistics.fmean(differences), se, len(differences) - 1.0, len(differences))


def welch(sample: list[float], reference: list[float]) -> Difference:
    """Welch's unequal-variance t-test of mean(sample) − mean(reference) (Welch–Satterthwaite df)."""
    if min(len(sample), len(reference)) < MIN_VALUES:
        raise ValueError(f"welch: needs ≥ {MIN_VALUES} values per sample, got {len(sample)} and {len(reference)}")
    diff = statistics.fmean(sample) - statistics.fmean(reference)
    va, vb = statistics.variance(sample) / len(sample), statistics.variance(reference) / len(reference)
    if va + vb == 0.0:
        return _difference("welch", diff, 0.0, math.nan, min(len(sample), len(reference)))
    df = (va + vb) ** 2 / (va ** 2 / (len(sample) - 1) + vb ** 2 / (len(reference) - 1))
    return _difference("welch", diff, math.sqrt(va + vb), df, min(len(sample), len(reference)))


def compare(arm: dict[int, float], reference: dict[int, float]) -> Difference | None:
    """Arm vs reference from their per-seed values: paired over the seeds both have when they share
    ≥ ``MIN_VALUES`` seeds, else Welch over all values; None when neither has enough values."""
    shared = sorted(set(arm) & set(reference))
    if len(shared) >= MIN_VALUES:
        return paired([arm[s] for s in shared], [reference[s] for s in shared])
    if min(len(arm), len(reference)) >= MIN_VALUES:
        return welch(list(arm.values()), list(reference.values()))
    return None


def tost(test: Difference, margin: float) -> float:
    """The p-value of two one-sided tests that −margin < diff < margin (equivalence): the larger of
    P(T ≥ (diff + margin)/se) and P(T ≤ (diff − margin)/se). Below α exactly when the
    (1 − 2α) interval lies inside ±margin."""
    if margin <= 0:
        raise ValueError(f"tost: margin must be > 0, got {margin}")
    if test.se == 0.0:
        return 0.0 if abs(test.diff) < margin else 1.0
    above = 1.0 - t_cdf((test.diff + margin) / test.se, test.df)
    below = t_cdf((test.diff - margin) / test.se, test.df)
    return max(above, below)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error ≤ α for any dependence between the tests):
    the i-th smallest of m p-values is multiplied by (m − i + 1), made monotone, capped at 1.
    Returned in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted

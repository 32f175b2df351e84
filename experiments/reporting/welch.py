"""Welch's unequal-variance t-test (two-sided), with the regularised incomplete beta function
for its p-value (no SciPy needed; checked against ``scipy.stats.ttest_ind(equal_var=False)``).
"""
from __future__ import annotations

import math
import statistics


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-12:
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


def welch(sample: list[float], reference: list[float]) -> dict[str, float]:
    """Welch's two-sided t-test of mean(sample) − mean(reference): {diff, t, df, p}. Needs ≥ 2
    values on each side; two constant samples give p = 1 when equal, 0 when not."""
    if len(sample) < 2 or len(reference) < 2:
        raise ValueError(f"welch: needs ≥ 2 values per sample, got {len(sample)} and {len(reference)}")
    diff = statistics.fmean(sample) - statistics.fmean(reference)
    va, vb = statistics.variance(sample) / len(sample), statistics.variance(reference) / len(reference)
    if va + vb == 0.0:
        return {"diff": diff, "t": math.copysign(math.inf, diff) if diff else 0.0, "df": math.nan,
                "p": 0.0 if diff else 1.0}
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(sample) - 1) + vb ** 2 / (len(reference) - 1))
    return {"diff": diff, "t": t, "df": df, "p": incomplete_beta(df / 2.0, 0.5, df / (df + t * t))}

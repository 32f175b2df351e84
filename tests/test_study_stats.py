"""The statistics of the study report (experiments/reporting/stats.py): textbook values, the
choice of paired vs Welch, interval coverage, Holm's adjustment and equivalence (TOST); checked
against SciPy as well where it is installed (it is not a dependency of lvmae)."""
from __future__ import annotations

import math
import random

import pytest

from lvmae.experiments.reporting import stats

# Student's sleep data (Cushny & Peebles, 1905; R's `sleep`): extra hours of sleep of the same 10
# patients under two drugs. R: t.test(g1, g2, paired = TRUE) gives t = -4.0621, df = 9,
# p = 0.002833, 95% CI [-2.4598858, -0.7001142]; t.test(g1, g2) (Welch) gives t = -1.8608,
# df = 17.776, p = 0.07939, 95% CI [-3.3654832, 0.2054832].
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_t_distribution_matches_the_tables():
    # Two-sided 95% critical values of Student's t (any statistics table).
    for df, critical in ((2, 4.302652729911275), (4, 2.7764451051977987), (10, 2.2281388519649385)):
        assert stats.t_quantile(0.975, df) == pytest.approx(critical, rel=1e-8)
        assert stats.t_quantile(0.025, df) == pytest.approx(-critical, rel=1e-8)
    # df = 2 has a closed form: F(t) = 1/2 + t / (2 sqrt(2 + t²)).
    for t in (-3.0, -0.5, 0.0, 1.0, 7.0):
        assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_paired_and_welch_match_the_textbook_sleep_data():
    paired = stats.paired(SLEEP_1, SLEEP_2)
    assert paired.kind == "paired" and paired.n == 10 and paired.df == 9
    assert paired.diff == pytest.approx(-1.58) and paired.t == pytest.approx(-4.062128, rel=1e-6)
    assert paired.p == pytest.approx(0.002833, rel=1e-3)
    assert (paired.ci_low, paired.ci_high) == pytest.approx((-2.4598858, -0.7001142), rel=1e-6)
    welch = stats.welch(SLEEP_1, SLEEP_2)
    assert welch.kind == "welch" and welch.df == pytest.approx(17.776474, rel=1e-6)
    assert welch.t == pytest.approx(-1.860813, rel=1e-6) and welch.p == pytest.approx(0.07939, rel=1e-3)
    assert (welch.ci_low, welch.ci_high) == pytest.approx((-3.3654832, 0.2054832), rel=1e-6)


def test_compare_pairs_by_seed_and_falls_back_to_welch():
    arm = dict(enumerate(SLEEP_1, start=1))
    reference = dict(enumerate(SLEEP_2, start=1))
    # The same seeds: paired, whatever order the values come in.
    shuffled = dict(sorted(reference.items(), reverse=True))
    assert stats.compare(arm, shuffled) == stats.paired(SLEEP_1, SLEEP_2)
    # Seeds in common are paired; a seed only one arm has is left out of the pairs.
    extra = {**arm, 11: 9.9}
    assert stats.compare(extra, reference).kind == "paired" and stats.compare(extra, reference).n == 10
    # No seed in common (or one): Welch over all values.
    disjoint = {seed + 100: value for seed, value in reference.items()}
    assert stats.compare(arm, disjoint) == stats.welch(SLEEP_1, SLEEP_2)
    one_shared = {1: SLEEP_2[0], **{seed + 100: value for seed, value in list(reference.items())[1:]}}
    assert stats.compare(arm, one_shared).kind == "welch"
    assert stats.compare({1: 0.5}, reference) is None


def test_interval_contains_the_true_difference():
    # A constructed example: the arm is the reference + 0.05, plus a seed effect both share.
    reference = {seed: 0.7 + 0.03 * math.sin(seed) for seed in range(1, 6)}
    arm = {seed: value + 0.05 + 0.004 * (-1) ** seed for seed, value in reference.items()}
    test = stats.compare(arm, reference)
    assert test.ci_low < 0.05 < test.ci_high and test.ci_high - test.ci_low < 0.02
    # Coverage: over many simulated 5-seed studies the 95% interval holds the true difference
    # about 95% of the time (binomial sd at 2,000 draws: 0.5 points).
    rng, true_diff, hits, draws = random.Random(0), 0.03, 0, 2000
    for _ in range(draws):
        seed_effect = [rng.gauss(0.0, 0.05) for _ in range(5)]
        ref = {s: 0.6 + e + rng.gauss(0.0, 0.01) for s, e in enumerate(seed_effect)}
        arm = {s: 0.6 + true_diff + e + rng.gauss(0.0, 0.01) for s, e in enumerate(seed_effect)}
        test = stats.compare(arm, ref)
        hits += test.ci_low <= true_diff <= test.ci_high
    assert 0.93 <= hits / draws <= 0.97


def test_holm_adjusts_as_the_textbook_does():
    # m = 4: sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → 0.06 (monotone).
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])        # capped at 1
    assert stats.holm([0.02]) == [0.02] and stats.holm([]) == []
    # Two tests at 0.03: each would pass alone at α = 0.05, not as a family.
    assert min(stats.holm([0.03, 0.03])) > 0.05


def test_tost_accepts_a_true_equivalence_and_rejects_a_difference_beyond_the_margin():
    reference = {s: 0.8 + 0.02 * math.cos(s) for s in range(1, 6)}
    close = {s: v + 0.002 * (-1) ** s for s, v in reference.items()}           # diff ≈ 0, tight
    assert stats.tost(stats.compare(close, reference), margin=0.02) < 0.01
    beyond = {s: v - 0.05 + 0.002 * (-1) ** s for s, v in reference.items()}   # diff ≈ −0.05 > margin
    assert stats.tost(stats.compare(beyond, reference), margin=0.02) > 0.5
    # p < 0.05 exactly when the 90% interval lies inside ±margin.
    test = stats.paired(SLEEP_1, SLEEP_2)
    half90 = stats.t_quantile(0.95, test.df) * test.se
    for margin in (1.0, 2.0, 2.2, 3.0):
        inside = -margin < test.diff - half90 and test.diff + half90 < margin
        assert (stats.tost(test, margin) < 0.05) == inside
    with pytest.raises(ValueError, match="margin"):
        stats.tost(test, 0.0)


def test_degenerate_samples():
    assert stats.welch([0.5, 0.5], [0.5, 0.5]).p == 1.0
    assert stats.welch([0.9, 0.9], [0.5, 0.5]).p == 0.0
    assert stats.paired([0.9, 0.8], [0.5, 0.4]).p == 0.0          # every seed differs by exactly 0.4
    with pytest.raises(ValueError, match="≥ 2 values"):
        stats.welch([0.5], [0.4, 0.6])
    with pytest.raises(ValueError, match="pairs"):
        stats.paired([0.5, 0.6], [0.4])


def test_against_scipy_where_installed():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(1)
    for _ in range(20):
        a = [rng.gauss(0.5, 0.1) for _ in range(rng.randint(2, 9))]
        b = [rng.gauss(0.55, 0.2) for _ in range(rng.randint(2, 9))]
        assert stats.welch(a, b).p == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-6)
        b = b[:len(a)] + [rng.gauss(0.55, 0.2) for _ in range(len(a) - len(b))]
        assert stats.paired(a, b).p == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue, rel=1e-6)
        df = rng.uniform(1.5, 30)
        assert stats.t_quantile(0.975, df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=1e-8)

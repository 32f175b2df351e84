"""What a study's stored runs decide. Only runs whose configuration hash is the study file's count
(the newest per arm, seed, stage and task); per evaluation (stage, task) every arm's final value
of the study's primary metric per seed; each arm against the reference by a paired t-test over
the seeds both have (Welch where they share fewer than two), with the difference's 95% interval;
an equivalence test (TOST) where the study file declares the comparison one; Holm's correction
over every test of the study; saturation flags (an arm within ``saturation_margin`` of the
ceiling or of the random control); and the verdict on the study's claim.

A comparison decides only from ≥ ``MIN_SEEDS`` seeds and from Holm-adjusted p. Saturation
bounds what it can show: two arms saturated at the same end (both at the ceiling, or both at the
random control's level) cannot be ranked — a task every arm solves, or that a random encoder
solves as well, cannot tell them apart — and where either arm is saturated, neither "no
significant difference" nor equivalence means anything. A significant difference between a
saturated arm and one that is not stands (with the flag shown): a ceiling can only shrink it.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from lvmae.experiments.reporting import stats
from lvmae.experiments.reporting.study_command import expected_hash
from lvmae.experiments.reporting.study_file import EQUIVALENCE, Comparison, Study
from lvmae.experiments.reporting.study_runs import StoredRun, current_runs

ALPHA = 0.05
MIN_SEEDS = 5           # the fewest seeds (pairs) a comparison decides from
TOO_FEW, SATURATED = "too few seeds", "cannot rank (saturated)"
HIGHER, LOWER, NO_DIFFERENCE = "higher", "lower", "no significant difference"
EQUIVALENT, NOT_EQUIVALENT = "equivalent", "not shown equivalent"
AT_CEILING, AT_RANDOM = "at ceiling", "at random control"


@dataclass
class ArmStats:
    """One arm's final metric values in one evaluation, by seed."""

    arm: str
    by_seed: dict[int, float]

    @property
    def seeds(self) -> list[int]:
        return sorted(self.by_seed, key=lambda s: (s is None, s))

    @property
    def values(self) -> list[float]:
        return [self.by_seed[s] for s in self.seeds]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else math.nan


@dataclass
class Row:
    """An arm's line of a table: its values, saturation, test against the reference, the p its
    verdict uses (two-sided, or TOST for an equivalence), that p after Holm, and the outcome."""

    stats: ArmStats
    comparison: Comparison
    saturated: str = ""                  # AT_CEILING / AT_RANDOM, or "" when not saturated
    test: stats.Difference | None = None   # None: the reference, or too few values to test
    p: float | None = None
    p_adjusted: float | None = None
    outcome: str = ""


@dataclass
class Table:
    command: str
    task: str | None
    rows: list[Row]
    ceiling: float | None = None         # the ceiling's value in this evaluation (number or ceiling arm's mean)
    floor: float | None = None           # the random control's mean in this evaluation

    @property
    def name(self) -> str:
        return evaluation_name(self.command, self.task)

    @property
    def too_few(self) -> list[str]:
        """The arms with fewer than MIN_SEEDS runs, when a comparison is undecided for it (a
        reference short of seeds leaves every comparison undecided: it is the one named)."""
        if not any(row.outcome == TOO_FEW for row in self.rows):
            return []
        return [row.stats.arm for row in self.rows if len(row.stats.values) < MIN_SEEDS]


@dataclass
class Analysis:
    study: Study
    runs: list[StoredRun]                # the runs that count (hash matches; newest per seed)
    stale: list[StoredRun] = field(default_factory=list)   # of another configuration (or none recorded): ignored
    repeats: int = 0                     # older runs of a matching (arm, seed, stage, task): superseded
    tables: list[Table] = field(default_factory=list)

    @property
    def tests(self) -> int:
        return sum(row.p is not None for table in self.tables for row in table.rows)


def evaluation_name(command: str, task: str | None) -> str:
    return command if task is None else f"{command} on {task}"


def arm_stats(study: Study, runs: list[StoredRun], command: str, task: str | None = None,
              metric: str | None = None) -> list[ArmStats]:
    """Per arm (study order), the final ``metric`` (default: the study's) of the ``command`` runs
    on ``task`` (None: the study's own data), one per seed. ``runs`` are the runs that count, one
    per seed already (``current_runs``)."""
    metric = metric or study.metric_for(command)
    result = []
    for arm in study.arms:
        by_seed = {run.seed: run.finals[metric] for run in runs
                   if run.arm == arm and run.command == command and run.task == task and metric in run.finals}
        if by_seed:
            result.append(ArmStats(arm, by_seed))
    return result


def analyse(study: Study, stored: list[StoredRun], overrides: list[str] = (), extra: list[str] = ()) -> Analysis:
    """Everything the report says about ``study`` from its ``stored`` runs (``study_runs``), for
    runs made with ``overrides`` gin files and ``extra`` bindings (as ``study run`` was given)."""
    runs, stale, repeats = current_runs(stored, expected_hash(study, list(overrides), list(extra)))
    analysis = Analysis(study, runs, stale, repeats)
    for command, task in study.evaluations():
        arms = arm_stats(study, runs, command, task)
        if arms:
            analysis.tables.append(_table(study, command, task, arms))
    tested = [row for table in analysis.tables for row in table.rows if row.p is not None]
    for row, adjusted in zip(tested, stats.holm([row.p for row in tested])):
        row.p_adjusted = adjusted
    for table in analysis.tables:
        reference = next((row for row in table.rows if row.stats.arm == study.reference), None)
        for row in table.rows:
            if row is not reference:
                row.outcome = _outcome(row, reference)
    return analysis


def _table(study: Study, command: str, task: str | None, arms: list[ArmStats]) -> Table:
    """One evaluation's rows with their saturation flags and tests (p before Holm)."""
    means = {a.arm: a.mean for a in arms}
    ceiling = study.ceiling if not isinstance(study.ceiling, str) else means.get(study.ceiling)
    table = Table(command, task, [], ceiling, means.get(study.random_control))
    reference = next((a for a in arms if a.arm == study.reference), None)
    for arm in arms:
        row = Row(arm, study.comparison(arm.arm), _saturation(study, table, arm))
        if reference is not None and arm is not reference:
            row.test = stats.compare(arm.by_seed, reference.by_seed)
        if row.test is not None:
            row.p = (stats.tost(row.test, row.comparison.margin) if row.comparison.kind == EQUIVALENCE
                     else row.test.p)
        table.rows.append(row)
    return table


def _saturation(study: Study, table: Table, arm: ArmStats) -> str:
    """AT_CEILING when the arm's mean is within the margin of the ceiling (or above it), AT_RANDOM
    when within the margin of the random control's mean; the ceiling arm and the random control
    are not measured against themselves."""
    if table.ceiling is not None and arm.arm != study.ceiling and arm.mean >= table.ceiling - study.saturation_margin:
        return AT_CEILING
    if table.floor is not None and arm.arm != study.random_control and \
            abs(arm.mean - table.floor) <= study.saturation_margin:
        return AT_RANDOM
    return ""


def _outcome(row: Row, reference: Row | None) -> str:
    """What the comparison of ``row`` with the reference decides, at Holm-adjusted p < ALPHA."""
    if row.test is None or row.test.n < MIN_SEEDS:
        return TOO_FEW
    either = row.saturated or (reference.saturated if reference is not None else "")
    if row.saturated and reference is not None and row.saturated == reference.saturated:
        return SATURATED          # both at the same end: the task cannot tell them apart
    if row.comparison.kind == EQUIVALENCE:
        return SATURATED if either else EQUIVALENT if row.p_adjusted < ALPHA else NOT_EQUIVALENT
    if row.p_adjusted >= ALPHA:
        return SATURATED if either else NO_DIFFERENCE
    return HIGHER if row.test.diff > 0 else LOWER


def verdict(study: Study, table: Table) -> str:
    """Whether ``table`` supports the study's claim — the reference is higher than every other arm,
    or equivalent to it where ``comparisons`` says equivalence (the ``controls`` aside): held
    (every such comparison decided for it), contradicted (an arm significantly higher), or not
    shown (saying why: no difference, not equivalent, saturated, too few seeds, not run). What the
    controls show is added after."""
    reference = next((row for row in table.rows if row.stats.arm == study.reference), None)
    others = [row for row in table.rows if row is not reference and row.stats.arm not in study.controls]
    # A study of the reference against its controls alone (e.g. pre-trained vs random init): the
    # controls are what the claim compares with.
    controls_are_the_claim = not [a for a in study.arms if a != study.reference and a not in study.controls]
    if controls_are_the_claim:
        others = [row for row in table.rows if row is not reference]
    if reference is None or not others:
        return "not tested (reference or other arms missing)"
    by_outcome: dict[str, list[str]] = {}
    for row in others:
        by_outcome.setdefault(row.outcome, []).append(row.stats.arm)
    missing = [a for a in study.arms if a != study.reference and (controls_are_the_claim or a not in study.controls)
               and not any(row.stats.arm == a for row in table.rows)]
    if by_outcome.get(HIGHER):
        text = f"contradicted: {', '.join(by_outcome[HIGHER])} significantly higher than {study.reference}"
    elif set(by_outcome) <= {LOWER, EQUIVALENT} and not missing:
        parts = [f"significantly higher than {', '.join(by_outcome[LOWER])}"] if LOWER in by_outcome else []
        parts += [f"equivalent to {', '.join(by_outcome[EQUIVALENT])} (TOST)"] if EQUIVALENT in by_outcome else []
        text = f"held: {study.reference} " + " and ".join(parts) + f" (Holm-adjusted p < {ALPHA})"
    else:
        reasons = {NO_DIFFERENCE: NO_DIFFERENCE + " for", NOT_EQUIVALENT: "not shown equivalent:",
                   SATURATED: "saturated, cannot rank:", TOO_FEW: f"too few seeds (n < {MIN_SEEDS}):"}
        parts = [f"{words} {', '.join(by_outcome[key])}" for key, words in reasons.items() if key in by_outcome]
        parts += [f"not run: {', '.join(missing)}"] if missing else []
        text = "not shown (" + "; ".join(parts) + ")"
    words = {HIGHER: "significantly higher", LOWER: "significantly lower"}
    controls = [f"{row.stats.arm}: {words.get(row.outcome, row.outcome)}" for row in table.rows
                if row.stats.arm in study.controls and not controls_are_the_claim]
    return text + (f"; control{'s' if len(controls) > 1 else ''} vs {study.reference}: {', '.join(controls)}"
                   if controls else "")

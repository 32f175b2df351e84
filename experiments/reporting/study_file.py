"""A study file (``gin/studies/*.yaml``), read and validated: the gin files and bindings every
run uses, the stages chained per (arm, seed), the ``prepare`` stages shared by every arm (or
another study's, ``prepared_by``), extra evaluation ``tasks``, the seeds, the arms, the
reference arm, the primary metric (the only one verdicts use), the kind of each arm's comparison
with the reference (``comparisons``: superiority, or equivalence within a margin), and what
bounds the metric (``ceiling``, ``random_control``, ``saturation_margin``). Errors name the file
and the key at fault.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PACKAGE_ROOT = Path(__file__).resolve().parents[2]

STAGES = ("pretrain_tokenizer", "precompute", "pretrain", "finetune", "probe")
SHARED = "_shared"
EVALUATED = ("finetune", "probe")
REQUIRED = ("name", "question", "gin", "stages", "seeds", "arms", "reference", "metric")
OPTIONAL = ("bindings", "notes", "prepare", "claim", "prepared_by", "tasks", "task_stages", "reuse", "controls",
            "comparisons", "ceiling", "random_control", "saturation_margin", "descriptive_metrics")
SUPERIORITY, EQUIVALENCE = "superiority", "equivalence"
# Two points of accuracy: closer than this to the ceiling or to a random encoder, an arm is
# "saturated" (the task cannot tell it from either end) unless the study file says otherwise.
SATURATION_MARGIN = 0.02


@dataclass(frozen=True)
class Comparison:
    """How an arm is compared with the reference: ``superiority`` (two-sided t-test; the claim is
    that the reference is higher) or ``equivalence`` (TOST: the difference lies within ±margin)."""

    kind: str = SUPERIORITY
    margin: float | None = None


@dataclass
class Study:
    """One study file, validated. ``arms`` maps an arm's name to its extra gin bindings."""

    path: str
    name: str
    question: str
    gin: list[str]
    stages: list[str]
    seeds: list[int]
    arms: dict[str, list[str]]
    reference: str
    metric: str
    bindings: list[str] = field(default_factory=list)
    notes: str = ""
    prepare: list[str] = field(default_factory=list)
    claim: str = ""
    prepared_by: str = ""      # the study whose prepare stages (and their runs) this one shares
    tasks: dict[str, list[str]] = field(default_factory=dict)   # extra evaluation data: name → gin files and bindings
    task_stages: list[str] = field(default_factory=list)        # the evaluated stages run on the tasks
    reuse: dict[str, tuple[str, str]] = field(default_factory=dict)  # arm → (study, arm) run identically there
    controls: list[str] = field(default_factory=list)   # arms shown and tested, but outside the claim
    comparisons: dict[str, Comparison] = field(default_factory=dict)   # arm → kind (superiority if absent)
    ceiling: float | str | None = None      # the metric's ceiling: a number, or an arm (oracle, supervised)
    random_control: str | None = None       # the randomly initialised encoder's arm
    saturation_margin: float = SATURATION_MARGIN
    descriptive_metrics: list[str] = field(default_factory=list)   # shown, never tested
    stage_metrics: dict[str, str] = field(default_factory=dict)    # evaluated stage → its primary metric

    def metric_for(self, stage: str) -> str:
        """The primary metric of an evaluated stage (``metric``, or the stage's entry when the
        study file maps stages to metrics, e.g. the probe's ``eval/linear/top1`` beside the
        fine-tune's ``eval/top1``). An evaluation name (``probe on <task>``) counts as its stage."""
        return self.stage_metrics.get(stage.split(" ")[0], self.metric)

    def comparison(self, arm: str) -> Comparison:
        return self.comparisons.get(arm, Comparison())

    def evaluations(self) -> list[tuple[str, str | None]]:
        """(evaluated stage, task) pairs: each evaluated stage on the study's own data (task
        None), then on every extra task."""
        evaluated = [s for s in self.stages if s in EVALUATED]
        return [(s, None) for s in evaluated] + [(s, t) for t in self.tasks for s in self.task_stages]


def prepare_owner(study: Study) -> Study:
    """The study whose ``_shared`` folder and prepare runs ``study`` uses: itself, or the study
    named by its ``prepared_by`` key (a file beside it)."""
    if not study.prepared_by:
        return study
    return load_study(str(Path(study.path).with_name(study.prepared_by + ".yaml")))


def load_study(path: str) -> Study:
    """Reads and validates a study file; errors name the file and the key at fault. A relative
    path that is not a file here is read from the package (its shipped ``gin/studies/``), as
    gin files are, so an installed lvmae runs its studies from any folder."""
    shipped = PACKAGE_ROOT / path
    if not os.path.isabs(path) and not os.path.isfile(path) and shipped.is_file():
        path = str(shipped)
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise SystemExit(f"study: no study file at {path!r}") from None
    except yaml.YAMLError as error:
        raise SystemExit(f"study: {path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"study: {path}: expected a mapping of keys, got {type(data).__name__}")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise SystemExit(f"study: {path}: missing key(s) {missing}")
    unknown = set(data) - set(REQUIRED) - set(OPTIONAL)
    if unknown:
        raise SystemExit(f"study: {path}: unknown key(s) {sorted(unknown)}")
    stages, prepare = list(data["stages"]), list(data.get("prepare") or [])
    if not stages or any(s not in STAGES for s in stages) or not any(s in EVALUATED for s in stages):
        raise SystemExit(f"study: {path}: stages must be drawn from {STAGES} and include one of "
                         f"{EVALUATED}, got {stages}")
    chain = prepare + stages
    if any(s in EVALUATED for s in prepare) or chain != sorted(set(chain), key=STAGES.index):
        raise SystemExit(f"study: {path}: prepare + stages must follow the order {STAGES} without "
                         f"repeats (evaluations only in stages), got prepare {prepare} stages {stages}")
    seeds = data["seeds"]
    seeds = list(range(1, seeds + 1)) if isinstance(seeds, int) else list(seeds)
    if not seeds or any(not isinstance(s, int) for s in seeds):
        raise SystemExit(f"study: {path}: seeds must be a count or a list of integers, got {data['seeds']!r}")
    arms = data["arms"]
    if not isinstance(arms, dict) or not arms:
        raise SystemExit(f"study: {path}: arms must map arm names to lists of bindings")
    arms = {str(k): list(v or []) for k, v in arms.items()}
    for arm in arms:
        if not arm or any(c in arm for c in ", /="):
            raise SystemExit(f"study: {path}: arm name {arm!r} must be non-empty without ',', ' ', '/' or '='")
    if str(data["reference"]) not in arms:
        raise SystemExit(f"study: {path}: reference {data['reference']!r} is not an arm ({list(arms)})")
    gin = [data["gin"]] if isinstance(data["gin"], str) else list(data["gin"])
    bindings = list(data.get("bindings") or [])
    prepared_by = str(data.get("prepared_by") or "")
    if prepared_by:
        # One tokenizer (and one precomputed target set) per seed for several studies: the
        # owner's prepare stages run once, in its _shared folder, under its name.
        if prepare:
            raise SystemExit(f"study: {path}: give either prepare or prepared_by, not both")
        owner_path = Path(path).with_name(prepared_by + ".yaml")
        if not owner_path.is_file():
            raise SystemExit(f"study: {path}: prepared_by {prepared_by!r}: no study file {owner_path}")
        owner = load_study(str(owner_path))
        if owner.prepared_by or not owner.prepare:
            raise SystemExit(f"study: {path}: prepared_by {prepared_by!r} must name a study with its own "
                             f"prepare stages (it has prepare {owner.prepare}, prepared_by {owner.prepared_by!r})")
        for key, mine, theirs in (("gin", gin, owner.gin), ("bindings", bindings, owner.bindings)):
            if mine != theirs:
                raise SystemExit(f"study: {path}: prepared_by {prepared_by!r} needs the same {key} as "
                                 f"{owner_path} (the prepare stages read them): {mine} != {theirs}")
        prepare = owner.prepare
        if any(s in prepare for s in stages):
            raise SystemExit(f"study: {path}: stages {stages} repeat {prepared_by!r}'s prepare stages {prepare}")
    tasks = data.get("tasks") or {}
    if not isinstance(tasks, dict) or any(not isinstance(v, list) or not v for v in tasks.values()):
        raise SystemExit(f"study: {path}: tasks must map task names to non-empty lists of gin files and bindings")
    tasks = {str(k): list(v) for k, v in tasks.items()}
    for task in tasks:
        if not task or any(c in task for c in ", /=") or task in arms:
            raise SystemExit(f"study: {path}: task name {task!r} must be non-empty without ',', ' ', '/' "
                             f"or '=' and differ from the arm names")
    evaluated = [s for s in stages if s in EVALUATED]
    task_stages = list(data.get("task_stages") or evaluated)
    if any(s not in evaluated for s in task_stages):
        raise SystemExit(f"study: {path}: task_stages {task_stages} must be among the evaluated stages {evaluated}")
    study = Study(path, str(data["name"]), str(data["question"]).strip(), gin, stages, seeds, arms,
                  str(data["reference"]), _primary_metric(path, data["metric"], stages), bindings,
                  str(data.get("notes") or "").strip(), prepare, str(data.get("claim") or "").strip(),
                  prepared_by, tasks, task_stages)
    study.reuse = {arm: _reused_arm(study, arm, str(source)) for arm, source in (data.get("reuse") or {}).items()}
    study.stage_metrics = {str(k): str(v) for k, v in data["metric"].items()} if isinstance(data["metric"], dict) else {}
    study.controls = [str(arm) for arm in data.get("controls") or []]
    if any(arm not in arms or arm == study.reference for arm in study.controls):
        raise SystemExit(f"study: {path}: controls {study.controls} must be arms other than the reference")
    _read_evidence(study, data)
    return study


def _primary_metric(path: str, metric, stages: list[str]) -> str:
    """``metric``: one metric name, or a mapping {evaluated stage: metric name} (every evaluated
    stage of the study named); → the first evaluated stage's (the default of ``metric_for``)."""
    evaluated = [s for s in stages if s in EVALUATED]
    if isinstance(metric, dict):
        names = [str(k) for k in metric]
        if sorted(names) != sorted(evaluated) or any(not isinstance(v, str) or not v.strip() for v in metric.values()):
            raise SystemExit(f"study: {path}: metric as a mapping must name one metric for each evaluated stage "
                             f"{evaluated}, got {metric!r}")
        return str(metric[evaluated[0]]) if evaluated else str(next(iter(metric.values())))
    if not isinstance(metric, str) or not metric.strip():
        raise SystemExit(f"study: {path}: metric must name the one metric verdicts use (or map each evaluated "
                         f"stage {evaluated} to one), got {metric!r}")
    return metric


def _read_evidence(study: Study, data: dict) -> None:
    """The keys that say how the report decides: the primary ``metric``, ``comparisons``,
    ``ceiling``, ``random_control``, ``saturation_margin`` and ``descriptive_metrics``."""
    path = study.path
    comparisons = data.get("comparisons") or {}
    if not isinstance(comparisons, dict):
        raise SystemExit(f"study: {path}: comparisons must map arm names to {{kind: {SUPERIORITY}}} or "
                         f"{{kind: {EQUIVALENCE}, margin: <number>}}")
    for arm, spec in comparisons.items():
        where = f"study: {path}: comparisons: {arm}"
        if str(arm) not in study.arms or str(arm) == study.reference:
            raise SystemExit(f"{where}: must be an arm other than the reference {study.reference!r} ({list(study.arms)})")
        spec = {"kind": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or set(spec) - {"kind", "margin"} or spec.get("kind") not in (SUPERIORITY,
                                                                                                 EQUIVALENCE):
            raise SystemExit(f"{where}: expected {{kind: {SUPERIORITY}}} or {{kind: {EQUIVALENCE}, margin: "
                             f"<number>}}, got {spec!r}")
        margin = spec.get("margin")
        if spec["kind"] == EQUIVALENCE and not _positive_number(margin):
            raise SystemExit(f"{where}: an {EQUIVALENCE} comparison needs margin: a number > 0, got {margin!r}")
        if spec["kind"] == SUPERIORITY and margin is not None:
            raise SystemExit(f"{where}: margin is only for {EQUIVALENCE} comparisons")
        study.comparisons[str(arm)] = Comparison(spec["kind"], None if margin is None else float(margin))
    ceiling = data.get("ceiling")
    if ceiling is not None:
        if isinstance(ceiling, bool) or not isinstance(ceiling, (int, float, str)) or (
                isinstance(ceiling, str) and ceiling not in study.arms):
            raise SystemExit(f"study: {path}: ceiling must be a number (e.g. 1.0) or an arm ({list(study.arms)}), "
                             f"got {ceiling!r}")
        study.ceiling = ceiling if isinstance(ceiling, str) else float(ceiling)
    control = data.get("random_control")
    if control is not None:
        if str(control) not in study.arms or str(control) == study.ceiling:
            raise SystemExit(f"study: {path}: random_control must be an arm other than the ceiling "
                             f"({list(study.arms)}), got {control!r}")
        study.random_control = str(control)
    margin = data.get("saturation_margin", SATURATION_MARGIN)
    if not _positive_number(margin):
        raise SystemExit(f"study: {path}: saturation_margin must be a number > 0, got {margin!r}")
    study.saturation_margin = float(margin)
    descriptive = data.get("descriptive_metrics") or []
    if not isinstance(descriptive, list) or any(not isinstance(m, str) or m == study.metric for m in descriptive):
        raise SystemExit(f"study: {path}: descriptive_metrics must list metric names other than metric "
                         f"{study.metric!r}, got {descriptive!r}")
    study.descriptive_metrics = list(descriptive)


def _positive_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _reused_arm(study: Study, arm: str, source: str) -> tuple[str, str]:
    """Checks that ``arm`` of ``study`` is run exactly as ``source`` (``<study>/<arm>``, a study
    file beside it): the same gin files, bindings, tokenizer (prepare owner), seeds and arm
    bindings, and stages that cover this study's. Its runs then serve both studies."""
    where = f"study: {study.path}: reuse {arm}: {source}"
    if arm not in study.arms:
        raise SystemExit(f"{where}: {arm!r} is not an arm ({list(study.arms)})")
    name, _, other_arm = source.partition("/")
    other_path = Path(study.path).with_name(name + ".yaml")
    if not other_arm or not other_path.is_file():
        raise SystemExit(f"{where}: name it as <study>/<arm> of a study file beside this one")
    other = load_study(str(other_path))
    mine_owner = study.prepared_by or (study.name if study.prepare else "")
    other_owner = other.prepared_by or (other.name if other.prepare else "")
    if not mine_owner and other_owner and other.prepare == [s for s in study.stages if s in other.prepare]:
        mine_owner = other_owner     # the arm trains its own tokenizer as the other's prepare stages do
    checks = [("gin files", study.gin, other.gin), ("bindings", study.bindings, other.bindings),
              ("tokenizer (prepare owner)", mine_owner, other_owner),
              ("arm bindings", study.arms[arm], other.arms.get(other_arm)),
              ("stages", [s for s in study.stages if s not in other.prepare + other.stages], [])]
    for what, mine, theirs in checks:
        if mine != theirs:
            raise SystemExit(f"{where}: the runs differ in their {what}: {mine} != {theirs}")
    return name, other_arm

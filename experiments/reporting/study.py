"""``python run.py study``: run a paper ablation from its study file, and render what the stored
runs show — a table (mean ± std, n), a plot, and a Welch t-test of every arm against the
study's reference — into ``docs/results.md``.

    python run.py study run    gin/studies/context.yaml                 # every arm × seed
    python run.py study run    gin/studies/context_finetune.yaml --arm 32f --seed 1
    python run.py study report gin/studies/*.yaml --write docs/results.md
    python run.py study run    gin/studies/context.yaml --override gin/studies/gpu_vit_b.gin

A study file (YAML) names the gin files every run uses, the common bindings, the stages
chained per (arm, seed) in the order ``pretrain_tokenizer → precompute → pretrain →
finetune / probe`` (each later stage reads what the earlier wrote: the runner binds the macros
TOKENIZER_WORKDIR, TOKENIZER_CHECKPOINT, PRECOMPUTED_DIR, PRECOMPUTED_MANIFEST and
``<stage>_loop.pretrained``), optional ``prepare`` stages run once per seed and shared by
every arm (e.g. one tokenizer for a masking study), the seeds, the arms (name → extra
bindings), the reference arm and the metric. Every run is an ordinary ``run.py`` run in its
own work folder ``<root>/<study>/<arm>/seed_<s>`` (``_shared`` for ``prepare``), tagged
``study=<name>`` and ``arm=<arm>`` (``meta.tags``). ``prepared_by: <study>`` shares another
study's prepare stages (same gin files and bindings; one tokenizer per seed for several
studies). ``tasks`` names extra evaluation data (gin files and bindings, e.g. the real-footage
task ``gin/data/arrow_of_time.gin``): every evaluated stage also runs once per task on the
arm's pre-trained encoder, tagged ``task=<name>``, and the report gives a table per stage and task;
the report reads the runs back from the database (``LVMAE_MONGO_URL`` or the local SecantusDB)
or, with ``LVMAE_OBSERVER=file``, from ``$LVMAE_RUNS_DIR``. ``run`` skips an (arm, seed, stage)
that already has a COMPLETED run, so a study can be run in pieces.

Significance: Welch's unequal-variance t-test (two-sided), arm vs reference, over the seeds'
final metric values; with n = 3 per arm only large, consistent differences reach p < 0.05.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

STAGES = ("pretrain_tokenizer", "precompute", "pretrain", "finetune", "probe")
SHARED = "_shared"
TOKENIZER_METRICS = ("eval/psnr", "eval/codebook_usage", "eval/perplexity")
EVALUATED = ("finetune", "probe")
STUDY_TAG, ARM_TAG, TASK_TAG = "study=", "arm=", "task="
ALPHA = 0.05
REQUIRED = ("name", "question", "gin", "stages", "seeds", "arms", "reference", "metric")
ROOT = Path(__file__).resolve().parents[2]


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
    """Reads and validates a study file; errors name the file and the key at fault."""
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
    unknown = set(data) - set(REQUIRED) - {"bindings", "notes", "prepare", "claim", "prepared_by", "tasks", "task_stages"}
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
    return Study(path, str(data["name"]), str(data["question"]).strip(), gin, stages, seeds, arms,
                 str(data["reference"]), str(data["metric"]), bindings,
                 str(data.get("notes") or "").strip(), prepare, str(data.get("claim") or "").strip(),
                 prepared_by, tasks, task_stages)


# ---------------------------------------------------------------------------------------------
# Running


def workdir_of(root: str, study: Study, arm: str, seed: int) -> str:
    return os.path.abspath(os.path.join(root, study.name, arm, f"seed_{seed}"))


def chain_bindings(study: Study, workdir: str, shared: str, stage: str) -> list[str]:
    """The macros and inputs that link ``stage`` to the stages before it (in ``shared`` when
    they are ``prepare`` stages, else in this arm's ``workdir``)."""
    where = {s: shared for s in study.prepare} | {s: workdir for s in study.stages}
    bindings = []
    if "pretrain_tokenizer" in where:
        folder = where["pretrain_tokenizer"]
        bindings += [f"TOKENIZER_WORKDIR = '{folder}'", f"TOKENIZER_CHECKPOINT = '{folder}/tokenizer/last.pt'"]
    if "precompute" in where:
        folder = where["precompute"]
        bindings += [f"PRECOMPUTED_DIR = '{folder}/precomputed'",
                     f"PRECOMPUTED_MANIFEST = '{folder}/precomputed/manifest.yaml'"]
    if stage in EVALUATED:
        checkpoint = f"'{where['pretrain']}/pretrain/last.pt'" if "pretrain" in where else "None"
        bindings.append(f"{stage}_loop.pretrained = {checkpoint}")
    return bindings


def stage_command(study: Study, arm: str, seed: int, stage: str, root: str,
                  overrides: list[str], extra: list[str], task: str | None = None) -> list[str]:
    """The ``run.py`` command line of one stage of one (arm, seed); ``arm`` is ``_shared`` for a
    ``prepare`` stage (no arm bindings). With ``task``, an evaluated stage runs on that task's
    data (its bindings after the arm's) in the sub-folder ``<task>`` of the arm's folder, still
    reading the arm's pre-trained encoder."""
    owner = prepare_owner(study)
    shared = workdir_of(root, owner, SHARED, seed)
    workdir = shared if arm == SHARED else workdir_of(root, study, arm, seed)
    args = [sys.executable, str(ROOT / "run.py"), stage]
    # A task's entries are gin files (``*.gin``, added after the study's) and bindings.
    task_items = study.tasks[task] if task is not None else []
    task_gin = [item for item in task_items if item.endswith(".gin")]
    for gin_file in [*study.gin, *overrides, *task_gin]:
        args += ["-g", gin_file]
    # The arm's bindings come after the chaining ones, so an arm may override an input (e.g.
    # probe_loop.pretrained = None: the random-encoder control); extra (-b) ones come last.
    chain = chain_bindings(study, workdir, shared, stage)
    if task is not None:
        workdir = os.path.join(workdir, task)
    bindings = [*study.bindings, f"WORKDIR = '{workdir}'", *chain, *study.arms.get(arm, []),
                *(item for item in task_items if not item.endswith(".gin")), *extra]
    for binding in bindings:
        args += ["-b", binding]
    tagged = owner if arm == SHARED else study
    tags = [STUDY_TAG + tagged.name, ARM_TAG + arm] + ([TASK_TAG + task] if task is not None else [])
    return args + [word for tag in tags for word in ("--tag", tag)] + ["with", f"seed={seed}"]


def run_study(study: Study, root: str, overrides: list[str], extra: list[str], arms: list[str],
              seeds: list[int], dry_run: bool, stages: list[str] | None = None) -> int:
    owner = prepare_owner(study)
    done = set()
    if not dry_run:
        done = {(r.arm, r.seed, r.command, r.task) for r in stored_runs(study.name) if r.arm != SHARED}
        done |= {(r.arm, r.seed, r.command, r.task) for r in stored_runs(owner.name) if r.arm == SHARED}
    failures = 0
    for seed in seeds:
        chosen = [stage for stage in study.stages if stages is None or stage in stages]
        on_tasks = [(stage, task) for stage, task in study.evaluations() if task is not None and stage in chosen]
        plan = [(SHARED, stage, None) for stage in study.prepare]
        plan += [(arm, stage, task) for arm in arms for stage, task in [(s, None) for s in chosen] + on_tasks]
        failed_arms: set[str] = set()
        for arm, stage, task in plan:
            if arm in failed_arms or SHARED in failed_arms:
                continue
            what = stage if task is None else f"{stage} on {task}"
            if (arm, seed, stage, task) in done:
                print(f"study {study.name}: {arm} seed {seed} {what}: already completed, skipped")
                continue
            args = stage_command(study, arm, seed, stage, root, overrides, extra, task)
            print("$ " + " ".join(_quote(a) for a in args[1:]), flush=True)
            if dry_run:
                continue
            if subprocess.run(args, cwd=ROOT).returncode:
                print(f"study {study.name}: {arm} seed {seed} {what} FAILED; its later stages are skipped",
                      file=sys.stderr)
                failures += 1
                failed_arms.add(arm)
    return 1 if failures else 0


def _quote(text: str) -> str:
    return text if all(c.isalnum() or c in "-_./=:%@" for c in text) else repr(text)


# ---------------------------------------------------------------------------------------------
# Reading stored runs


@dataclass
class StoredRun:
    run_id: object
    command: str
    arm: str
    seed: int
    finals: dict[str, float]   # metric → last logged value
    task: str | None = None    # the extra evaluation task (None: the study's own data)


def _tag_value(tags: list[str], prefix: str) -> str | None:
    return next((t[len(prefix):] for t in tags if t.startswith(prefix)), None)


def runs_source() -> str:
    """Where ``stored_runs`` reads, in words (for the report's header)."""
    if os.environ.get("LVMAE_OBSERVER", "mongo") == "file":
        from lvmae.experiments.tracking import local_db

        folder = Path(local_db.runs_dir())
        shown = os.path.relpath(folder, ROOT) if folder.is_relative_to(ROOT) else str(folder)
        return f"run folders (`LVMAE_OBSERVER=file LVMAE_RUNS_DIR={shown}`)"
    from lvmae.experiments.tracking.redact import safe_url
    url = os.environ.get("LVMAE_MONGO_URL")
    return f"the database at {safe_url(url)}" if url else "the local SecantusDB database"


def stored_runs(study_name: str) -> list[StoredRun]:
    """COMPLETED runs tagged ``study=<name>``, from files (``LVMAE_OBSERVER=file``) or the database."""
    if os.environ.get("LVMAE_OBSERVER", "mongo") == "file":
        return _file_runs(study_name)
    return _mongo_runs(study_name)


def study_runs(study: Study) -> list[StoredRun]:
    """The study's completed runs, with its prepare owner's shared (tokenizer) runs when it has
    ``prepared_by``."""
    runs = stored_runs(study.name)
    if study.prepared_by:
        runs += [r for r in stored_runs(study.prepared_by) if r.arm == SHARED]
    return runs


def _file_runs(study_name: str) -> list[StoredRun]:
    from lvmae.experiments.tracking import local_db

    base = Path(local_db.runs_dir())
    runs = []
    for folder in sorted(base.glob("*/run.json")):
        try:
            record = json.loads(folder.read_text(encoding="utf-8"))
            metrics = json.loads((folder.parent / "metrics.json").read_text(encoding="utf-8"))
            config = json.loads((folder.parent / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue     # a run still starting, or not a run folder
        tags = (record.get("meta") or {}).get("tags") or []
        if STUDY_TAG + study_name not in tags or record.get("status") != "COMPLETED":
            continue
        finals = {name: float(series["values"][-1]) for name, series in metrics.items() if series.get("values")}
        runs.append(StoredRun(folder.parent.name, record.get("command", ""), _tag_value(tags, ARM_TAG),
                              config.get("seed"), finals, _tag_value(tags, TASK_TAG)))
    return runs


def _mongo_runs(study_name: str) -> list[StoredRun]:
    import pymongo

    from lvmae.experiments.tracking import local_db
    from lvmae.experiments.tracking.redact import safe_url

    url = os.environ.get("LVMAE_MONGO_URL") or local_db.ensure_server()
    problem = local_db.ping(url)
    if problem:
        raise SystemExit(f"study: the database at {safe_url(url)} does not answer: {problem}")
    with pymongo.MongoClient(url, serverSelectionTimeoutMS=5000) as client:
        database = client[os.environ.get("LVMAE_MONGO_DB", "lvmae")]
        docs = list(database.runs.find({"meta.tags": STUDY_TAG + study_name, "status": "COMPLETED"},
                                       {"_id": 1, "command": 1, "meta.tags": 1, "config.seed": 1}))
        runs = {doc["_id"]: StoredRun(doc["_id"], doc.get("command", ""), _tag_value(doc["meta"]["tags"], ARM_TAG),
                                      doc.get("config", {}).get("seed"), {}, _tag_value(doc["meta"]["tags"], TASK_TAG))
                for doc in docs}
        for doc in database.metrics.find({"run_id": {"$in": list(runs)}}, {"run_id": 1, "name": 1, "steps": 1, "values": 1}):
            if doc["values"]:
                last = max(range(len(doc["steps"])), key=lambda i: (doc["steps"][i], i))
                runs[doc["run_id"]].finals[doc["name"]] = float(doc["values"][last])
    return list(runs.values())


# ---------------------------------------------------------------------------------------------
# Statistics


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


# ---------------------------------------------------------------------------------------------
# Rendering


@dataclass
class ArmStats:
    arm: str
    values: list[float]
    seeds: list[int]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else math.nan


def arm_stats(study: Study, runs: list[StoredRun], command: str, task: str | None = None) -> list[ArmStats]:
    """Per arm (study order), the final ``study.metric`` of the ``command`` runs on ``task``
    (None: the study's own data), one per seed (the newest run when a seed was run twice)."""
    result = []
    for arm in study.arms:
        by_seed = {}
        for run in runs:
            if run.arm == arm and run.command == command and run.task == task and study.metric in run.finals:
                by_seed[run.seed] = run.finals[study.metric]
        if by_seed:
            seeds = sorted(by_seed, key=lambda s: (s is None, s))
            result.append(ArmStats(arm, [by_seed[s] for s in seeds], seeds))
    return result


def _fmt(value: float, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def study_table(study: Study, stats: list[ArmStats]) -> list[str]:
    """Markdown rows: arm, mean ± std, n, seeds, Δ vs reference, Welch p, verdict."""
    reference = next((s for s in stats if s.arm == study.reference), None)
    lines = [f"| arm | {study.metric} mean ± std | n | seeds | Δ vs {study.reference} | Welch t (df) | p | at α = {ALPHA} |",
             "|---|---|---|---|---|---|---|---|"]
    for s in stats:
        cells = [f"`{s.arm}`", f"{_fmt(s.mean)} ± {_fmt(s.std)}", str(len(s.values)), ",".join(map(str, s.seeds))]
        if s is reference:
            cells += ["(reference)", "", "", ""]
        elif reference is None or len(s.values) < 2 or len(reference.values) < 2:
            cells += ["—", "—", "—", "too few seeds"]
        else:
            test = welch(s.values, reference.values)
            verdict = ("higher" if test["diff"] > 0 else "lower") if test["p"] < ALPHA else "no significant difference"
            cells += [f"{test['diff']:+.3f}", f"{_fmt(test['t'], 2)} ({_fmt(test['df'], 1)})", f"{test['p']:.3g}", verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def tokenizer_rows(study: Study, runs: list[StoredRun]) -> list[str]:
    """Markdown rows of the tokenizer metrics per arm (or ``_shared``), mean ± std over seeds."""
    rows = []
    for arm in [SHARED, *study.arms]:
        mine = [r for r in runs if r.arm == arm and r.command == "pretrain_tokenizer"]
        if not mine:
            continue
        cells = []
        for metric in TOKENIZER_METRICS:
            values = [r.finals[metric] for r in mine if metric in r.finals]
            cells.append("—" if not values else
                         f"{statistics.fmean(values):.3f} ± {_fmt(statistics.stdev(values) if len(values) > 1 else math.nan)}")
        rows.append(f"| `{arm}` | " + " | ".join(cells) + f" | {len(mine)} |")
    return rows


def save_plot(study: Study, tables: dict[str, list[ArmStats]], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(tables), figsize=(4.5 * len(tables), 3.6), squeeze=False)
    for axis, (command, stats) in zip(axes[0], tables.items()):
        for index, s in enumerate(stats):
            colour = "#fdae6b" if s.arm == study.reference else "#9ecae1"
            axis.bar(index, s.mean, yerr=0.0 if math.isnan(s.std) else s.std, capsize=4, color=colour,
                     edgecolor="#3182bd")
            axis.scatter([index] * len(s.values), s.values, color="#08306b", s=12, zorder=3)
        axis.set_xticks(range(len(stats)), [s.arm for s in stats], rotation=30, ha="right")
        axis.set_title(f"{study.name}: {command}")
        axis.set_ylabel(study.metric)
    figure.suptitle("mean ± std over seeds (dots: seeds; orange: reference)", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def evaluation_name(command: str, task: str | None) -> str:
    return command if task is None else f"{command} on {task}"


def render_study(study: Study, runs: list[StoredRun], plot_dir: Path | None, docs_dir: Path | None) -> str:
    """One markdown section for the study: question, tables per evaluation, plot, command."""
    regenerate = f"python run.py study run {study.path}"
    report = "python run.py study report gin/studies/*.yaml --write docs/results.md"
    lines = [f"## {study.name}", "", study.question, ""]
    if study.notes:
        lines += [study.notes, ""]
    tables = {}
    for command, task in study.evaluations():
        stats = arm_stats(study, runs, command, task)
        if stats:
            tables[evaluation_name(command, task)] = stats
    if not tables:
        lines += ["**Not run in this round.** To run it:", "", "```", regenerate, report, "```", ""]
        return "\n".join(lines)
    missing = [arm for arm in study.arms if not any(s.arm == arm for t in tables.values() for s in t)]
    for command, stats in tables.items():
        lines += [(f"**{command}** ({study.metric}, final value per run; Welch two-sided t-test against "
                   f"`{study.reference}`):"), "", *study_table(study, stats), ""]
    tokenizer = tokenizer_rows(study, runs)
    if tokenizer:
        shared_by = f" (`_shared`: the tokenizers of `{study.prepared_by}`)" if study.prepared_by else ""
        lines += [("**Tokenizer** (final evaluation of each `pretrain_tokenizer` run: PSNR in dB, codebook "
                   f"usage = distinct codes / codebook size, perplexity = exp(code entropy)){shared_by}:"), "",
                  "| tokenizer of | " + " | ".join(TOKENIZER_METRICS) + " | n |",
                  "|---|" + "---|" * (len(TOKENIZER_METRICS) + 1), *tokenizer, ""]
    if missing:
        lines += [f"Arms without completed runs (not run in this round): {', '.join(f'`{a}`' for a in missing)}.", ""]
    if plot_dir is not None:
        plot = save_plot(study, tables, plot_dir / f"{study.name}.png")
        shown = os.path.relpath(plot, docs_dir) if docs_dir is not None else str(plot)
        lines += [f"![{study.name}]({shown})", ""]
    lines += ["Regenerate:", "", "```", regenerate, report, "```", ""]
    return "\n".join(lines)


def verdict(study: Study, stats: list[ArmStats]) -> str:
    """Whether the runs support the paper's direction "the reference arm beats every other arm":
    held (every other arm significantly lower), contradicted (some arm significantly higher), or
    not shown (any other arm not significantly different, or missing)."""
    reference = next((s for s in stats if s.arm == study.reference), None)
    others = [s for s in stats if s is not reference]
    if reference is None or len(reference.values) < 2 or not others:
        return "not tested (reference or other arms missing)"
    higher, equal = [], []
    for s in others:
        if len(s.values) < 2:
            equal.append(s.arm)
            continue
        test = welch(s.values, reference.values)
        if test["p"] < ALPHA and test["diff"] > 0:
            higher.append(s.arm)
        elif test["p"] >= ALPHA:
            equal.append(s.arm)
    missing = [a for a in study.arms if a != study.reference and not any(s.arm == a for s in stats)]
    if higher:
        return f"contradicted: {', '.join(higher)} significantly higher than {study.reference}"
    if equal or missing:
        parts = [f"no significant difference for {', '.join(equal)}"] if equal else []
        parts += [f"not run: {', '.join(missing)}"] if missing else []
        return "not shown at this scale (" + "; ".join(parts) + ")"
    return f"held: {study.reference} significantly higher than every other arm (Welch, p < {ALPHA})"


def summary(studies: list[Study], runs: dict[str, list[StoredRun]]) -> list[str]:
    """The closing table: per study and evaluation, the paper's direction and what the runs say."""
    lines = ["## Summary: the paper's directions at this scale", "",
             "| study | paper's direction | evaluation | what these runs show |", "|---|---|---|---|"]
    for study in studies:
        claim = study.claim or f"`{study.reference}` is best"
        evaluated = [c for c in study.stages if c in EVALUATED]
        shown = False
        for command, task in study.evaluations():
            stats = arm_stats(study, runs[study.name], command, task)
            if stats:
                lines.append(f"| {study.name} | {claim} | {evaluation_name(command, task)} | {verdict(study, stats)} |")
                shown = True
        if not shown:
            lines.append(f"| {study.name} | {claim} | {', '.join(evaluated)} | not run in this round "
                         f"(`python run.py study run {study.path}`) |")
    return lines + [""]


HEADER = """# Results

Generated by `python run.py study report gin/studies/*.yaml --write docs/results.md` from the
runs stored in the database (or run folders with `LVMAE_OBSERVER=file`); do not edit by hand
(a study's `notes` in its file are the place for context).
Each table gives the final value of the study's metric per arm as mean ± sample std over seeds
(n runs), and a Welch two-sided t-test of each arm against the study's reference arm. With
n = 3 seeds only large, consistent differences reach p < 0.05; "no significant difference" is
not evidence of equality. Every study file is under `gin/studies/`; the setting each was run
at is in its gin files and bindings.
"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python run.py study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="run every (arm, seed) of a study")
    run.add_argument("study")
    run.add_argument("--arm", action="append", default=[], help="only this arm (repeatable)")
    run.add_argument("--seed", type=int, action="append", default=[], help="only this seed (repeatable)")
    run.add_argument("--stage", action="append", default=[],
                     help="only this stage of the study's stages (repeatable; prepare stages always run)")
    run.add_argument("--override", action="append", default=[], metavar="GIN",
                     help="gin file added after the study's (e.g. a GPU scale file)")
    run.add_argument("-b", "--bind", action="append", default=[], help="extra binding for every run")
    run.add_argument("--root", default="outputs/studies", help="work folders <root>/<study>/<arm>/seed_<s>")
    run.add_argument("--dry-run", action="store_true", help="print the commands only")
    report = sub.add_parser("report", help="tables, plots and significance from the stored runs")
    report.add_argument("studies", nargs="+")
    report.add_argument("--write", type=Path, default=None, help="markdown file to write (e.g. docs/results.md)")
    report.add_argument("--plots", type=Path, default=None, help="plot folder (default: <write's folder>/results)")
    args = parser.parse_args(argv)
    if args.action == "run":
        study = load_study(args.study)
        arms = args.arm or list(study.arms)
        unknown = [a for a in arms if a not in study.arms]
        if unknown:
            raise SystemExit(f"study: --arm {unknown} not in {study.path} (arms: {list(study.arms)})")
        unknown = [s for s in args.seed if s not in study.seeds]
        if unknown:
            raise SystemExit(f"study: --seed {unknown} not in {study.path} (seeds: {study.seeds})")
        seeds = args.seed or study.seeds
        unknown = [s for s in args.stage if s not in study.stages]
        if unknown:
            raise SystemExit(f"study: --stage {unknown} not in {study.path} (stages: {study.stages})")
        return run_study(study, args.root, args.override, args.bind, arms, seeds, args.dry_run,
                         args.stage or study.stages)
    studies = [load_study(path) for path in args.studies]
    docs_dir = args.write.parent if args.write else None
    plot_dir = args.plots or (docs_dir / "results" if docs_dir else None)
    runs = {study.name: study_runs(study) for study in studies}
    sections = [render_study(study, runs[study.name], plot_dir, docs_dir) for study in studies]
    text = "\n".join([HEADER, f"This report read the runs from {runs_source()}.\n", *sections,
                      *summary(studies, runs)])
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.write.with_suffix(args.write.suffix + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, args.write)
        print(f"study: wrote {args.write} ({len(studies)} studies)")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

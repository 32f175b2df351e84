"""``python run.py study``: run a paper ablation from its study file, and render what the stored
runs show — a table (mean ± std, n), a plot, and every arm's difference to the study's reference
with its 95% interval and test — into ``docs/results.md``.

    python run.py study run    gin/studies/context.yaml                 # every arm × seed
    python run.py study run    gin/studies/context.yaml --arm f32 --seed 1
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
arm's pre-trained encoder, tagged ``task=<name>``, and the report gives a table per stage and task.
``reuse: {arm: <study>/<arm>}`` takes an arm that another study runs identically (checked: gin
files, bindings, tokenizer, arm bindings): its runs serve both, and this study does not rerun it;
the report reads the runs back from the database (``LVMAE_MONGO_URL`` or the local SecantusDB)
or, with ``LVMAE_OBSERVER=file``, from ``$LVMAE_RUNS_DIR``. ``run`` skips an (arm, seed, stage)
that already has a COMPLETED run of the same configuration hash, so a study can be run in pieces,
and a run made before the study's bindings changed is run again. ``report`` uses the newest run
of the current hash per (arm, seed, stage, task) and counts the others as stale; give it the
``--override`` files and ``-b`` bindings the runs were made with.

Significance (``study_analysis``): arm − reference by a paired t-test over the seeds both arms
have (Welch where they share fewer than two), its 95% t-interval, TOST for the arms the study file
compares by equivalence, Holm's correction over all of a study's tests, no verdict from fewer than
5 seeds or from a saturated arm (within ``saturation_margin`` of the ceiling or of the random
control).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
from pathlib import Path

from lvmae.experiments.reporting.study_analysis import analyse
from lvmae.experiments.reporting.study_command import (  # noqa: F401  (stage_command, workdir_of: public here too)
    ROOT,
    expected_hash,
    stage_command,
    workdir_of,
)
from lvmae.experiments.reporting.study_file import EVALUATED, SHARED, Study, load_study, prepare_owner
from lvmae.experiments.reporting.study_records import ledger_dir, ledger_path, record_runs
from lvmae.experiments.reporting.study_report import (
    HEADER,
    battery_section,
    evaluation_name,
    render_study,
    summary,
)
from lvmae.experiments.reporting.study_runs import (
    current_runs,
    runs_source,
    store_runs,
    stored_runs,
    study_runs,
)


def run_study(study: Study, root: str, overrides: list[str], extra: list[str], arms: list[str],
              seeds: list[int], dry_run: bool, stages: list[str] | None = None, jobs: int = 1) -> int:
    """Runs every (arm, seed, stage) without a COMPLETED run of its current configuration hash,
    seed after seed, or ``jobs`` seeds at once (each seed's chain in order; its output in
    ``<root>/<study>/logs/seed_<s>.log``; the runs get ``OMP_NUM_THREADS`` = cores // jobs unless
    it is set). Returns 1 if any stage failed."""
    owner = prepare_owner(study)
    done = set()
    if not dry_run:
        mine = stored_runs(study.name)
        owners = mine if owner is study else stored_runs(owner.name)
        # Tags alone do not make a run done: its configuration must be the one the study files give now.
        mine = [r for r in mine if r.arm != SHARED] + [r for r in owners if r.arm == SHARED]
        current = current_runs(mine, expected_hash(study, overrides, extra))[0]
        # An evaluated run without the study's primary metric for its stage (run before that
        # metric was logged, or before the study file named it) cannot be reported: run it again.
        done = {r.key for r in current if r.command not in EVALUATED or study.metric_for(r.command) in r.finals}
        for run in (r for r in current if r.key not in done):
            # Said, so that a misspelt metric in the study file does not rerun its stages unnoticed.
            print(f"study {study.name}: {run.arm} seed {run.seed} {run.command}: run {run.run_id} has no "
                  f"{study.metric_for(run.command)!r} (it logged {', '.join(sorted(run.finals)) or 'nothing'}); "
                  "running it again", flush=True)
    plan = _plan(study, arms, stages)
    env = dict(os.environ)
    if jobs > 1:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))

    def run_seed(seed: int) -> int:
        log = None
        if jobs > 1 and not dry_run:
            folder = Path(root) / study.name / "logs"
            folder.mkdir(parents=True, exist_ok=True)
            log = open(folder / f"seed_{seed}.log", "a", encoding="utf-8")   # noqa: SIM115 (closed below)
        failures, failed_arms = 0, set()
        try:
            for arm, stage, task in plan:
                if arm in failed_arms or SHARED in failed_arms:
                    continue
                if arm in study.reuse:      # run identically by another study: its runs serve this one
                    print(f"study {study.name}: {arm} seed {seed} {stage}: the runs of {'/'.join(study.reuse[arm])}")
                    continue
                what = stage if task is None else f"{stage} on {task}"
                if (arm, seed, stage, task) in done:
                    print(f"study {study.name}: {arm} seed {seed} {what}: already completed, skipped")
                    continue
                args = stage_command(study, arm, seed, stage, root, overrides, extra, task)
                print("$ " + " ".join(_quote(a) for a in args[1:]) + (f"   (output: {log.name})" if log else ""),
                      flush=True)
                if dry_run:
                    continue
                if subprocess.run(args, cwd=ROOT, env=env, stdout=log, stderr=log).returncode:
                    print(f"study {study.name}: {arm} seed {seed} {what} FAILED; its later stages are skipped",
                          file=sys.stderr, flush=True)
                    failures += 1
                    failed_arms.add(arm)
        finally:
            if log is not None:
                log.close()
        return failures

    if jobs <= 1 or dry_run:
        failures = sum(run_seed(seed) for seed in seeds)
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            failures = sum(pool.map(run_seed, seeds))
    if not dry_run:
        record_study(study)
    return 1 if failures else 0


def _shown(path: Path) -> str:
    return os.path.relpath(path, ROOT) if path.is_relative_to(ROOT) else str(path)


def record_study(study: Study) -> None:
    """Copies the study's completed runs from this machine's store into its ledger (and its prepare
    owner's, whose shared runs it used), so the repository keeps them (study_records.py)."""
    for name in dict.fromkeys([study.name, prepare_owner(study).name]):
        added = record_runs(name, store_runs(name))
        if added:
            print(f"study {name}: {added} completed run(s) recorded in {ledger_path(name)}")


def _plan(study: Study, arms: list[str], stages: list[str] | None) -> list[tuple[str, str, str | None]]:
    """(arm, stage, task) in the order one seed runs them: prepare stages, then each arm's chain."""
    chosen = [stage for stage in study.stages if stages is None or stage in stages]
    on_tasks = [(stage, task) for stage, task in study.evaluations() if task is not None and stage in chosen]
    plan = [(SHARED, stage, None) for stage in study.prepare]
    return plan + [(arm, stage, task) for arm in arms for stage, task in [(s, None) for s in chosen] + on_tasks]


def check_study(study: Study, root: str, overrides: list[str], extra: list[str], arms: list[str],
                seed: int, stages: list[str] | None = None) -> list[str]:
    """Preflights every stage of every arm (one seed) before anything runs, so a study does not
    find a broken arm hours in: gin files, bindings, macros and types, and the objects each stage
    builds (an object that needs what an earlier stage writes is skipped). Returns the problems,
    the first of each arm."""
    from lvmae.experiments import commands
    from lvmae.experiments.engine.gin_config import GinConfigError
    from lvmae.experiments.engine.preflight import PreflightError, preflight

    commands.load_all()
    index = commands.command_index()
    problems, broken = [], set()
    for arm, stage, task in _plan(study, [a for a in arms if a not in study.reuse], stages):
        if arm in broken:           # one problem per arm: its later stages would not run
            continue
        args = stage_command(study, arm, seed, stage, root, overrides, extra, task)
        files = [args[i + 1] for i, a in enumerate(args) if a == "-g"]
        bindings = [args[i + 1] for i, a in enumerate(args) if a == "-b"]
        try:
            preflight(stage, files, bindings, module=index[stage].module, check_inputs=False)
        except (PreflightError, GinConfigError) as error:
            problems.append(f"{arm} {evaluation_name(stage, task)}: {str(error).strip()}")
            broken.add(arm)
    return problems


def _quote(text: str) -> str:
    return text if all(c.isalnum() or c in "-_./=:%@" for c in text) else repr(text)


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
    run.add_argument("--no-check", action="store_true",
                     help="skip the preflight of every arm's stages before the first run")
    run.add_argument("--jobs", type=int, default=1,
                     help="seeds run at once (each seed's stages in order; OMP_NUM_THREADS = cores // jobs)")
    report = sub.add_parser("report", help="tables, plots and significance from the stored runs")
    report.add_argument("studies", nargs="+")
    report.add_argument("--write", type=Path, default=None, help="markdown file to write (e.g. docs/results.md)")
    report.add_argument("--plots", type=Path, default=None, help="plot folder (default: <write's folder>/results)")
    report.add_argument("--override", action="append", default=[], metavar="GIN",
                        help="gin file the runs were made with after the study's (as given to study run)")
    report.add_argument("-b", "--bind", action="append", default=[],
                        help="extra binding the runs were made with (as given to study run)")
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
        if args.jobs < 1:
            raise SystemExit(f"study: --jobs must be ≥ 1, got {args.jobs}")
        if not args.dry_run and not args.no_check:
            problems = check_study(study, args.root, args.override, args.bind, arms, seeds[0], args.stage or None)
            if problems:
                print(f"study {study.name}: nothing was run; these stages would fail:\n  " + "\n  ".join(problems),
                      file=sys.stderr)
                return 2
        return run_study(study, args.root, args.override, args.bind, arms, seeds, args.dry_run,
                         args.stage or study.stages, args.jobs)
    studies = [load_study(path) for path in args.studies]
    docs_dir = args.write.parent if args.write else None
    plot_dir = args.plots or (docs_dir / "results" if docs_dir else None)
    for study in studies:
        record_study(study)
    analyses = [analyse(study, study_runs(study), args.override, args.bind) for study in studies]
    sections = [render_study(analysis, plot_dir, docs_dir) for analysis in analyses]
    stale = len({(run.study, run.run_id) for analysis in analyses for run in analysis.stale})   # shared runs once
    text = "\n".join([HEADER, (f"This report read the runs from {runs_source()} and the study ledger "
                      f"(`{_shown(ledger_dir())}/<study>.jsonl`); {stale} stale run(s) ignored "
                      "(another configuration than the study files give now).\n"), *battery_section(docs_dir),
                      *sections, *summary(analyses)])
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

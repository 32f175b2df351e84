"""The ``--report`` of benchmarks/battery_calibration.py: per task and evaluator (the probe
grid's choice, its attentive and its linear probes alone) the pre-trained encoder beside its
random initialisation, paired over seeds; fine-tuning beside scratch and the ceiling; frozen-probe
top-1 vs pre-training steps as a table and a curve. Reads the JSON lines the benchmark wrote.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from battery_calibration import DEFAULT_WORLD, TASKS, own_bindings


def load_rows(path: str, match: dict | None = None) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [r for r in rows if all(r["config"].get(k) == v for k, v in (match or {}).items())]


def _summary(values: list[float]) -> str:
    values = np.asarray(values)
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values.mean():.3f}"


def _paired_test(a: dict, b: dict):
    """The paired t-test of a − b over the seeds both have (the studies' own, reporting.stats);
    None below two shared seeds."""
    from lvmae.experiments.reporting import stats
    seeds = sorted(set(a) & set(b))
    return stats.paired([a[s] for s in seeds], [b[s] for s in seeds]) if len(seeds) >= stats.MIN_VALUES else None


def _paired(a: dict, b: dict) -> str:
    """Mean paired difference a − b over shared seeds, its 95% interval, and the two-sided p."""
    test = _paired_test(a, b)
    if test is None:
        return "— | — | —"
    return f"{test.diff:+.3f} | [{test.ci_low:+.3f}, {test.ci_high:+.3f}] | {test.p:.2g}"


EVALUATORS = ("grid", "attentive", "linear")    # the grid's choice, and each kind of probe alone


def evaluator_top1(row: dict, evaluator: str) -> float | None:
    """A probe row's validation top-1 under ``evaluator``: the grid's choice (``top1``), or the
    head of one kind best on the held-out quarter (first in grid order on ties), as if that
    kind were the whole grid (probe_loop's ``eval/<kind>/top1``)."""
    if evaluator == "grid":
        return row["top1"]
    heads = [h for h in row.get("heads", []) if h["kind"] == evaluator]
    return max(heads, key=lambda h: h["held_out"])["val"] if heads else None


def _within(values: dict, members: set[int] | None) -> dict:
    return values if members is None else {seed: v for seed, v in values.items() if seed in members}


def _cell(values: dict) -> str:
    return _summary(list(values.values())) if values else "—"


MIN_SEEDS = 5      # a budget counts as a task's pre-trained encoder from this many paired seeds


def seed_sets(ranges: list[str]) -> list[tuple[str, set[int] | None]]:
    """``["1-5", "6-15"]`` → [("1–5", {1..5}), ("6–15", {6..15})]; none → one set of every seed."""
    sets = []
    for text in ranges:
        first, _, last = text.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise SystemExit(f"--seed-sets: {text!r} is not FIRST-LAST (e.g. 6-15)") from None
        sets.append((f"{low}–{high}", set(range(low, high + 1))))
    return sets or [("all", None)]


def _tested_budgets(table: dict, task: str) -> list[int]:
    """The task's pre-training budgets with ≥ MIN_SEEDS seeds paired with step 0 under the grid
    (else its largest budget alone); the last is the task's pre-trained encoder."""
    random_seeds = set(table.get((task, "probe", 0, "grid"), {}))
    budgets = sorted({k[2] for k in table if k[0] == task and k[1] == "probe" and k[2] > 0})
    paired = [s for s in budgets if len(set(table[(task, "probe", s, "grid")]) & random_seeds) >= MIN_SEEDS]
    return paired or budgets[-1:] or [0]


def report(args) -> None:
    """Per task and evaluator (the probe grid's choice, its attentive and its linear probes
    alone): the pre-trained encoder (the task's largest budget with ≥ 5 paired seeds) beside
    the random one (step 0), paired over seeds — over each of ``--seed-sets`` on its own; then
    fine-tuning beside scratch and the ceiling; then top-1 vs pre-training steps (table and
    curve, one panel per evaluator)."""
    rows = [r for r in load_rows(args.out) if r["config"]["labelled"] == args.labelled
            and r["config"]["layers"] == list(args.layers) and r["config"]["bind"] == list(args.bind)
            and r["config"].get("world", DEFAULT_WORLD) == (DEFAULT_WORLD if r["task"] == "long_range" else args.world)
            and r["config"].get("encoder", "") == ("" if r["task"] == "long_range" else args.encoder_gin)
            and r["config"].get("task_bind", []) == own_bindings(r["task"], args.task_bind)]
    table: dict = {}
    for r in rows:
        for evaluator in EVALUATORS if r["mode"] == "probe" else ("grid",):
            value = evaluator_top1(r, evaluator)
            if value is not None:
                table.setdefault((r["task"], r["mode"], r["pretrain_steps"], evaluator), {})[r["seed"]] = value
    tasks = [t for t in TASKS if any(k[0] == t for k in table)]
    tested = {task: _tested_budgets(table, task) for task in tasks}
    budget = {task: steps[-1] for task, steps in tested.items()}
    sets = seed_sets(args.seed_sets)
    setting = (f"pre-training on {'each task' + chr(39) + 's own unlabelled clips' if args.world == 'own' else 'the procedural world'}"
               f"{', encoder ' + args.encoder_gin if args.encoder_gin else ''}"
               f"{', task bindings ' + '; '.join(args.task_bind) if args.task_bind else ''}")
    lines = [(f"Frozen probe ({args.labelled} labelled clips; heads trained on three quarters, chosen on the "
              "held-out quarter, reported on the validation split); pixel MAE pre-trained for `steps` (every "
              f"budget with ≥ {MIN_SEEDS} seeds paired with the random initialisation), "
              f"{setting}. Evaluators: `grid` = the best head of the whole grid, `attentive` / `linear` = the "
              "best head of that kind alone. Mean ± std over seeds; Δ, its 95% interval and p: paired t-test "
              "over seeds (same seed = same initialisation)"
              + (f", over each set of seeds on its own ({', '.join(name for name, _ in sets)})"
                 if len(sets) > 1 else "") + "."), "",
             "| task | steps | seeds | evaluator | pixel-MAE | random-init | n | Δ | 95% CI | p |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for task in tasks:
        for steps in tested[task]:
            for name, members in sets:
                for evaluator in EVALUATORS:
                    mae, rnd = (_within(table.get((task, "probe", step, evaluator), {}), members)
                                for step in (steps, 0))
                    shared = set(mae) & set(rnd)      # both columns over the paired seeds alone
                    mae, rnd = _within(mae, shared), _within(rnd, shared)
                    if mae and rnd:
                        lines.append(f"| {task} | {steps} | {name} | {evaluator} | {_cell(mae)} | {_cell(rnd)} | "
                                     f"{len(set(mae) & set(rnd))} | {_paired(mae, rnd)} |")
    lines = _controls(table, tasks, budget, sets) + lines
    tuned = [t for t in tasks if any(k[0] == t and k[1] != "probe" for k in table)]
    if tuned:
        lines += ["", ("Fine-tuning (encoder + attentive head on the same labelled clips) from the pixel MAE and "
                       "from scratch (the random initialisation); the ceiling fine-tunes from scratch on every "
                       "generated training clip:"), "",
                  "| task | pixel-MAE fine-tune | scratch fine-tune | n | Δ | 95% CI | p | ceiling (n) |",
                  "|---|---|---|---|---|---|---|---|"]
        for task in tuned:
            tuned_at = max((k[2] for k in table if k[0] == task and k[1] == "finetune"), default=0)
            ft, sc = table.get((task, "finetune", tuned_at, "grid"), {}), table.get((task, "finetune", 0, "grid"), {})
            ceiling = table.get((task, "ceiling", 0, "grid"), {})
            lines.append(f"| {task} | {_cell(ft)} | {_cell(sc)} | {len(set(ft) & set(sc))} | {_paired(ft, sc)} | "
                         + (f"{_cell(ceiling)} ({len(ceiling)})" if ceiling else "—") + " |")
    steps = sorted({k[2] for k in table if k[1] == "probe"})
    lines += ["", "Frozen probe top-1 vs pre-training steps (0 = the random initialisation), mean ± std (n):", "",
              "| task | evaluator | " + " | ".join(str(s) for s in steps) + " |", "|---|---|" + "---|" * len(steps)]
    for task in tasks:
        for evaluator in EVALUATORS:
            cells = [f"{_cell(v)} ({len(v)})" if (v := table.get((task, "probe", s, evaluator))) else "—"
                     for s in steps]
            lines.append(f"| {task} | {evaluator} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n", encoding="utf-8")
    if args.plot:
        _plot(args, table, tasks, steps)


ORACLE = {task: 1.0 for task in TASKS if task != "playback_speed"}   # procedural: the clip shows every event
RANKS_AT = 0.01     # the battery's bar: pre-trained above random init at p < 0.01, ≥ 5 seeds, every seed set


def _controls(table: dict, tasks: list[str], budget: dict, sets: list) -> list[str]:
    """One row per task: the pre-trained encoder beside its three controls (the random
    initialisation under each probe kind, the no-pre-training fine-tune, the ceiling) and the
    probe kinds under which it ranks (Δ > 0 at p < RANKS_AT over ≥ MIN_SEEDS paired seeds, in
    every set of seeds that has them)."""
    intro = ("**Each task beside its controls** (frozen probe: attentive / linear probes alone; fine-tunes "
             "of the encoder with an attentive head on the same labelled clips; the ceiling: the oracle's "
             "for the procedural tasks, else a supervised fine-tune from scratch on every generated "
             "clip, n seeds; ranks: the probe kinds under which the pre-trained encoder is above its "
             f"random initialisation at p < {RANKS_AT} over ≥ {MIN_SEEDS} paired seeds, in each set of seeds):")
    columns = ("| task | steps | probe, pixel MAE | probe, random init | fine-tune from the MAE | "
               "fine-tune from scratch | ceiling | ranks |")
    lines = [intro, "", columns, "|---|---|---|---|---|---|---|---|"]

    def probe(task: str, steps: int) -> str:
        return " / ".join(_cell(table.get((task, "probe", steps, kind), {})) for kind in ("attentive", "linear"))

    for task in tasks:
        tuned_at = max((k[2] for k in table if k[0] == task and k[1] == "finetune"), default=None)
        tuned = {s: table.get((task, "finetune", s, "grid"), {}) for s in (tuned_at, 0)} if tuned_at else {}
        supervised = table.get((task, "ceiling", 0, "grid"), {})
        ceiling = (f"{ORACLE[task]:.1f} (oracle)" if task in ORACLE else "") + (
            f"{'; ' if task in ORACLE else ''}supervised {_cell(supervised)} ({len(supervised)})" if supervised else "")
        ranks = []
        for kind in ("attentive", "linear"):
            tests = [_paired_test(_within(table.get((task, "probe", budget[task], kind), {}), members),
                                  _within(table.get((task, "probe", 0, kind), {}), members)) for _, members in sets]
            tests = [t for t in tests if t is not None and t.n >= MIN_SEEDS]
            if tests and all(t.diff > 0 and t.p < RANKS_AT for t in tests):
                ranks.append(kind)
        lines.append(f"| {task} | {budget[task]} | {probe(task, budget[task])} | {probe(task, 0)} | "
                     f"{_cell(tuned[tuned_at]) + f' ({len(tuned[tuned_at])})' if tuned else '—'} | "
                     f"{_cell(tuned[0]) + f' ({len(tuned[0])})' if tuned else '—'} | {ceiling or '—'} | "
                     f"{', '.join(ranks) or 'no'} |")
    return lines + [""]


def _plot(args, table: dict, tasks: list[str], steps: list[int]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, len(EVALUATORS), figsize=(4.2 * len(EVALUATORS) + 1.6, 3.8), sharey=True)
    for axis, evaluator in zip(axes, EVALUATORS):
        for task in tasks:
            points = [(s, np.array(list(table[(task, "probe", s, evaluator)].values()))) for s in steps
                      if (task, "probe", s, evaluator) in table]
            xs = [max(s, 30) for s, _ in points]
            axis.errorbar(xs, [v.mean() for _, v in points], yerr=[v.std() for _, v in points], marker="o",
                          capsize=3, label=task)
        axis.set_xscale("log")
        axis.set_xticks([max(s, 30) for s in steps], ["0 (random)" if s == 0 else str(s) for s in steps])
        axis.minorticks_off()
        axis.set_xlabel("pixel-MAE pre-training steps")
        axis.set_title(f"{evaluator} probe" + (" (grid's choice)" if evaluator == "grid" else " alone"), fontsize=10)
    axes[0].set_ylabel("frozen probe top-1 (validation)")
    axes[-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.suptitle(f"battery: frozen probe vs pre-training ({args.labelled} labelled clips)", fontsize=10)
    figure.tight_layout()
    figure.savefig(args.plot, dpi=110)
    print(f"curve: {args.plot}")

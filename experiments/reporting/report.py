"""``python run.py report``: final metrics of runs selected by tag and gin binding, aggregated
over seeds — the table behind an ablation study.

    python run.py report --tag decoder-ablation --by masking.decoder.random.budget \\
                         --metric eval/top1 --where 'pretrain_loop.steps=300'

A BINDING is a gin binding as written in gin files (``masking.decoder.random.budget``, a macro
``%WORKDIR``) or any run config path prefixed by ``config.`` (``config.seed``). Runs are the
COMPLETED ones (``--status`` to change; how many others match is printed — runs whose
process died are marked INTERRUPTED first) in ``LVMAE_MONGO_URL`` or the local SecantusDB. The
final value of a metric is its last logged point. Groups are the distinct ``--by`` values; each
row gives mean ± sample standard deviation over its runs, n, and the seeds. The plot (PNG) has
one panel per metric with a bar ± std per group and a dot per run.
"""
from __future__ import annotations

import argparse
import ast
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvmae.experiments import program
from lvmae.experiments.tracking import local_db
from lvmae.experiments.tracking.dead_runs import announce, mark_in_database
from lvmae.experiments.tracking.redact import safe_url

DEFAULT_METRICS = ("eval/top1", "train/loss")
MISSING = "—"


EXPERIMENT_MODULE = "experiments"   # gin module of experiment functions (``gin_applies``)


def config_path(binding: str) -> str:
    """The MongoDB field of a gin binding (``a.b.c`` → ``config.gin.bindings.a.b.c``)."""
    if binding.startswith("config."):
        return binding
    if binding.startswith("%"):
        return f"config.gin.macros.{binding[1:]}"
    if "." not in binding:
        raise SystemExit(f"report: {binding!r} is not a gin binding (component.parameter), a macro "
                         "(%NAME) or a config path (config.KEY)")
    return f"config.gin.bindings.{binding}"


def candidate_paths(path: str) -> list[str]:
    """``path`` and, for a short experiment-function binding (``pretrain_loop.steps``, stored as
    ``experiments.pretrain_loop.steps``), its module-qualified twin."""
    prefix = "config.gin.bindings."
    if path.startswith(prefix) and not path.startswith(prefix + EXPERIMENT_MODULE + "."):
        return [path, prefix + EXPERIMENT_MODULE + "." + path[len(prefix):]]
    return [path]


def lookup_any(document: dict, path: str) -> Any:
    for candidate in candidate_paths(path):
        value = lookup(document, candidate)
        if value is not None:
            return value
    return None


def parse_where(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"report: --where {text!r} must be BINDING=VALUE")
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        parsed = value.strip()
    return config_path(name.strip()), parsed


def lookup(document: dict, path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@dataclass
class RunRow:
    run_id: int
    seed: int | None
    group: tuple
    finals: dict[str, float] = field(default_factory=dict)


@dataclass
class GroupStats:
    group: tuple
    seeds: list
    stats: dict[str, tuple[float, float, int]]   # metric → (mean, std, n)


def selection(tags: list[str], where: list[tuple[str, Any]], command: str | None) -> dict[str, Any]:
    """The MongoDB query for runs with every tag, every --where value and the command."""
    clauses: list[dict] = [{"$or": [{path: value} for path in candidate_paths(name)]} for name, value in where]
    if tags:
        clauses.append({"$or": [{"meta.tags": {"$all": tags}}, {"omniboard.tags": {"$all": tags}}]})
    query: dict[str, Any] = {"$and": clauses} if clauses else {}
    if command:
        query["command"] = command
    return query


def left_out(database, tags: list[str], where: list[tuple[str, Any]], command: str | None,
             status: str | None) -> dict[str, int]:
    """{status: count} of the selected runs that ``status`` leaves out (running, dead, failed)."""
    if not status:
        return {}
    query = {**selection(tags, where, command), "status": {"$ne": status}}
    counts: dict[str, int] = {}
    for document in database.runs.find(query, {"status": 1}):
        counts[document.get("status", "?")] = counts.get(document.get("status", "?"), 0) + 1
    return counts


def fetch_rows(database, tags: list[str], where: list[tuple[str, Any]], by: list[str],
               metrics: list[str], command: str | None, status: str | None) -> list[RunRow]:
    query = selection(tags, where, command)
    if status:
        query["status"] = status
    fields = {"_id": 1, "config.seed": 1, **{c: 1 for path in by for c in candidate_paths(path)}}
    rows = [RunRow(doc["_id"], lookup(doc, "config.seed"), tuple(lookup_any(doc, path) for path in by))
            for doc in database.runs.find(query, fields).sort("_id", 1)]
    if rows:
        ids = [row.run_id for row in rows]
        by_id = {row.run_id: row for row in rows}
        for doc in database.metrics.find({"run_id": {"$in": ids}, "name": {"$in": metrics}},
                                         {"run_id": 1, "name": 1, "steps": 1, "values": 1}):
            if doc["values"]:
                last = max(range(len(doc["steps"])), key=lambda i: (doc["steps"][i], i))
                by_id[doc["run_id"]].finals[doc["name"]] = float(doc["values"][last])
    return rows


def aggregate(rows: list[RunRow], metrics: list[str]) -> list[GroupStats]:
    """One GroupStats per distinct group, in first-seen order; a metric a run lacks is skipped."""
    groups: dict[tuple, list[RunRow]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    result = []
    for group, members in groups.items():
        stats = {}
        for metric in metrics:
            values = [m.finals[metric] for m in members if metric in m.finals]
            if values:
                std = statistics.stdev(values) if len(values) > 1 else math.nan
                stats[metric] = (statistics.fmean(values), std, len(values))
        result.append(GroupStats(group, [m.seed for m in members], stats))
    return result


def format_table(groups: list[GroupStats], by: list[str], metrics: list[str]) -> str:
    header = [*(by or ["(all runs)"]), *metrics, "seeds"]
    lines = []
    for stats in groups:
        cells = [str(v) for v in stats.group] or ["all"]
        for metric in metrics:
            if metric in stats.stats:
                mean, std, n = stats.stats[metric]
                cells.append(f"{mean:.4g} ± {std:.2g} (n={n})" if n > 1 else f"{mean:.4g} (n=1)")
            else:
                cells.append(MISSING)
        cells.append(",".join(str(s) for s in stats.seeds))
        lines.append(cells)
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    render = lambda row: "  ".join(cell.ljust(width) for cell, width in zip(row, widths))
    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, lines)])


def save_plot(groups: list[GroupStats], rows: list[RunRow], by: list[str], metrics: list[str], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [", ".join(str(v) for v in g.group) or "all" for g in groups]
    figure, axes = plt.subplots(1, len(metrics), figsize=(max(4.0, 1.2 * len(groups) + 2) * len(metrics), 4),
                                squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        means = [g.stats.get(metric, (math.nan, math.nan, 0))[0] for g in groups]
        stds = [0.0 if math.isnan(g.stats.get(metric, (0, math.nan, 0))[1]) else g.stats[metric][1] for g in groups]
        axis.bar(range(len(groups)), means, yerr=stds, capsize=4, color="#9ecae1", edgecolor="#3182bd")
        for index, g in enumerate(groups):
            values = [r.finals[metric] for r in rows if r.group == g.group and metric in r.finals]
            axis.scatter([index] * len(values), values, color="#08306b", s=12, zorder=3)
        axis.set_xticks(range(len(groups)), labels, rotation=30, ha="right")
        axis.set_title(metric)
        axis.set_xlabel(", ".join(by) or "runs")
    figure.suptitle("final value: mean ± std over seeds (dots: runs)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"{program.name()} report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", action="append", default=[], help="runs carrying every such tag")
    parser.add_argument("--where", action="append", default=[], metavar="BINDING=VALUE",
                        help="runs whose binding has this value (repeatable)")
    parser.add_argument("--by", action="append", default=[], metavar="BINDING",
                        help="group by this binding (repeatable); seeds are aggregated within a group")
    parser.add_argument("--metric", action="append", default=[], help=f"metrics (default {', '.join(DEFAULT_METRICS)})")
    parser.add_argument("--command", default=None, help="only runs of this command (pretrain, finetune, ...)")
    parser.add_argument("--status", default="COMPLETED", help="run status to keep ('' for any)")
    parser.add_argument("--plot", type=Path, default=None,
                        help="PNG path (default <runs>/reports/report-<time>.png)")
    args = parser.parse_args(argv)
    import pymongo

    try:
        url = os.environ.get("LVMAE_MONGO_URL") or local_db.ensure_server()
    except local_db.LocalDatabaseError as error:   # e.g. installed without the localdb extra
        raise SystemExit(f"report: {error}") from None
    problem = local_db.ping(url)
    if problem:
        raise SystemExit(f"report: the database at {safe_url(url)} does not answer: {problem}")
    by = [config_path(b) for b in args.by]
    metrics = args.metric or list(DEFAULT_METRICS)
    where = [parse_where(w) for w in args.where]
    with pymongo.MongoClient(url, serverSelectionTimeoutMS=5000) as client:
        database = client[os.environ.get("LVMAE_MONGO_DB", "lvmae")]
        announce(mark_in_database(database), safe_url(url))
        rows = fetch_rows(database, args.tag, where, by, metrics, args.command, args.status or None)
        skipped = left_out(database, args.tag, where, args.command, args.status or None)
    if skipped:
        print(f"report: {sum(skipped.values())} matching run(s) left out as not {args.status} ("
              + ", ".join(f"{n} {status}" for status, n in sorted(skipped.items()))
              + "); --status '' includes them")
    if not rows:
        print(f"report: no runs match (tags {args.tag}, where {args.where}, status {args.status!r}) "
              f"in {safe_url(url)}")
        return 1
    metrics = [m for m in metrics if any(m in r.finals for r in rows)] or metrics
    groups = aggregate(rows, metrics)
    print(format_table(groups, args.by, metrics))
    plot = args.plot or local_db.runs_dir() / "reports" / f"report-{time.strftime('%Y%m%d-%H%M%S')}.png"
    print(f"\n{len(rows)} runs in {len(groups)} groups; plot: {save_plot(groups, rows, args.by, metrics, plot)}")
    return 0

"""``python run.py seeds``: one configuration run under n seeds with a common tag, aggregated.

    python run.py seeds -g gin/experiments/tiny_cpu.gin -b "seed_sweep.seeds=3" \
        -b "seed_sweep.tag='tiny-ft'"

Each seed is an ordinary observed run of ``seed_sweep.command`` (``finetune`` or ``probe``)
with ``seed`` = first_seed + i in its config, the tag in ``meta.tags`` (where the tracking
``report --tag TAG`` and Omniboard look), ``meta.comment`` and ``info.tag``, and its own run
folder ``WORKDIR/<command>/<run id>`` (the training engine's). The sweep itself records no run: it prints mean ± std (sample std, n − 1) of every
``eval/*`` metric and writes ``summary.json``.
"""
from __future__ import annotations

import json
import math
import os

from lvmae.experiments.commands.experiment import ex
from lvmae.experiments.engine.gin_config import gin_applies

COMMANDS = ("finetune", "probe")


@gin_applies
def seed_sweep(command: str = "finetune", seeds: int = 3, first_seed: int = 1,
               tag: str | None = None, workdir: str = "outputs/seeds") -> dict:
    """The sweep's settings (read once, before the runs re-parse gin); ``workdir`` holds the
    sweep's ``<tag>/summary.json``."""
    if command not in COMMANDS:
        raise ValueError(f"seed_sweep.command must be one of {COMMANDS}, got {command!r}")
    if seeds < 1:
        raise ValueError(f"seed_sweep.seeds must be ≥ 1, got {seeds!r}")
    return {"command": command, "seeds": seeds, "first_seed": first_seed,
            "tag": tag or f"{command}-sweep", "workdir": workdir}


def flatten(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"eval/{head}/{name}": value for head, values in metrics.items()
            for name, value in values.items()}


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def aggregate(results: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """[{metric: value} per seed] → {metric: {mean, std, n}} over the metrics all seeds have."""
    common = set(results[0]).intersection(*results[1:])
    summary = {}
    for name in sorted(common):
        mean, std = mean_std([r[name] for r in results])
        summary[name] = {"mean": mean, "std": std, "n": len(results)}
    return summary


@ex.command(unobserved=True)
def seeds(_run, gin_files, gin_bindings):
    """Runs ``seed_sweep.command`` for n seeds under one tag and prints mean ± std."""
    sweep = seed_sweep()
    # The sweep's tag plus any given on the command line (--tag, tracking's run_tags).
    tags = list(dict.fromkeys([sweep["tag"], *(_run.meta_info.get("tags") or [])]))
    folder = os.path.join(sweep["workdir"], sweep["tag"])
    files = [gin_files] if isinstance(gin_files, str) else list(gin_files)
    runs, results = [], []
    for i in range(sweep["seeds"]):
        seed = sweep["first_seed"] + i
        # each member is its own run: the engine gives it WORKDIR/<command>/<run id>
        run = ex.run(sweep["command"],
                     config_updates={"seed": seed, "gin_files": files, "gin_bindings": list(gin_bindings)},
                     meta_info={"comment": sweep["tag"], "tags": tags}, info={"tag": sweep["tag"]})
        runs.append(run._id)
        results.append(flatten(run.result["metrics"]))
        print(f"seed {seed}: run {run._id}, " + ", ".join(
            f"{k} {v:.4f}" for k, v in results[-1].items() if k.endswith("/top1")))
    summary = aggregate(results)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "summary.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"tag": sweep["tag"], "command": sweep["command"], "runs": runs,
                   "seeds": [sweep["first_seed"] + i for i in range(sweep["seeds"])],
                   "metrics": summary}, handle, indent=2)
    print(f"{sweep['command']} × {sweep['seeds']} seeds, tag {sweep['tag']!r} (runs {runs}):")
    for name, stats in summary.items():
        print(f"  {name:<28} {100 * stats['mean']:6.2f} ± {100 * stats['std']:.2f}")
    print(f"summary: {path}")
    return {"tag": sweep["tag"], "runs": runs, "metrics": summary}

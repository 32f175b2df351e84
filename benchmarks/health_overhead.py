"""What the representation-health checks cost, as a ratio of training-step time.

Pre-trains one configuration (default: the tiny CPU job, gin/experiments/tiny_cpu.gin) in
this process, twice alternately per repeat: once with health checks off
(``representation_health.every = 0``) and once with them every ``--every`` steps. Two
figures:

- **in-run**: the health checks' own time (each ``HealthMonitor`` call, timed) over the
  training time of the same run without them — the ratio at ``--every``, and the cost of one
  check in training steps (so the ratio at any interval N is that over N);
- **A/B**: wall time per step with checks over wall time per step without (noisy on a shared
  machine: the in-run figure is the one to quote).

    OMP_NUM_THREADS=1 python benchmarks/health_overhead.py --steps 100 --every 10 --repeats 2
    python benchmarks/health_overhead.py -g gin/experiments/lvmae_cpu.gin --steps 60 --every 20

Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import gin

from lvmae.experiments.engine import gin_config, health


class _Run:
    """The little of a Sacred run that the loop uses; nothing is recorded."""

    def __init__(self):
        self._id, self.info, self.observers = 1, {}, []

    def log_scalar(self, *args):
        pass

    def add_artifact(self, *args, **kwargs):
        pass


def timed_run(files: list[str], bindings: list[str], workdir: str) -> tuple[float, float, int]:
    """(wall seconds of the loop, seconds inside health checks, health checks) of one run."""
    from lvmae.experiments.commands import pretrain
    spent = [0.0, 0]
    original = health.HealthMonitor.__call__

    def counted(self, step, batch):
        started = time.perf_counter()
        try:
            return original(self, step, batch)
        finally:
            spent[0] += time.perf_counter() - started
            spent[1] += 1

    health.HealthMonitor.__call__ = counted
    try:
        gin_config.parse(files, [*bindings, f"WORKDIR = '{workdir}'"])
        started = time.perf_counter()
        pretrain.pretrain_loop(_Run(), 0)
        return time.perf_counter() - started, spent[0], spent[1]
    finally:
        health.HealthMonitor.__call__ = original
        gin.clear_config()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-g", "--gin", default="gin/experiments/tiny_cpu.gin")
    parser.add_argument("-b", "--bind", action="append", default=[])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=10, help="health interval of the measured runs")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    common = [f"pretrain_loop.steps = {args.steps}", "pretrain_loop.checkpoint_minutes = 0.0",
              "pretrain_loop.device = 'cpu'", *args.bind]
    with_checks, without, inside, calls = [], [], 0.0, 0
    with tempfile.TemporaryDirectory() as folder:
        timed_run([args.gin], [*common, "pretrain_loop.steps = 2"], f"{folder}/warm")    # data, caches
        for repeat in range(args.repeats):
            off, _, _ = timed_run([args.gin], [*common, "representation_health.every = 0"], f"{folder}/off{repeat}")
            on, spent, count = timed_run([args.gin], [*common, f"representation_health.every = {args.every}"],
                                         f"{folder}/on{repeat}")
            without.append(off)
            with_checks.append(on)
            inside, calls = inside + spent, calls + count
    step_s = min(without) / args.steps
    check_s = inside / calls
    print(json.dumps({
        "gin": args.gin, "steps": args.steps, "every": args.every, "repeats": args.repeats,
        "step_ms": round(1000 * step_s, 2), "health_check_ms": round(1000 * check_s, 2),
        "checks_per_run": calls // args.repeats,
        "check_in_steps": round(check_s / step_s, 3),
        "in_run_overhead_ratio": round(inside / args.repeats / min(without), 4),
        "overhead_ratio_at_default_every_100": round(check_s / (100 * step_s), 5),
        "ab_wall_ratio": round(min(with_checks) / min(without), 4),
    }))


if __name__ == "__main__":
    main()

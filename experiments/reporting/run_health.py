"""Side-by-side curves of runs' loss, health and efficiency metrics (docs/training.md's pictures).

    python -m lvmae.experiments.reporting.run_health --tag health-docs --out docs/results/run_health.png
    python -m lvmae.experiments.reporting.run_health --run 3 --run 4 --label healthy --label collapsed

Reads each run's metric series from the runs database (``LVMAE_MONGO_URL``, else the local
server), one column per run, one row per metric (:data:`PANELS`); a run flagged as collapsed
(``info.health.collapsed``) says so in its title.
"""
from __future__ import annotations

import argparse
import os

#: (metric, row title) of the picture, top to bottom
PANELS = (
    ("train/loss", "loss"),
    ("health/effective_rank", "effective rank"),
    ("health/feature_std", "feature std / RMS"),
    ("health/dead_fraction", "dead fraction"),
    ("probe/knn_top1", "online kNN top-1"),
    ("eff/data_wait_fraction", "data-wait fraction"),
)

#: metrics drawn on a log scale (a diverging loss spans orders of magnitude)
LOG_SCALE = ("train/loss",)


def series_of(database, run_id: int) -> dict[str, tuple[list[int], list[float]]]:
    return {doc["name"]: (doc["steps"], doc["values"])
            for doc in database.metrics.find({"run_id": run_id, "name": {"$in": [m for m, _ in PANELS]}})}


def plot(runs: list[dict], path: str) -> str:
    """runs: [{"title", "series": {metric: (steps, values)}, "collapsed"}] → a PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [(m, t) for m, t in PANELS if any(m in r["series"] for r in runs)]
    figure, axes = plt.subplots(len(rows), len(runs), figsize=(4.2 * len(runs), 1.9 * len(rows)),
                                sharex="col", squeeze=False)
    for column, run in enumerate(runs):
        axes[0][column].set_title(run["title"] + ("  (flagged: collapsed)" if run["collapsed"] else ""), fontsize=10)
        for row, (metric, title) in enumerate(rows):
            axis = axes[row][column]
            steps, values = run["series"].get(metric, ([], []))
            axis.plot(steps, values, marker="o" if len(steps) < 20 else None, markersize=3)
            if metric in LOG_SCALE:
                axis.set_yscale("log")
            axis.set_ylabel(title, fontsize=8)
            axis.tick_params(labelsize=7)
            axis.grid(alpha=0.3)
        axes[-1][column].set_xlabel("step", fontsize=8)
    for row in range(len(rows)):            # one scale per metric across runs, to compare them
        low = min(axis.get_ylim()[0] for axis in axes[row])
        high = max(axis.get_ylim()[1] for axis in axes[row])
        for axis in axes[row]:
            axis.set_ylim(low, high)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    import pymongo

    from lvmae.experiments.tracking.observers import DEFAULT_DB, MONGO_DB_ENV, mongo_url
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=int, action="append", default=[], help="run ids, in column order")
    parser.add_argument("--tag", help="or: every COMPLETED run with this tag, by id")
    parser.add_argument("--label", action="append", default=[], help="column titles (default: run name and id)")
    parser.add_argument("--out", default="run_health.png")
    args = parser.parse_args(argv)
    url, _ = mongo_url()
    with pymongo.MongoClient(url, serverSelectionTimeoutMS=5000) as client:
        database = client[os.environ.get(MONGO_DB_ENV, DEFAULT_DB)]
        query = {"_id": {"$in": args.run}} if args.run else {"meta.tags": args.tag, "status": "COMPLETED"}
        documents = {d["_id"]: d for d in database.runs.find(query, {"experiment.name": 1, "info.health": 1,
                                                                      "config.gin_bindings": 1})}
        order = args.run or sorted(documents)
        runs = []
        for index, run_id in enumerate(order):
            document = documents[run_id]
            title = (args.label[index] if index < len(args.label)
                     else f"{document['experiment']['name']} (run {run_id})")
            runs.append({"title": title, "series": series_of(database, run_id),
                         "collapsed": bool(((document.get("info") or {}).get("health") or {}).get("collapsed"))})
    print(plot(runs, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

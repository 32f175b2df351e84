"""What ``run.py board`` sets up in Omniboard before it starts: run-list metric columns and the
metrics plot's default selection.

- **Metric columns** (Omniboard's ``omniboard.metric.columns`` collection): a single-point
  evaluation such as fine-tuning's ``eval/top1`` is invisible as a line in the metrics plot;
  as a column of the run list it is read and sorted at a glance. :data:`METRIC_COLUMNS` are
  added when no column of that name exists (a column the user edited or deleted and re-made
  is left alone).
- **Default plot**: Omniboard plots every metric of a run on one linear axis; the board asks it
  (``board_defaults.cjs``) to select :data:`DEFAULT_PLOT` instead, until the user picks others.
"""
from __future__ import annotations

import json

PLOT_ENV = "LVMAE_BOARD_PLOT"
#: the metrics a run's plot shows until the user picks others (every training run logs the loss)
DEFAULT_PLOT = ("train/loss", "eval/top1")
#: (column name, metric, which value): Omniboard's extrema are avg, min, max, last, last_avg
METRIC_COLUMNS = (
    ("loss", "train/loss", "last"),
    ("top1", "eval/top1", "last"),
    ("knn_top1", "probe/knn_top1", "last"),
    ("mfu", "eff/mfu", "avg"),
    ("data_wait", "eff/data_wait_fraction", "avg"),
)
COLUMNS_COLLECTION = "omniboard.metric.columns"


def plot_names() -> str:
    return json.dumps(list(DEFAULT_PLOT))


def ensure(url: str, db_name: str) -> list[str]:
    """Adds the missing :data:`METRIC_COLUMNS` to the database at ``url``; returns their names
    ([] when all exist or the database cannot be written)."""
    import pymongo
    added = []
    try:
        with pymongo.MongoClient(url, serverSelectionTimeoutMS=5000) as client:
            columns = client[db_name][COLUMNS_COLLECTION]
            for name, metric, extrema in METRIC_COLUMNS:
                if columns.find_one({"name": name}) is None:
                    columns.insert_one({"name": name, "metric_name": metric, "extrema": extrema, "lastn": 1})
                    added.append(name)
    except pymongo.errors.PyMongoError:
        return []
    return added

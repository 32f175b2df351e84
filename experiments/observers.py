"""Which observer records a run: a MongoDB at ``LVMAE_MONGO_URL`` or files under ``runs/``."""
from __future__ import annotations

import json
import os

from sacred.observers import FileStorageObserver, QueuedMongoObserver

MONGO_URL_ENV = "LVMAE_MONGO_URL"
MONGO_DB_ENV = "LVMAE_MONGO_DB"
RUNS_DIR_ENV = "LVMAE_RUNS_DIR"


class ResumableFileStorageObserver(FileStorageObserver):
    """A FileStorageObserver that can continue an existing run: ``--id N`` with ``runs/N``
    present reuses the folder (Sacred's own raises FileExistsError), and metrics.json keeps
    its series — Sacred appends to it. ``truncate_metrics`` drops points logged after a
    checkpoint, so a resumed run's series has no duplicated steps."""

    def _make_run_dir(self, _id):
        if _id is not None and os.path.isdir(os.path.join(self.basedir, str(_id))):
            self.dir = os.path.join(self.basedir, str(_id))
            return
        super()._make_run_dir(_id)

    def truncate_metrics(self, after_step: int) -> None:
        path = os.path.join(self.dir, "metrics.json") if self.dir else None
        if not path or not os.path.isfile(path):
            return
        with open(path, encoding="utf-8") as handle:
            metrics = json.load(handle)
        for series in metrics.values():
            keep = [i for i, step in enumerate(series["steps"]) if step <= after_step]
            for field in ("steps", "values", "timestamps"):
                series[field] = [series[field][i] for i in keep]
        self.save_json(metrics, "metrics.json")


def default_observer():
    """QueuedMongoObserver when ``LVMAE_MONGO_URL`` is set (survives a slow database), else a
    FileStorageObserver under ``$LVMAE_RUNS_DIR`` (default ``runs``)."""
    url = os.environ.get(MONGO_URL_ENV)
    if url:
        return QueuedMongoObserver(url=url, db_name=os.environ.get(MONGO_DB_ENV, "lvmae"))
    return ResumableFileStorageObserver(os.environ.get(RUNS_DIR_ENV, "runs"))

"""Which observer records a run: a MongoDB at ``LVMAE_MONGO_URL`` or files under ``runs/``."""
from __future__ import annotations

import os

from sacred.observers import FileStorageObserver, QueuedMongoObserver

MONGO_URL_ENV = "LVMAE_MONGO_URL"
MONGO_DB_ENV = "LVMAE_MONGO_DB"
RUNS_DIR_ENV = "LVMAE_RUNS_DIR"


def default_observer():
    """QueuedMongoObserver when ``LVMAE_MONGO_URL`` is set (survives a slow database), else a
    FileStorageObserver under ``$LVMAE_RUNS_DIR`` (default ``runs``)."""
    url = os.environ.get(MONGO_URL_ENV)
    if url:
        return QueuedMongoObserver(url=url, db_name=os.environ.get(MONGO_DB_ENV, "lvmae"))
    return FileStorageObserver(os.environ.get(RUNS_DIR_ENV, "runs"))

"""Which observer records a run.

``LVMAE_OBSERVER`` chooses (default ``mongo``):

- ``mongo``: a MongoDB — the one at ``LVMAE_MONGO_URL`` when set, else the project's local
  SecantusDB server (``local_db.py``), started on demand and left running for the board. With
  neither (no URL, the ``lvmae[localdb]`` extra not installed) there is no database to record
  into: the run is recorded as files, as with ``file``, and says so in one line.
  The database is pinged first: when it does not answer, the run stops before it starts with a
  message naming the URL (credentials masked) — or, with ``LVMAE_DB_FALLBACK=file``, says so
  loudly and records into files instead. Writes go through ``SafeQueuedMongoObserver``.
- ``file``: Sacred's FileStorageObserver under ``$LVMAE_RUNS_DIR`` (default ``runs``).

``LVMAE_MONGO_DB`` names the database (default ``lvmae``); ``LVMAE_FLUSH_TIMEOUT_S`` bounds
the flush at exit (default 60 s).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Literal, get_args

from sacred.observers import FileStorageObserver

from lvmae.experiments.tracking import dead_runs, local_db
from lvmae.experiments.tracking.mongo_observer import RedactingMongoObserver, SafeQueuedMongoObserver
from lvmae.experiments.tracking.redact import remember_secret_of, safe_url

MONGO_URL_ENV = "LVMAE_MONGO_URL"
MONGO_DB_ENV = "LVMAE_MONGO_DB"
RUNS_DIR_ENV = local_db.RUNS_DIR_ENV
OBSERVER_ENV = "LVMAE_OBSERVER"
FALLBACK_ENV = "LVMAE_DB_FALLBACK"
FLUSH_TIMEOUT_ENV = "LVMAE_FLUSH_TIMEOUT_S"
ObserverKind = Literal["mongo", "file"]
DEFAULT_DB = "lvmae"
DEFAULT_FLUSH_TIMEOUT_S = 60.0
# A network call to a dead server fails after this long, so the writer thread retries promptly.
SERVER_SELECTION_TIMEOUT_MS = 5000
# Acknowledged only once journaled: with w:1, j:false (the MongoDB default) a server killed within
# ~100 ms of a write loses it, measured on SecantusDB (5 of 5 upserts lost; 0 with j:true). The
# writes happen on the observer's thread, so their latency never reaches training.
WRITE_CONCERN = {"journal": True}


class ResumableFileStorageObserver(FileStorageObserver):
    """A FileStorageObserver that can continue an existing run: ``--id N`` with ``runs/N``
    present reuses the folder (Sacred's own raises FileExistsError), and metrics.json keeps
    its series — Sacred appends to it. ``truncate_metrics`` drops points logged after a
    checkpoint, so a resumed run's series has no duplicated steps."""

    def __init__(self, basedir: str, resume_run: int | None = None):
        super().__init__(basedir)
        self.resume_run = resume_run

    def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
        if _id is None and self.resume_run is not None:     # --resume-run ID == Sacred's --id ID
            _id = self.resume_run
        return super().started_event(ex_info, command, host_info, start_time, config, meta_info, _id)

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


class ObserverSetupError(SystemExit):
    """The run cannot be recorded as configured; exits with the message (no traceback)."""


def _choice(env: str, allowed: tuple[str, ...], default: str) -> str:
    value = os.environ.get(env, default).strip().lower()
    if value not in allowed:
        raise ObserverSetupError(f"{env}={value!r} is not one of {', '.join(allowed)}")
    return value


def mongo_url() -> tuple[str, str]:
    """(URL, where it came from): ``LVMAE_MONGO_URL`` or the local server (started if needed)."""
    url = os.environ.get(MONGO_URL_ENV)
    if url:
        remember_secret_of(url)
        return url, MONGO_URL_ENV
    try:
        return local_db.ensure_server(), f"the local SecantusDB under {local_db.db_dir()}"
    except local_db.LocalDatabaseError as error:
        raise ObserverSetupError(f"lvmae tracking: {error}") from error


def observer_kind() -> ObserverKind:
    """Where runs are recorded: ``LVMAE_OBSERVER``'s choice, except that the default database
    with no server to reach (no ``LVMAE_MONGO_URL``, ``secantusd-py`` not installed) is files."""
    kind = _choice(OBSERVER_ENV, get_args(ObserverKind), "mongo")
    if kind == "mongo" and not os.environ.get(MONGO_URL_ENV) and not local_db.daemon_installed():
        return "file"
    return kind


def _no_database_line(runs: str) -> str:
    return (f"lvmae tracking: no database ({MONGO_URL_ENV} unset, {local_db.DAEMON} not installed: "
            f"pip install 'lvmae[localdb]'); recording this run as files under {runs}/")


def file_observer(resume_run: int | None = None) -> FileStorageObserver:
    return ResumableFileStorageObserver(os.environ.get(RUNS_DIR_ENV, "runs"), resume_run)


def mongo_observer(url: str, resume_run: int | None = None) -> SafeQueuedMongoObserver:
    covered = RedactingMongoObserver(
        url=url, db_name=os.environ.get(MONGO_DB_ENV, DEFAULT_DB), overwrite=resume_run,
        serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS, **WRITE_CONCERN)
    runs = local_db.runs_dir()
    return SafeQueuedMongoObserver(
        covered, spool_dir=runs / "db" / "spool", unflushed_dir=runs / "unflushed",
        url_for_messages=safe_url(url),
        flush_timeout_s=float(os.environ.get(FLUSH_TIMEOUT_ENV, DEFAULT_FLUSH_TIMEOUT_S)))


def default_observer(resume_run: int | None = None):
    """The observer ``LVMAE_OBSERVER`` asks for; ``resume_run`` writes into that run id."""
    if observer_kind() == "file":
        runs = os.environ.get(RUNS_DIR_ENV, "runs")
        if _choice(OBSERVER_ENV, get_args(ObserverKind), "mongo") != "file":
            print(_no_database_line(runs), file=sys.stderr)
        dead_runs.announce(dead_runs.mark_in_folder(runs), runs)
        return file_observer(resume_run)   # or Sacred's own `--id <id>`
    url, origin = mongo_url()
    problem = local_db.ping(url)
    if problem is None:
        dead_runs.mark_at(url, os.environ.get(MONGO_DB_ENV, DEFAULT_DB), safe_url(url))
        try:
            return mongo_observer(url, resume_run)
        except RuntimeError as error:   # Sacred: no run with the id to resume
            raise ObserverSetupError(f"lvmae tracking: cannot resume run {resume_run} at {safe_url(url)}: {error}")
    message = f"lvmae tracking: the database at {safe_url(url)} (from {origin}) does not answer: {problem}"
    if _choice(FALLBACK_ENV, ("", "file"), "") == "file":
        print(f"{message}\nlvmae tracking: {FALLBACK_ENV}=file → recording this run as files under "
              f"{os.environ.get(RUNS_DIR_ENV, 'runs')}/ instead", file=sys.stderr)
        return file_observer()
    raise ObserverSetupError(
        f"{message}\nStart it (or fix {MONGO_URL_ENV}), set {FALLBACK_ENV}=file to record into files "
        f"when it is down, or {OBSERVER_ENV}=file to always record into files.")

"""The completed runs of a study, read back from the database (``LVMAE_MONGO_URL`` or the local
SecantusDB) or, with ``LVMAE_OBSERVER=file``, from the run folders under ``$LVMAE_RUNS_DIR``:
per run its command, study, arm, seed, extra task, configuration hash, start and the last value
of every metric; and the runs that count (``current_runs``): those whose configuration hash is
the study file's, the newest per (arm, seed, stage, task).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lvmae.experiments.reporting.study_file import SHARED, Study

STUDY_TAG, ARM_TAG, TASK_TAG, CONFIG_TAG = "study=", "arm=", "task=", "config="
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class StoredRun:
    run_id: object
    command: str
    arm: str
    seed: int
    finals: dict[str, float]   # metric → last logged value
    task: str | None = None    # the extra evaluation task (None: the study's own data)
    study: str = ""            # the study it is tagged with (another one for shared or reused runs)
    origin_arm: str = ""       # its arm as tagged (``arm`` may be this study's name for a reused arm)
    config: str | None = None  # the configuration hash it was run with (None: run before hashes)
    started: float = -math.inf  # start time (POSIX seconds; -inf when not recorded)

    @property
    def key(self) -> tuple[str, int, str, str | None]:
        return self.arm, self.seed, self.command, self.task

    @property
    def order(self) -> tuple[float, int]:
        """Newer sorts later: start time, then the run id as a number (never as a string, where
        "9" would sort after "10")."""
        return self.started, _numeric_id(self.run_id)


def _numeric_id(run_id: object) -> int:
    try:
        return int(str(run_id))
    except ValueError:
        return -1


def _start(value: object) -> float:
    """A run's start time (datetime from the database, ISO text from a run folder) in seconds."""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            return -math.inf
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=value.tzinfo or datetime.timezone.utc).timestamp()
    return -math.inf


def _stored(run_id: object, command: str, tags: list[str], seed: object, start: object) -> StoredRun:
    arm = _tag_value(tags, ARM_TAG)
    return StoredRun(run_id, command, arm, seed, {}, _tag_value(tags, TASK_TAG), _tag_value(tags, STUDY_TAG) or "",
                     arm or "", _tag_value(tags, CONFIG_TAG), _start(start))


def current_runs(runs: list[StoredRun], expected: Callable[[StoredRun], str | None]
                 ) -> tuple[list[StoredRun], list[StoredRun], int]:
    """The runs that count: those whose configuration hash equals ``expected(run)`` (the hash the
    study file gives that run now), the newest per (arm, seed, stage, task). Returns them, the
    stale runs (another hash, or none) and the number of older matching repeats."""
    newest: dict[tuple, StoredRun] = {}
    stale, repeats = [], 0
    for run in runs:
        if run.config is None or run.config != expected(run):
            stale.append(run)
            continue
        if run.key in newest:
            repeats += 1
            if run.order <= newest[run.key].order:
                continue
        newest[run.key] = run
    return list(newest.values()), stale, repeats


def _tag_value(tags: list[str], prefix: str) -> str | None:
    return next((t[len(prefix):] for t in tags if t.startswith(prefix)), None)


def runs_source() -> str:
    """Where ``stored_runs`` reads, in words (for the report's header)."""
    if os.environ.get("LVMAE_OBSERVER", "mongo") == "file":
        from lvmae.experiments.tracking import local_db

        folder = Path(local_db.runs_dir())
        shown = os.path.relpath(folder, ROOT) if folder.is_relative_to(ROOT) else str(folder)
        return f"run folders (`LVMAE_OBSERVER=file LVMAE_RUNS_DIR={shown}`)"
    from lvmae.experiments.tracking.redact import safe_url
    url = os.environ.get("LVMAE_MONGO_URL")
    return f"the database at {safe_url(url)}" if url else "the local SecantusDB database"


def stored_runs(study_name: str) -> list[StoredRun]:
    """COMPLETED runs tagged ``study=<name>``, from files (``LVMAE_OBSERVER=file``) or the database,
    plus the study ledger's records of runs the store does not hold (study_records.py)."""
    from lvmae.experiments.reporting import study_records

    return study_records.merged(store_runs(study_name), study_records.read_records(study_name))


def store_runs(study_name: str) -> list[StoredRun]:
    """COMPLETED runs tagged ``study=<name>`` in this machine's run store only."""
    if os.environ.get("LVMAE_OBSERVER", "mongo") == "file":
        return _file_runs(study_name)
    return _mongo_runs(study_name)


def study_runs(study: Study) -> list[StoredRun]:
    """The study's completed runs, with its prepare owner's shared (tokenizer) runs when it has
    ``prepared_by`` and, for a ``reuse``d arm, the other study's runs of that arm."""
    runs = [r for r in stored_runs(study.name) if r.arm not in study.reuse]
    if study.prepared_by:
        runs += [r for r in stored_runs(study.prepared_by) if r.arm == SHARED]
    for arm, (other, other_arm) in study.reuse.items():     # identical runs, stored under the other study
        runs += [dataclasses.replace(r, arm=arm) for r in stored_runs(other)
                 if r.arm in (other_arm, SHARED) and r.task is None and r.command in study.stages
                 and r.seed in study.seeds]
    return runs


def _file_runs(study_name: str) -> list[StoredRun]:
    from lvmae.experiments.tracking import local_db

    base = Path(local_db.runs_dir())
    runs = []
    for folder in sorted(base.glob("*/run.json")):
        try:
            record = json.loads(folder.read_text(encoding="utf-8"))
            metrics = json.loads((folder.parent / "metrics.json").read_text(encoding="utf-8"))
            config = json.loads((folder.parent / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue     # a run still starting, or not a run folder
        tags = (record.get("meta") or {}).get("tags") or []
        if STUDY_TAG + study_name not in tags or record.get("status") != "COMPLETED":
            continue
        finals = {name: float(series["values"][-1]) for name, series in metrics.items() if series.get("values")}
        run = _stored(folder.parent.name, record.get("command", ""), tags, config.get("seed"), record.get("start_time"))
        runs.append(dataclasses.replace(run, finals=finals))
    return runs


def _mongo_runs(study_name: str) -> list[StoredRun]:
    import pymongo

    from lvmae.experiments.tracking import local_db
    from lvmae.experiments.tracking.redact import safe_url

    url = os.environ.get("LVMAE_MONGO_URL") or local_db.ensure_server()
    problem = local_db.ping(url)
    if problem:
        raise SystemExit(f"study: the database at {safe_url(url)} does not answer: {problem}")
    with pymongo.MongoClient(url, serverSelectionTimeoutMS=5000) as client:
        database = client[os.environ.get("LVMAE_MONGO_DB", "lvmae")]
        docs = list(database.runs.find({"meta.tags": STUDY_TAG + study_name, "status": "COMPLETED"},
                                       {"_id": 1, "command": 1, "meta.tags": 1, "config.seed": 1, "start_time": 1}))
        runs = {doc["_id"]: _stored(doc["_id"], doc.get("command", ""), doc["meta"]["tags"],
                                    doc.get("config", {}).get("seed"), doc.get("start_time"))
                for doc in docs}
        for doc in database.metrics.find({"run_id": {"$in": list(runs)}}, {"run_id": 1, "name": 1, "steps": 1, "values": 1}):
            if doc["values"]:
                last = max(range(len(doc["steps"])), key=lambda i: (doc["steps"][i], i))
                runs[doc["run_id"]].finals[doc["name"]] = float(doc["values"][last])
    return list(runs.values())

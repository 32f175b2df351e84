"""Runs whose process died without reporting (kill -9, a crashed host, a lost connection) stay
RUNNING in the store forever; this marks them with Sacred's vocabulary.

A RUNNING run whose heartbeat is older than ``LVMAE_STALE_AFTER_S`` (default
:data:`DEFAULT_STALE_AFTER_S`; Sacred beats every 10 s) becomes INTERRUPTED, with the reason in
``fail_trace`` and its last heartbeat as ``stop_time``. It happens whenever a run, ``db status``,
``board`` or ``report`` starts. A run that was only cut off from the database (an outage longer
than the threshold) writes RUNNING again with its next heartbeat, so marking is never final
for a live run. ``run.py resume ID`` continues an interrupted run.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

from lvmae.experiments import program

STALE_AFTER_ENV = "LVMAE_STALE_AFTER_S"
DEFAULT_STALE_AFTER_S = 300.0
DEAD_STATUS = "INTERRUPTED"


def stale_after_s() -> float:
    text = os.environ.get(STALE_AFTER_ENV, "").strip()
    if not text:
        return DEFAULT_STALE_AFTER_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise SystemExit(f"{STALE_AFTER_ENV}={text!r} must be a positive number of seconds")
    return value


def _utcnow() -> datetime.datetime:
    # Sacred stores naive UTC datetimes
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def reason(heartbeat, threshold_s: float, run_id) -> str:
    return (f"lvmae: no heartbeat since {heartbeat} UTC (a live run beats every few seconds; marked after "
            f"{threshold_s:.0f} s): the process ended without reporting (killed, crashed or cut off). "
            f"Continue it with: {program.name()} resume {run_id}")


def mark_in_database(database, threshold_s: float | None = None, now: datetime.datetime | None = None) -> list:
    """Marks the stale RUNNING runs of a MongoDB database; returns their ids."""
    threshold_s = stale_after_s() if threshold_s is None else threshold_s
    cutoff = (now or _utcnow()) - datetime.timedelta(seconds=threshold_s)
    marked = []
    for document in database.runs.find({"status": "RUNNING", "heartbeat": {"$lt": cutoff}},
                                       {"_id": 1, "heartbeat": 1}):
        # Only if nothing changed since it was read (a late heartbeat wins).
        result = database.runs.update_one(
            {"_id": document["_id"], "status": "RUNNING", "heartbeat": document["heartbeat"]},
            {"$set": {"status": DEAD_STATUS, "stop_time": document["heartbeat"],
                      "fail_trace": [reason(document["heartbeat"], threshold_s, document["_id"])]}})
        if result.modified_count:
            marked.append(document["_id"])
    return marked


def mark_in_folder(basedir: str | Path, threshold_s: float | None = None,
                   now: datetime.datetime | None = None) -> list:
    """The same for Sacred's file store (``<basedir>/<id>/run.json``)."""
    threshold_s = stale_after_s() if threshold_s is None else threshold_s
    cutoff = (now or _utcnow()) - datetime.timedelta(seconds=threshold_s)
    marked = []
    for path in sorted(Path(basedir).glob("*/run.json")):
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            beat = datetime.datetime.fromisoformat(entry.get("heartbeat") or "")
        except (OSError, ValueError):
            continue
        if entry.get("status") != "RUNNING" or beat >= cutoff:
            continue
        entry.update({"status": DEAD_STATUS, "stop_time": entry["heartbeat"],
                      "fail_trace": [reason(entry["heartbeat"], threshold_s, path.parent.name)]})
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(entry, indent=2), encoding="utf-8")
        os.replace(temporary, path)
        marked.append(path.parent.name)
    return marked


def announce(marked: list, where: str) -> None:
    if marked:
        print(f"lvmae tracking: marked {len(marked)} run(s) {DEAD_STATUS} (no heartbeat for "
              f"{stale_after_s():.0f} s) in {where}: {', '.join(map(str, marked))}", file=sys.stderr)


def mark_at(url: str, db_name: str, where: str) -> list:
    """Marks the stale runs of the database at ``url`` and says which; [] when it cannot."""
    import pymongo
    try:
        with pymongo.MongoClient(url, serverSelectionTimeoutMS=5000) as client:
            marked = mark_in_database(client[db_name])
    except pymongo.errors.PyMongoError:
        return []
    announce(marked, where)
    return marked

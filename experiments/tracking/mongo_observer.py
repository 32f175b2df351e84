"""Outage-safe MongoDB logging for Sacred runs.

``SafeQueuedMongoObserver`` puts every event except ``started`` on a queue that a background
thread writes to MongoDB, so a database outage of minutes neither stalls training nor loses a
metric (Sacred's own ``QueuedMongoObserver`` retries forever, blocks the exit without bound,
retries non-network errors forever and reads an artifact's file only when it gets to it — after
the temporary file may be gone). Here:

- only network errors are retried (every ``retry_interval_s``, each try bounded by the client's
  ``serverSelectionTimeoutMS``); any other error drops that one event, with a message, into the
  unflushed dump; one line is printed when the database stops answering and one when it is
  back (the local server keeps its port across restarts, so the same client reconnects);
- an artifact is copied into a spool folder when it is added (redacted when it is text);
- the flush at exit waits at most ``flush_timeout_s``; whatever is still queued then is pickled
  to ``<runs>/unflushed/`` with a message, and ``python run.py db replay FILE`` writes it later;
- every string of the run document is redacted (``redact.py``) before it is written;
- command-line tags go to ``omniboard.tags`` (where Omniboard shows them) and ``meta.tags``;
- resuming (``overwrite=<run id>``) keeps the run's artifacts, metric references and output,
  drops its metric points after the checkpoint it resumes from (no step is stored twice) and
  the failure that stopped it (``fail_trace``, ``stop_time``).
"""
from __future__ import annotations

import mimetypes
import os
import pickle
import queue
import shutil
import sys
import threading
import time
import uuid
from collections import namedtuple
from pathlib import Path

from sacred.observers.base import RunObserver
from sacred.observers.mongo import QueueCompatibleMongoObserver

from lvmae.experiments import program
from lvmae.experiments.tracking.redact import redact, redact_text

WrappedEvent = namedtuple("WrappedEvent", "name args kwargs")
TEXT_SUFFIXES = {".gin", ".txt", ".json", ".yaml", ".yml", ".csv", ".log", ".md", ".py", ".toml"}
TEXT_REDACT_MAX_BYTES = 8 * 2**20   # larger text artifacts are copied as they are
RESUME_SEPARATOR = "\n----- resumed -----\n"
OUTAGE_REASON_CHARS = 120    # the outage line names the error, not pymongo's topology dump
# What a resumed run's document must not keep from the run it continues (the failure, its end).
STALE_ON_RESUME = ("fail_trace", "stop_time", "result")
METRIC_FIELDS = ("steps", "values", "timestamps")


def _network_errors() -> tuple[type[BaseException], ...]:
    import pymongo.errors
    return (pymongo.errors.ConnectionFailure, pymongo.errors.ServerSelectionTimeoutError)


class RedactingMongoObserver(QueueCompatibleMongoObserver):
    """Sacred's queue-compatible MongoObserver whose run document is redacted before each
    write, which records tags and which resumes into an existing run without losing its past."""

    def __init__(self, *args, tags: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tags = list(tags or [])
        self._previous_out = ""
        self._previous_metric_refs: list[dict] = []

    def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
        previous = dict(self.overwrite) if self.overwrite is not None else None
        tags = list(dict.fromkeys([*(meta_info.get("tags") or []), *self.tags]))
        if tags:
            meta_info = {**meta_info, "tags": tags}
        if previous is None:
            return super().started_event(ex_info, command, host_info, start_time, config, meta_info, _id)
        self._previous_out = previous.get("captured_out") or ""
        self._previous_metric_refs = list((previous.get("info") or {}).get("metrics", []))
        meta_info = {**meta_info, "resumes": [*previous.get("meta", {}).get("resumes", []), start_time]}
        run_id = super().started_event(ex_info, command, host_info, start_time, config, meta_info, _id)
        self.run_entry["start_time"] = previous.get("start_time", start_time)
        for stale in STALE_ON_RESUME:       # the crash that stopped it is not this run's end
            self.run_entry.pop(stale, None)
        # Sacred saves with $set, which keeps fields the entry no longer has: remove them
        self.runs.update_one({"_id": self.run_entry["_id"]}, {"$unset": dict.fromkeys(STALE_ON_RESUME, "")})
        self.run_entry["artifacts"] = list(previous.get("artifacts", []))
        self.run_entry["info"] = dict(previous.get("info") or {})
        old_tags = (previous.get("omniboard") or {}).get("tags", [])
        tags = list(dict.fromkeys([*old_tags, *tags]))
        if tags:
            self.run_entry["omniboard"] = {**(previous.get("omniboard") or {}), "tags": tags}
        self.save()
        return run_id

    def heartbeat_event(self, info, captured_out, beat_time, result):
        if self._previous_out:
            captured_out = self._previous_out + RESUME_SEPARATOR + (captured_out or "")
        if self._previous_metric_refs:
            known = {ref["name"] for ref in info.get("metrics", [])}
            earlier = [ref for ref in self._previous_metric_refs if ref["name"] not in known]
            info = {**info, "metrics": earlier + list(info.get("metrics", []))}
        super().heartbeat_event(info, captured_out, beat_time, result)

    def truncate_metrics(self, after_step: int) -> None:
        """Drops this run's metric points logged after ``after_step`` (a resumed run logs them
        again from its checkpoint on, so no step is stored twice)."""
        for series in self.metrics.find({"run_id": self.run_entry["_id"]}, {"steps": 1}):
            keep = [i for i, step in enumerate(series["steps"]) if step <= after_step]
            if len(keep) == len(series["steps"]):
                continue
            document = self.metrics.find_one({"_id": series["_id"]})
            self.metrics.update_one({"_id": series["_id"]}, {"$set": {
                field: [document[field][i] for i in keep] for field in METRIC_FIELDS}})

    def _redacted_entry(self) -> None:
        tags = (self.run_entry.get("meta") or {}).get("tags")
        if tags and "omniboard" not in self.run_entry:
            self.run_entry["omniboard"] = {"tags": list(tags)}
        self.run_entry = redact(self.run_entry)

    def insert(self):
        self._redacted_entry()
        return super().insert()

    def save(self):
        self._redacted_entry()
        return super().save()

    def final_save(self, attempts):
        self._redacted_entry()
        return super().final_save(attempts)


class SafeQueuedMongoObserver(RunObserver):
    """Writes a run to MongoDB from a background thread; see the module docstring."""

    def __init__(self, covered: RedactingMongoObserver, spool_dir: Path, unflushed_dir: Path,
                 url_for_messages: str, flush_timeout_s: float = 60.0, retry_interval_s: float = 2.0):
        if flush_timeout_s < 0 or retry_interval_s <= 0:
            raise ValueError(f"flush_timeout_s must be ≥ 0 and retry_interval_s > 0, got "
                             f"{flush_timeout_s}, {retry_interval_s}")
        self.covered = covered
        self.priority = covered.priority
        self.spool_dir = Path(spool_dir) / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.unflushed_dir = Path(unflushed_dir)
        self.url_for_messages = url_for_messages
        self.flush_timeout_s = flush_timeout_s
        self.retry_interval_s = retry_interval_s
        self._queue: queue.Queue[WrappedEvent] = queue.Queue()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._current: WrappedEvent | None = None
        self._dropped: list[WrappedEvent] = []
        self._joined = False
        self.outage_seconds = 0.0      # time spent waiting for the database (for messages)
        self.outages = 0               # how many times it stopped answering
        self._outage_since: float | None = None

    # --- events ---------------------------------------------------------------------------
    def started_event(self, *args, **kwargs):
        # Synchronous: the run id comes from the database (observers.py pings it first). One
        # observer may record several runs of one process one after the other (``run.py seeds``):
        # each run gets its own writer thread and its own flush at its end.
        self._stop.clear()
        self._joined, self._current, self._dropped = False, None, []
        run_id = self.covered.started_event(*args, **kwargs)
        self._worker = threading.Thread(target=self._work, name="mongo-observer", daemon=True)
        self._worker.start()
        return run_id

    def _put(self, name: str, *args, **kwargs) -> None:
        self._queue.put(WrappedEvent(name, args, kwargs))

    def heartbeat_event(self, *args, **kwargs):
        self._put("heartbeat_event", *args, **kwargs)

    def log_metrics(self, metrics_by_name, info):
        for name, values in metrics_by_name.items():
            self._put("log_metrics", name, values, info)

    def resource_event(self, *args, **kwargs):
        self._put("resource_event", *args, **kwargs)

    def truncate_metrics(self, after_step: int) -> None:
        """Queued like every write, so it lands before the resumed run's first point."""
        self._put("truncate_metrics", after_step)

    def artifact_event(self, name, filename, metadata=None, content_type=None):
        if content_type is None:
            content_type = mimetypes.guess_type(filename)[0] or (
                "text/plain" if Path(filename).suffix.lower() in TEXT_SUFFIXES else "application/octet-stream")
        self._put("artifact_event", name, self._spool(filename), metadata=metadata, content_type=content_type)

    def completed_event(self, *args, **kwargs):
        self._put("completed_event", *args, **kwargs)
        self.join()

    def interrupted_event(self, *args, **kwargs):
        self._put("interrupted_event", *args, **kwargs)
        self.join()

    def failed_event(self, *args, **kwargs):
        self._put("failed_event", *args, **kwargs)
        self.join()

    # --- machinery ------------------------------------------------------------------------
    def _spool(self, filename: str) -> str:
        """A private copy of the artifact (text redacted), valid until it is written."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        target = self.spool_dir / f"{uuid.uuid4().hex[:8]}-{Path(filename).name}"
        if Path(filename).suffix.lower() in TEXT_SUFFIXES and os.path.getsize(filename) <= TEXT_REDACT_MAX_BYTES:
            text = Path(filename).read_text(encoding="utf-8", errors="surrogateescape")
            target.write_text(redact_text(text), encoding="utf-8", errors="surrogateescape")
        else:
            shutil.copyfile(filename, target)
        return str(target)

    def _work(self) -> None:
        network_errors = _network_errors()
        while not self._stop.is_set():
            try:
                event = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self._current = event
            while not self._stop.is_set():
                try:
                    getattr(self.covered, event.name)(*event.args, **event.kwargs)
                except network_errors as error:
                    self._outage_began(error)
                    self._stop.wait(self.retry_interval_s)
                    continue
                except Exception as error:  # noqa: BLE001  (a document the database refuses: keep it, go on)
                    print(f"lvmae tracking: {event.name} refused by the database ({redact_text(str(error))[:300]}); "
                          "it goes to the unflushed dump", file=sys.stderr)
                    self._dropped.append(event)
                else:
                    if event.name == "artifact_event":
                        Path(event.args[1]).unlink(missing_ok=True)
                    self._outage_ended()
                self._current = None
                break
            if self._current is None:
                self._queue.task_done()

    def _outage_began(self, error: BaseException) -> None:
        """One line when the database stops answering (not one per retry)."""
        if self._outage_since is not None:
            return
        self._outage_since = time.monotonic()
        self.outages += 1
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        reason = redact_text(text.split(" (configured timeouts")[0].split(", Timeout:")[0])[:OUTAGE_REASON_CHARS]
        print(f"lvmae tracking: {time.strftime('%H:%M:%S')} the database at {self.url_for_messages} does not "
              f"answer ({reason}); training goes on, events are queued and written when it is back",
              file=sys.stderr, flush=True)

    def _outage_ended(self) -> None:
        """One line when it answers again."""
        if self._outage_since is None:
            return
        seconds = time.monotonic() - self._outage_since
        self.outage_seconds += seconds
        self._outage_since = None
        print(f"lvmae tracking: {time.strftime('%H:%M:%S')} the database is back after {seconds:.0f} s; "
              f"writing the {self._queue.unfinished_tasks} queued events", file=sys.stderr, flush=True)

    def _pending(self) -> bool:
        return self._queue.unfinished_tasks > 0

    def join(self) -> None:
        """Waits for the queue to drain, at most ``flush_timeout_s``; then dumps what is left."""
        if self._joined or self._worker is None:
            return
        self._joined = True
        started = time.monotonic()
        announced = False
        while self._pending() and time.monotonic() - started < self.flush_timeout_s:
            if not announced and time.monotonic() - started > 2:
                print(f"lvmae tracking: waiting up to {self.flush_timeout_s:.0f} s for {self.url_for_messages} "
                      f"to take {self._queue.unfinished_tasks} queued events", file=sys.stderr)
                announced = True
            time.sleep(0.05)
        self._stop.set()
        self._worker.join(timeout=self.retry_interval_s + 10)
        left = ([self._current] if self._current is not None else []) + self._drain() + self._dropped
        if left:
            self._dump(left)
        elif self.spool_dir.exists():
            shutil.rmtree(self.spool_dir, ignore_errors=True)

    def _drain(self) -> list[WrappedEvent]:
        events = []
        while True:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                return events

    def _dump(self, events: list[WrappedEvent]) -> None:
        run_id = (self.covered.run_entry or {}).get("_id")
        self.unflushed_dir.mkdir(parents=True, exist_ok=True)
        path = self.unflushed_dir / f"run-{run_id}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.pickle"
        payload = {"run_id": run_id, "db_name": self.covered.runs.database.name,
                   "runs_collection": self.covered.runs.name, "events": []}
        for event in events:
            try:
                pickle.dumps(event)
                payload["events"].append(event)
            except Exception as error:  # noqa: BLE001  (an unpicklable result/info value: say which event)
                print(f"lvmae tracking: cannot keep {event.name} ({error})", file=sys.stderr)
        with open(path, "wb") as handle:
            pickle.dump(payload, handle)
        metric_points = sum(len(e.args[1]["values"]) for e in payload["events"] if e.name == "log_metrics")
        print(f"lvmae tracking: {self.url_for_messages} did not take {len(events)} events "
              f"({metric_points} metric points) within {self.flush_timeout_s:.0f} s; they are kept in {path}. "
              f"Write them later with: {program.name()} db replay {path}", file=sys.stderr)

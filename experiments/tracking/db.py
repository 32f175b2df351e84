"""``python run.py db [start|stop|status|replay FILE]``: the project's local SecantusDB server.

Runs start it on demand; this command starts it ahead of time, tells where it is, stops it
(its data stays under ``<runs>/db/data``) and writes events that a run could not deliver during
an outage (``<runs>/unflushed/*.pickle``) into the database they were meant for.
"""
from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

from lvmae.experiments import program
from lvmae.experiments.tracking import local_db
from lvmae.experiments.tracking.redact import safe_url


def replay(path: Path, url: str, db_name: str) -> int:
    """Writes the pickled events of ``path`` into their run; returns how many were written.
    Renames the file to ``*.replayed`` so that it is not written twice."""
    from lvmae.experiments.tracking.mongo_observer import RedactingMongoObserver
    with open(path, "rb") as handle:
        payload = pickle.load(handle)
    observer = RedactingMongoObserver(url=url, db_name=payload.get("db_name", db_name),
                                      collection=payload.get("runs_collection", "runs"),
                                      serverSelectionTimeoutMS=5000, journal=True)
    entry = observer.runs.find_one({"_id": payload["run_id"]})
    if entry is None:
        raise SystemExit(f"db replay: run {payload['run_id']} of {path} is not in {safe_url(url)}")
    observer.run_entry = entry
    for event in payload["events"]:
        getattr(observer, event.name)(*event.args, **event.kwargs)
        if event.name == "artifact_event":
            Path(event.args[1]).unlink(missing_ok=True)
    path.rename(path.with_suffix(".replayed"))
    return len(payload["events"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"{program.name()} db", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", default="status", choices=["start", "stop", "status", "replay"])
    parser.add_argument("files", nargs="*", type=Path, help="unflushed *.pickle files (replay)")
    parser.add_argument("--port", type=int, default=None,
                        help="port for start (default: the one this data was served on before, else a free one)")
    args = parser.parse_args(argv)
    runs = local_db.runs_dir()
    if args.action == "start":
        try:
            url = local_db.ensure_server(runs, port=args.port)
        except local_db.LocalDatabaseError as error:
            raise SystemExit(f"db start: {error}") from error
        print(f"SecantusDB at {url} (data {local_db.db_dir(runs) / 'data'}); stop with: {program.name()} db stop")
    elif args.action == "stop":
        state = local_db.stop_server(runs)
        print(f"stopped SecantusDB pid {state['pid']} ({state['url']})" if state else
              f"no SecantusDB server runs for {runs}")
    elif args.action == "status":
        state = local_db.status(runs)
        if not state:
            print(f"no SecantusDB server runs for {runs} (a run or `{program.name()} db start` starts one)")
            return 1
        print(f"SecantusDB pid {state['pid']} at {state['url']} (data {state['storage_path']})")
        from lvmae.experiments.tracking.dead_runs import mark_at
        mark_at(state["url"], os.environ.get("LVMAE_MONGO_DB", "lvmae"), safe_url(state["url"]))
    else:
        if not args.files:
            parser.error("replay needs one or more files from <runs>/unflushed/")
        url = os.environ.get("LVMAE_MONGO_URL") or local_db.ensure_server(runs)
        for path in args.files:
            print(f"{path}: wrote {replay(path, url, os.environ.get('LVMAE_MONGO_DB', 'lvmae'))} events "
                  f"into {safe_url(url)}")
    return 0

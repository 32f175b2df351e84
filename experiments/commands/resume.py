"""``lvmae resume RUN_ID`` (``python run.py resume RUN_ID``): continue a run that stopped (killed, crashed, interrupted)
with exactly the command line it was started with.

Reads run RUN_ID's command, gin files, gin bindings and seed from the store runs are recorded
in (``LVMAE_OBSERVER``: the database, or ``runs/<id>/`` files) and runs
``COMMAND with gin_files=... gin_bindings=... seed=... --resume-run RUN_ID``:
the engine continues the run's own folder from its last checkpoint and the same record gets
the rest of the metrics. Crash-test bindings (``exit_after_step``) are left out: the resumed run
does not crash again. Extra arguments are appended (``-b 'pretrain_loop.steps=500'`` to
train further, where the engine allows that binding to change).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from lvmae.experiments import program
from lvmae.experiments.tracking import local_db

RUN_KEYS = ("gin_files", "gin_bindings", "seed")
# Crash-test hooks a resume leaves out of the stored bindings (the run would crash again);
# an extra ``-b`` after the run id may still set them.
CRASH_TEST_PARAMETERS = ("exit_after_step",)


class RunNotFound(LookupError):
    """No such run in the store; the message names the run and the store."""


def stored_run(run_id: int) -> dict:
    """{"command", "status", "config", "info": {"run_folder"}} of run ``run_id`` in the store runs
    are recorded in; raises RunNotFound."""
    from lvmae.experiments.tracking.observers import DEFAULT_DB, MONGO_DB_ENV, mongo_url, observer_kind
    if observer_kind() == "file":
        folder = Path(os.environ.get(local_db.RUNS_DIR_ENV, "runs")) / str(run_id)
        try:
            run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunNotFound(f"no run {run_id} under {folder.parent}/ (runs are recorded as files there)") from None
        info = json.loads((folder / "info.json").read_text(encoding="utf-8")) if (folder / "info.json").is_file() else {}
        return {"command": run["command"], "status": run.get("status"), "config": config,
                "info": {"run_folder": info.get("run_folder")}}
    import pymongo
    url, _ = mongo_url()
    with pymongo.MongoClient(url, serverSelectionTimeoutMS=5000) as client:
        document = client[os.environ.get(MONGO_DB_ENV, DEFAULT_DB)].runs.find_one(
            {"_id": run_id}, {"command": 1, "status": 1, "config": 1, "info.run_folder": 1})
    if document is None:
        from lvmae.experiments.tracking.redact import safe_url
        raise RunNotFound(f"no run {run_id} in the database at {safe_url(url)}")
    return document


def command_line(run_id: int, run: dict, extra: list[str]) -> list[str]:
    """The command line (argv, the program first) that continues ``run``."""
    config = dict(run["config"])
    if "gin_bindings" in config:
        config["gin_bindings"] = [binding for binding in config["gin_bindings"] if not crash_test(binding)]
    updates = [f"{key}={config[key]!r}" for key in RUN_KEYS if key in config]
    return [program.name(), run["command"], *extra, "--resume-run", str(run_id), "with", *updates]


def crash_test(binding: str) -> bool:
    """Whether a gin binding sets a crash-test hook (``pretrain_loop.exit_after_step = 12``)."""
    parameter = binding.split("=", 1)[0].strip().rsplit(".", 1)[-1]
    return parameter in CRASH_TEST_PARAMETERS


def main(argv: list[str]) -> int:
    prog = f"{program.name()} resume"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_id", type=int, help="the run to continue")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="more options of the command (-b BINDING ...)")
    args = parser.parse_args(argv)
    try:
        run = stored_run(args.run_id)
    except RunNotFound as error:
        program.refuse(f"{prog}: {error}; nothing was resumed.")
    if run.get("status") == "COMPLETED" and not args.extra:
        program.refuse(f"{prog}: run {args.run_id} ({run['command']}) is COMPLETED; to train it further pass "
                       f"the new step count, e.g. {prog} {args.run_id} -b '{run['command']}_loop.steps=N'")
    line = command_line(args.run_id, run, args.extra)
    print(f"resume: {' '.join(line)}", flush=True)
    from lvmae.experiments.commands.cli import main as run_py
    run_py(line)
    return 0

"""The study ledger: every completed study run as one small JSON line in the repository.

Studies span sessions and machines, and a run store (a database, run folders) stays on the
machine that ran them. So each completed run a study reads is also kept as a record in
``docs/results/runs/<study>.jsonl`` — its study, arm, seed, stage, task, configuration hash,
run id, start time and final metrics — and ``study report`` reads the ledger together with the
store: a report regenerates on any machine from the repository alone, and the configuration
hash still decides which records count (stale ones are ignored, never deleted).

Per-probe grid metrics (``probe/<head>/<probe>/...``) stay in the store: the ledger keeps what
a table needs. ``LVMAE_STUDY_RECORDS`` points the ledger elsewhere (tests do).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from lvmae.experiments.reporting.study_runs import StoredRun

ROOT = Path(__file__).resolve().parents[2]
LEDGER_ENV = "LVMAE_STUDY_RECORDS"
PER_PROBE_PREFIX = "probe/"      # one metric per grid probe: left in the store


def ledger_dir() -> Path:
    return Path(os.environ.get(LEDGER_ENV) or ROOT / "docs" / "results" / "runs")


def ledger_path(study_name: str) -> Path:
    return ledger_dir() / f"{study_name}.jsonl"


def _identity(run: StoredRun) -> tuple:
    """What makes two records the same run (a run id alone repeats across stores)."""
    return (run.study, str(run.run_id), run.command, run.origin_arm or run.arm, run.seed, run.task,
            run.config, round(run.started, 3) if math.isfinite(run.started) else None)


def to_record(run: StoredRun) -> dict:
    return {"study": run.study, "arm": run.origin_arm or run.arm, "seed": run.seed, "command": run.command,
            "task": run.task, "config": run.config, "run_id": str(run.run_id),
            "started": run.started if math.isfinite(run.started) else None,
            "finals": {k: v for k, v in sorted(run.finals.items()) if not k.startswith(PER_PROBE_PREFIX)}}


def from_record(record: dict, path: Path, line: int) -> StoredRun:
    try:
        started = record["started"]
        return StoredRun(record["run_id"], record["command"], record["arm"], int(record["seed"]),
                         {k: float(v) for k, v in record["finals"].items()}, record.get("task"),
                         record["study"], record["arm"], record.get("config"),
                         -math.inf if started is None else float(started))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}:{line}: not a study record ({type(error).__name__}: {error})") from error


def read_records(study_name: str) -> list[StoredRun]:
    """The ledger's runs of ``study_name`` (none when it has no ledger yet)."""
    path = ledger_path(study_name)
    if not path.exists():
        return []
    runs = []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text.strip():
            runs.append(from_record(json.loads(text), path, line))
    return runs


def record_runs(study_name: str, runs: list[StoredRun]) -> int:
    """Adds the runs of ``study_name`` that the ledger lacks (the file is rewritten atomically,
    sorted by start); returns how many were added."""
    mine = [r for r in runs if r.study == study_name]
    known = read_records(study_name)
    seen = {_identity(r) for r in known}
    new = [r for r in mine if _identity(r) not in seen]
    if not new:
        return 0
    path = ledger_path(study_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(known + new, key=lambda r: (r.started, str(r.run_id)))
    temporary = path.with_suffix(f".tmp-{os.getpid()}")
    temporary.write_text("".join(json.dumps(to_record(r), sort_keys=True) + "\n" for r in ordered),
                         encoding="utf-8")
    os.replace(temporary, path)
    return len(new)


def merged(store: list[StoredRun], recorded: list[StoredRun]) -> list[StoredRun]:
    """The store's runs plus the ledger's runs the store does not hold (another machine's)."""
    held = {_identity(r) for r in store}
    return store + [r for r in recorded if _identity(r) not in held]

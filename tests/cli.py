"""Helpers to run ``run.py`` as a user would, in a subprocess with its own runs folder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], runs_dir: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "LVMAE_RUNS_DIR": str(runs_dir), "PYTHONWARNINGS": "ignore"}
    environment.pop("LVMAE_MONGO_URL", None)
    environment.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout)

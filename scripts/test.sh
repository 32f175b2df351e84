#!/usr/bin/env bash
# Sets up the environment, lints (ruff, configured in pyproject.toml) and runs the test suite;
# lint findings fail the script after the tests have run. Arguments go to pytest.
# The suite runs on every core the machine gives this shell, 8 workers at most (pytest-xdist;
# LVMAE_TEST_WORKERS overrides, 0 or 1 runs it in one process): most of its time is run.py
# subprocesses that start up and train on one core each. --dist loadfile keeps each file on
# one worker, so a file's module-scoped fixtures (shards, wheels, daemons) are built once;
# tests/conftest.py gives each worker its share of the cores as torch threads.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
lint=0
.venv/bin/ruff check . || lint=$?
# lvmae's bytecode, written once: a shell with PYTHONDONTWRITEBYTECODE set would otherwise
# compile its ~160 modules again in each of the hundreds of Python processes the suite starts
# (~0.2 s each on one core).
.venv/bin/python -m compileall -q -j 0 components experiments registry tests >/dev/null || true
cores=$(nproc 2>/dev/null || echo 1)
workers=${LVMAE_TEST_WORKERS:-$((cores < 8 ? cores : 8))}
if [ "$workers" -gt 1 ]; then
  .venv/bin/python -m pytest -q -n "$workers" --dist loadfile "$@"
else
  .venv/bin/python -m pytest -q "$@"
fi
exit "$lint"

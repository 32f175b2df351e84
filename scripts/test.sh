#!/usr/bin/env bash
# Sets up the environment, lints (ruff, configured in pyproject.toml) and runs the test suite;
# lint findings fail the script after the tests have run. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
lint=0
.venv/bin/ruff check . || lint=$?
.venv/bin/python -m pytest -q "$@"
exit "$lint"

#!/usr/bin/env bash
# Creates .venv with torch 2.13.0 (installed first: a bare `torch` requirement would pull a
# multi-GB CUDA build) and lvmae with its test and local-database extras, at the exact versions
# of constraints.txt (pyproject.toml declares ranges). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
  || .venv/bin/pip install -q -c constraints.txt torch
.venv/bin/pip install -q -c constraints.txt -e ".[localdb,test]"
echo "lvmae environment ready: $(pwd)/.venv"

#!/usr/bin/env bash
# The main job on its embedded defaults: set up, pre-train the tiny video MAE on the synthetic
# moving-square shards, fine-tune it, and say where the runs are.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python run.py pretrain -g gin/experiments/tiny_cpu.gin "$@"
.venv/bin/python run.py finetune -g gin/experiments/tiny_cpu.gin "$@"
echo
if [ "${LVMAE_OBSERVER:-mongo}" = file ]; then
  echo "Runs (config.json with the gin bindings, metrics.json, operative_config.gin): ${LVMAE_RUNS_DIR:-runs}/"
else
  .venv/bin/python run.py db status || true
  echo "Browse the runs: scripts/setup_tools.sh (once, installs Omniboard), then .venv/bin/python run.py board"
  echo "Stop the database when done: .venv/bin/python run.py db stop"
fi
echo "Checkpoints: outputs/tiny_cpu/{pretrain,finetune}/last.pt"

#!/usr/bin/env bash
# The main job on its embedded defaults: set up, then the LVMAE pipeline at CPU size on the
# synthetic moving-square shards (gin/experiments/lvmae_cpu.gin): train the adaptive FSQ
# tokenizer + learned scorer, precompute latents/indices/scores beside every clip, pre-train the
# tiny video MAE with adaptive decoder masking (10% top + 5% random) on tokenizer-latent targets,
# fine-tune it, and say where the runs are. On 2 quiet CPU cores: about 6½ minutes with the
# environment in place (6 min 33 s measured from a fresh clone), plus about 2½ minutes of setup
# the first time; far longer when other jobs load the cores.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
GIN=gin/experiments/lvmae_cpu.gin
# Every invocation gets its own output folder (the root macro OUTPUTS moves every path), so
# demos never mix their outputs; runs inside it have their own folders anyway.
OUT=outputs/demo-$(date +%Y%m%d-%H%M%S)
for command in pretrain_tokenizer precompute pretrain finetune; do
  .venv/bin/python run.py "$command" -g "$GIN" -b "OUTPUTS='$OUT'" "$@"
done
echo
if [ "${LVMAE_OBSERVER:-mongo}" = file ]; then
  echo "Runs (config.json with the gin bindings, metrics.json, operative_config.gin, PNGs): ${LVMAE_RUNS_DIR:-runs}/"
else
  .venv/bin/python run.py db status || true
  echo "Browse the runs: scripts/setup_tools.sh (once, installs Omniboard), then .venv/bin/python run.py board"
  echo "Stop the database when done: .venv/bin/python run.py db stop"
fi
echo "Checkpoints: $OUT/lvmae_cpu/{tokenizer,pretrain,finetune}/last.pt"
echo "Precomputed shards (latents, indices, scores): $OUT/lvmae_cpu/precomputed/manifest.yaml"

#!/usr/bin/env bash
# The one-GPU check (docs/mae_core.md, "GPU check"): on a machine with one CUDA GPU,
#   bash scripts/gpu_check.sh [OUT_DIR]          # default outputs/gpu_check
# runs, writing every result (markdown + JSON) under OUT_DIR:
#   1. the no-host-sync test with CUDA's sync debug mode (tests/test_step_sync.py);
#   2. ours vs transformers' VideoMAE, ViT-B, 128 frames, batch 16, eager and compiled
#      (benchmarks/mae_vs_hf.py): clips/s, peak memory, MFU;
#   3. the memory planner against measured GPU peaks, ViT-B 16–256 frames
#      (benchmarks/plan_calibration.py --sizes gpu);
#   4. the planner's largest batch for ViT-B at 256 frames on this GPU, then a short
#      pre-training at that batch (gin/experiments/vit_b_256f_synthetic.gin), sampling
#      nvidia-smi's memory.used.
# Environment: PYTHON (default .venv/bin/python), PRETRAIN_STEPS (default 50; the clips are
# read in the training process, 38.5 MB each, so long runs are data-bound),
# CHECKPOINTING=on to plan and train with activation checkpointing.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-outputs/gpu_check}
PY=${PYTHON:-.venv/bin/python}
STEPS=${PRETRAIN_STEPS:-50}
CHECKPOINTING=${CHECKPOINTING:-off}
GIN=gin/experiments/vit_b_256f_synthetic.gin
mkdir -p "$OUT"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh needs a CUDA GPU')" || exit 1
status=0
step() { echo; echo "== $1"; }

step "1. no host synchronisation in the training step (CUDA sync debug mode)"
"$PY" -m pytest -q -rxs tests/test_step_sync.py 2>&1 | tee "$OUT/sync_test.txt" || status=1

step "2. ours vs transformers' VideoMAE, ViT-B, 128 frames, batch 16"
"$PY" benchmarks/mae_vs_hf.py --size b --frames 128 --batch 16 --json "$OUT/mae_vs_hf.json" \
  | tee "$OUT/mae_vs_hf.md" || status=1

step "3. planner calibration on the GPU"
"$PY" benchmarks/plan_calibration.py --sizes gpu --device cuda --json "$OUT/plan_calibration.json" \
  | tee "$OUT/plan_calibration.md" || status=1

step "4. plan and pre-train ViT-B at 256 frames"
MIB=$("$PY" -c "import torch; print(torch.cuda.get_device_properties(0).total_memory // 2**20)")
"$PY" run.py plan -g "$GIN" --gpu-memory "${MIB}MiB" --frames 256 --json "$OUT/plan_256f.json" \
  | tee "$OUT/plan_256f.md" || exit 1
BATCH=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['largest_batch'][sys.argv[2]])" \
  "$OUT/plan_256f.json" "$CHECKPOINTING")
echo "planner's batch at 256 frames (checkpointing $CHECKPOINTING): $BATCH"
GC=$([ "$CHECKPOINTING" = on ] && echo True || echo False)
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -l 1 > "$OUT/nvidia_smi.csv" &
SMI=$!
LVMAE_OBSERVER=file LVMAE_RUNS_DIR="$OUT/runs" "$PY" run.py pretrain -g "$GIN" \
  -b "pretrain_loop.batch_size = $BATCH" -b "pretrain_loop.steps = $STEPS" \
  -b "backbone.vit_b.grad_checkpointing = $GC" -b "decoder.mae_b.grad_checkpointing = $GC" \
  -b "WORKDIR = '$OUT/pretrain_256f'" -b "dataset.synthetic_motion.root = '$OUT/data'" \
  2>&1 | tee "$OUT/pretrain_256f.txt" || status=1
kill "$SMI"
echo "peak memory.used during pre-training (MiB, includes the CUDA context and cached blocks):"
tail -n +2 "$OUT/nvidia_smi.csv" | cut -d, -f2 | sort -n | tail -1
exit $status

#!/usr/bin/env python
"""Does long context pay off downstream? Cue–probe fine-tuning at 32 vs 128 frames.

A script, not a test (minutes to hours on CPU). It
  1. pre-trains the tiny video MAE on 128-frame cue–probe clips (``pretrain``),
  2. fine-tunes it at 128 frames (20% random-tube token drop, the paper's 128-frame recipe),
  3. fine-tunes it at 32 frames: same clips, a random 32-frame window in training and the
     centred one at evaluation (positions rebuilt for the shorter grid),
  4. prints both validation accuracies next to the oracle ceiling of a 32-frame window
     (the best any model seeing only that window can do) and chance.

Interface it relies on (the data engineer's ``components/data/cue_probe.py``, docs/data.md §5):
  - ``gin/experiments/cue_probe_cpu.gin``: macros CLIP_FRAMES (128), IMAGE_SIZE, TUBELET,
    WORKDIR; includes ``tiny_cpu.gin`` (pretrain_loop / finetune_loop / model.classifier);
  - ``dataset.cue_probe`` with ``oracle_ceiling(clip_frames, stride, start, clips, split)``
    → {seen_fraction, ceiling, chance}.

    python scripts/cue_probe_context.py --pretrain-steps 300 --finetune-steps 300
    python scripts/cue_probe_context.py --help

Runs are recorded like any other (``runs/`` or ``LVMAE_MONGO_URL``); the summary goes to
``<workdir>/cue_probe_context.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIN = "gin/experiments/cue_probe_cpu.gin"
SHORT_FRAMES = 32


def run(command: str, bindings: list[str], seed: int) -> str:
    """Runs ``python run.py command -g GIN -b ... with seed=S``; returns stdout, fails loudly."""
    args = [sys.executable, str(ROOT / "run.py"), command, "-g", GIN]
    for binding in bindings:
        args += ["-b", binding]
    args += ["with", f"seed={seed}"]
    print(f"$ run.py {command} " + " ".join(f"-b {b!r}" for b in bindings), flush=True)
    process = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if process.returncode:
        sys.exit(f"run.py {command} failed:\n{process.stderr[-4000:]}")
    return process.stdout


def top1(stdout: str) -> float:
    match = re.search(r"fine-tuning top-1: ([0-9.]+)", stdout)
    if not match:
        sys.exit(f"no 'fine-tuning top-1' line in the output:\n{stdout[-2000:]}")
    return float(match.group(1))


def oracle(bindings: list[str], frames: int, clips: int) -> dict[str, float]:
    """The cue–probe oracle ceiling of a centred ``frames`` window, from the configured dataset."""
    sys.path.insert(0, str(ROOT))
    from lvmae import registry
    from lvmae.experiments.engine import gin_config

    gin_config.parse([str(ROOT / GIN)], bindings)
    dataset = registry.build("dataset.cue_probe")
    return dataset.oracle_ceiling(frames, 1, start="center", clips=clips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-samples", type=int, default=1024)
    parser.add_argument("--val-samples", type=int, default=2000,
                        help="≥ 2000 for accuracy claims (docs/data.md)")
    parser.add_argument("--token-drop", type=float, default=0.2, help="at 128 frames (docs/paper.md)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", default="outputs/cue_probe_context")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("-b", "--bind", action="append", default=[],
                        help="extra gin binding for every run, e.g. dataset.cue_probe.num_colours=2")
    options = parser.parse_args()

    workdir = os.path.abspath(options.workdir)
    data = [f"dataset.cue_probe.root='{os.path.abspath(options.data_root)}'",
            f"dataset.cue_probe.train_samples={options.train_samples}",
            f"dataset.cue_probe.val_samples={options.val_samples}", *options.bind]
    common = data + [f"WORKDIR='{workdir}/pretrain_128'"]
    run("pretrain", common + [f"pretrain_loop.steps={options.pretrain_steps}",
                              f"pretrain_loop.batch_size={options.batch_size}"], options.seed)
    checkpoint = f"{workdir}/pretrain_128/pretrain/last.pt"
    finetune = data + [f"finetune_loop.pretrained='{checkpoint}'",
                       f"finetune_loop.steps={options.finetune_steps}",
                       f"finetune_loop.batch_size={options.batch_size}"]
    results = {}
    results["128"] = top1(run("finetune", finetune + [
        f"finetune_loop.workdir='{workdir}/finetune_128'",
        f"model.classifier.token_drop={options.token_drop}"], options.seed))
    # Only the encoder shrinks to 32 frames; the dataset keeps its 128-frame clips.
    results["32"] = top1(run("finetune", finetune + [
        f"finetune_loop.workdir='{workdir}/finetune_32'",
        f"backbone.vit_tiny.clip_frames={SHORT_FRAMES}"], options.seed))
    ceiling = oracle(data, SHORT_FRAMES, options.val_samples)
    summary = {"options": vars(options), "top1": results, "oracle_32_centre": ceiling}
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "cue_probe_context.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    print(f"\ncue–probe, {options.val_samples} validation clips, pre-train {options.pretrain_steps} "
          f"steps, fine-tune {options.finetune_steps} steps:")
    print(f"  fine-tuned at 128 frames : top-1 {results['128']:.3f}")
    print(f"  fine-tuned at  32 frames : top-1 {results['32']:.3f}")
    print(f"  32-frame oracle ceiling  : {ceiling['ceiling']:.3f} (sees every event in "
          f"{ceiling['seen_fraction']:.3f} of windows; chance {ceiling['chance']:.3f})")


if __name__ == "__main__":
    main()

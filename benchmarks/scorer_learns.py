#!/usr/bin/env python
"""Measures the scorer-learns claim behind tests/test_scorer_learns.py over several seeds,
both top-k variants and the frozen-scorer control; prints a markdown table.

    python benchmarks/scorer_learns.py --seeds 0 1 2 --steps 40
    python benchmarks/scorer_learns.py --seeds 0 --steps 40 --variants straight_through --frozen

Columns: object recall (fraction of the object's tokens selected; chance = 0.25) at step 0
and at the end; selection gain = reconstruction MSE with a random selection of the same
size − MSE with the scorer's selection (≥ 0 when the selection helps); wall seconds.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import registry  # noqa: E402
from tests.test_scorer_learns import train_on_flicker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--variants", nargs="+", default=["straight_through", "perturbed"])
    parser.add_argument("--frozen", action="store_true", help="also run the frozen-scorer control")
    args = parser.parse_args()
    registry.discover()
    print("| top-k | scorer | seed | recall step 0 | recall end | selection gain | wall s |")
    print("|---|---|---|---|---|---|---|")
    for variant in args.variants:
        for trained in [True, False] if args.frozen else [True]:
            for seed in args.seeds:
                start = time.perf_counter()
                with tempfile.TemporaryDirectory() as workdir:
                    result = train_on_flicker(seed, args.steps, trained, variant, workdir)
                first, last = result["first_eval"], result["last_eval"]
                print(f"| {variant} | {'trained' if trained else 'frozen'} | {seed} "
                      f"| {first['object_recall']:.3f} | {last['object_recall']:.3f} "
                      f"| {last['selection_gain']:.4f} | {time.perf_counter() - start:.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()

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
import tempfile
import time

import torch

from lvmae import registry
from lvmae.components.data.datasets.flicker_clips import FlickerSquare
from lvmae.components.models.adaptive_tokenizer import AdaptiveTokenizer
from lvmae.components.scorers.learned import LearnedScorer
from lvmae.components.tokenizers.fsq import FSQ
from lvmae.components.tokenizers.magvit import MagvitTokenizer
from lvmae.experiments.commands.pretrain_tokenizer import pretrain_tokenizer_loop


def build_flicker_model(seed: int, topk_name: str = "straight_through") -> AdaptiveTokenizer:
    """The CPU-sized setup: 16×32² greyscale, stride 2×4×4 → 8×8×8 tokens,
    FSQ [3,3,3], k = 25% of the 448 scorable tokens."""
    torch.manual_seed(seed)
    tokenizer = MagvitTokenizer(in_channels=1, base_channels=8, channel_multipliers=(1, 2),
                                num_res_blocks=1, stride=(2, 4, 4), quantizer=FSQ([3, 3, 3]))
    scorer = LearnedScorer(in_channels=1, channels=16, stride=(2, 4, 4))
    return AdaptiveTokenizer(tokenizer, scorer, registry.build(f"topk.{topk_name}"),
                             selected_ratio=0.25)


def train_on_flicker(seed: int, steps: int, train_scorer: bool, topk_name: str,
                     workdir: str) -> dict:
    """Trains tokenizer + scorer jointly (or with the scorer frozen) on flicker clips, on one
    thread: the calibrated trajectory then does not depend on the thread count (float
    reduction order), and a busy shared machine does not stall in thread spin-waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(seed, steps, train_scorer, topk_name, workdir)
    finally:
        torch.set_num_threads(threads)


def _train(seed: int, steps: int, train_scorer: bool, topk_name: str, workdir: str) -> dict:
    return pretrain_tokenizer_loop(
        None, seed, model=build_flicker_model(seed, topk_name), clips=FlickerSquare(),
        train_scorer=train_scorer, batch_size=8, steps=steps, lr=2e-3, warmup_steps=0,
        eval_every=steps, eval_clips=32, checkpoint_every=steps, log_every=steps,
        workdir=workdir)


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

"""The learned scorer learns (BENCHMARKS.md, "The learned token scorer"): on clips of one
moving square over strong per-pixel flicker — raw frame differences are large everywhere —
its selection starts near chance and after short joint training keeps ≥ 80% of the object's
tokens, and the tokenizer reconstructs better from it than from a random selection of the
same size. Fails for an untrained or frozen scorer (recall stays ≈ 0.5 — see
benchmarks/scorer_learns.py for the frozen control, measured)."""
from __future__ import annotations

import pytest
import torch

from lvmae import registry
from lvmae.components.data.flicker_clips import FlickerSquare
from lvmae.components.scorers.learned import LearnedScorer
from lvmae.components.models.adaptive_tokenizer import AdaptiveTokenizer
from lvmae.components.tokenizers.fsq import FSQ
from lvmae.components.tokenizers.magvit import MagvitTokenizer
from lvmae.experiments.commands.pretrain_tokenizer import pretrain_tokenizer_loop

registry.discover()

# Fixed seed: "near chance at init" depends on the initialisation (0.30–0.66 seen).
SEED = 0
STEPS = 40
# Chance recall is the selected fraction, 0.25; an untrained scorer already sits above it.
# Measured at seed 0 (benchmarks/scorer_learns.py): 0.59 at step 0, 0.915 at step 40, and a
# frozen scorer stays at 0.59 — 0.80 leaves a wide margin on both sides.
MAX_INITIAL_RECALL = 0.65
MIN_TRAINED_RECALL = 0.80
# "Learned beats random" by a margin. At this short CPU budget the margin alone barely
# separates a trained from a frozen scorer (whose recall, ≈ 0.59, is above chance too): gain
# 0.0067 trained vs 0.0020 frozen here (0.0056 frozen with other data seeds; BENCHMARKS.md saw
# the same) — the recall assertion is the one that separates; this one checks that the
# selection the scorer learned helps reconstruction.
MIN_SELECTION_GAIN = 0.003


def build_flicker_model(seed: int, topk_name: str = "straight_through") -> AdaptiveTokenizer:
    """The CPU-sized setup of BENCHMARKS.md: 16×32² greyscale, stride 2×4×4 → 8×8×8 tokens,
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
        eval_every=steps, eval_clips=32, checkpoint_every=steps, resume=False, log_every=steps,
        workdir=workdir)


@pytest.mark.slow
def test_learned_scorer_finds_the_moving_object_through_flicker(tmp_path):
    result = train_on_flicker(SEED, STEPS, True, "straight_through", str(tmp_path))
    first, last = result["first_eval"], result["last_eval"]
    assert first["object_recall"] <= MAX_INITIAL_RECALL
    assert last["object_recall"] >= MIN_TRAINED_RECALL
    assert last["selection_gain"] >= MIN_SELECTION_GAIN

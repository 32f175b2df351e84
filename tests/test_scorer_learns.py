"""The learned scorer learns (benchmarks/scorer_learns.py measures it over seeds): on clips of one
moving square over strong per-pixel flicker — raw frame differences are large everywhere —
its selection starts near chance and after short joint training keeps ≥ 80% of the object's
tokens, and the tokenizer reconstructs better from it than from a random selection of the
same size. Fails for an untrained or frozen scorer (recall stays ≈ 0.5 — see
benchmarks/scorer_learns.py for the frozen control, measured)."""
from __future__ import annotations

import pytest

from benchmarks.scorer_learns import train_on_flicker

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
# 0.0067 trained vs 0.0020 frozen here (0.0056 frozen with other data seeds) — the recall
# assertion is the one that separates; this one checks that the
# selection the scorer learned helps reconstruction.
MIN_SELECTION_GAIN = 0.003


@pytest.mark.slow
def test_learned_scorer_finds_the_moving_object_through_flicker(tmp_path):
    result = train_on_flicker(SEED, STEPS, True, "straight_through", str(tmp_path))
    first, last = result["first_eval"], result["last_eval"]
    assert first["object_recall"] <= MAX_INITIAL_RECALL
    assert last["object_recall"] >= MIN_TRAINED_RECALL
    assert last["selection_gain"] >= MIN_SELECTION_GAIN

"""Accuracy metrics on hand-made predictions, including an EPIC-Kitchens-style verb/noun set."""
from __future__ import annotations

import pytest
import torch

from lvmae.experiments.engine.metrics import Accumulator, action_metrics, confusion_matrix, head_metrics


def logits_for(ranking: list[list[int]], classes: int) -> torch.Tensor:
    """Logits whose descending order starts with ``ranking[i]`` for clip i."""
    logits = torch.zeros(len(ranking), classes)
    for i, order in enumerate(ranking):
        for place, c in enumerate(order):
            logits[i, c] = 10.0 - place
    return logits


def test_top1_top5_and_mean_class_on_hand_made_predictions():
    # 4 clips, 6 classes; labels 0, 0, 0, 1.
    logits = logits_for([[0], [2, 0], [3, 4, 5, 1, 2], [1]], classes=6)
    labels = torch.tensor([0, 0, 0, 1])
    metrics = head_metrics(logits, labels)
    assert metrics["top1"] == pytest.approx(2 / 4)              # clips 0 and 3
    assert metrics["top5"] == pytest.approx(3 / 4)              # clip 2 has 0 outside its top 5
    assert metrics["mean_class"] == pytest.approx((1 / 3 + 1) / 2)   # class 0: 1/3, class 1: 1


def test_epic_style_verb_noun_action_accuracy():
    verb_labels = torch.tensor([0, 1, 2, 1, 0])
    noun_labels = torch.tensor([3, 3, 0, 1, 2])
    # verb right for clips 0, 1, 3; noun right for clips 0, 2, 3 → action right for 0 and 3.
    verb_logits = logits_for([[0], [1], [0], [1], [2]], classes=3)
    noun_logits = logits_for([[3], [0], [0], [1], [0]], classes=4)
    acc = Accumulator({"verb": 3, "noun": 4})
    for part in (slice(0, 2), slice(2, 5)):                     # two batches
        acc.update({"verb": verb_logits[part], "noun": noun_logits[part]},
                   {"verb": verb_labels[part], "noun": noun_labels[part]},
                   [f"clip{i}" for i in range(5)[part]])
    metrics = acc.metrics()
    assert metrics["verb"]["top1"] == pytest.approx(3 / 5)
    assert metrics["noun"]["top1"] == pytest.approx(3 / 5)
    assert metrics["action"]["top1"] == pytest.approx(2 / 5)
    assert acc.keys == [f"clip{i}" for i in range(5)]
    # every (verb, noun) pair is a distinct action here: mean-class = top-1
    assert metrics["action"]["mean_class"] == pytest.approx(2 / 5)


def test_action_top5_ranks_verb_noun_pairs_by_probability_product():
    # Verb 0 slightly above verb 1; nouns 0..5 in decreasing order. The top-5 pairs are
    # (0,0) (1,0) (0,1) (1,1) (0,2): the pair (1,2) and (0,5) are outside.
    verb = torch.tensor([[1.0, 0.9, -20.0]])
    noun = torch.tensor([[5.0, 4.0, 3.0, -10.0, -11.0, -12.0]])
    def top5(v, n):
        return action_metrics(verb, noun, torch.tensor([v]), torch.tensor([n]))["top5"]
    assert top5(1, 1) == 1.0 and top5(0, 2) == 1.0
    assert top5(1, 2) == 0.0 and top5(0, 5) == 0.0


def test_confusion_matrix_counts_rows_as_truth():
    matrix = confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 2]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_mismatched_or_empty_inputs_raise():
    with pytest.raises(ValueError, match="labels"):
        head_metrics(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="no evaluation samples"):
        Accumulator({"label": 2}).metrics()

"""Every registered scorer: shapes on the token grid, first-frame policy, what it ranks high."""
from __future__ import annotations

import pytest
import torch

from lvmae import registry
from lvmae.components.data.datasets.flicker_clips import FlickerSquare, object_token_mask, selection_recall

registry.discover()
SCORERS = registry.names("scorer")
STRIDE = (2, 4, 4)


def build(name: str, **kwargs):
    in_channels = {"in_channels": 1} if name in ("learned", "feature_distance") else {}
    return registry.build(f"scorer.{name}", stride=STRIDE, **in_channels, **kwargs)


def test_the_four_scorers_are_registered():
    assert {"learned", "motion", "feature_distance", "random"} <= set(SCORERS)


@pytest.mark.parametrize("name", SCORERS)
@pytest.mark.parametrize("first_frame", ["zero", "next", "max"])
def test_scores_lie_on_the_token_grid_with_the_first_frame_policy(name, first_frame):
    scorer = build(name, first_frame=first_frame)
    with torch.no_grad():
        scores = scorer(torch.randn(2, 1, 16, 32, 32))
    assert scores.shape == (2, 8, 8, 8) and torch.isfinite(scores).all()
    expected = {"zero": torch.zeros_like(scores[:, 1]), "next": scores[:, 1],
                "max": scores.amax(dim=(1, 2, 3))[:, None, None].expand_as(scores[:, 1])}[first_frame]
    assert torch.equal(scores[:, 0], expected)


@pytest.mark.parametrize("name", SCORERS)
def test_bad_video_and_choices_name_the_problem(name):
    with pytest.raises(ValueError, match="T=15"):
        build(name)(torch.randn(1, 1, 15, 32, 32))
    with pytest.raises(ValueError, match=f"scorer.{name}.first_frame"):
        build(name, first_frame="first")


@pytest.mark.parametrize("name", ["motion", "feature_distance"])
def test_static_clips_score_zero_and_a_moving_square_over_a_still_background_scores_high(name):
    clips = FlickerSquare(channels=1, stride=STRIDE, noise_std=0.0, brightness=1.0)
    batch = clips.batch(4, torch.Generator().manual_seed(0))
    background = torch.randn(4, 1, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    scorer = build(name)
    static = scorer(background.expand(-1, -1, 16, -1, -1))
    assert static.abs().max() < 1e-5
    scores = scorer(batch["video"] + background)
    objects = object_token_mask(batch["object_coverage"])
    assert scores[objects].mean() > 10 * scores[:, 1:][~objects[:, 1:]].mean().clamp_min(1e-6)


def test_motion_scorer_is_fooled_by_flicker_which_is_why_the_scorer_is_learned():
    """On the flicker clips raw frame differences are large everywhere: the motion scorer
    finds the object no better than a coin weighted by the selected fraction."""
    clips = FlickerSquare(channels=1, stride=STRIDE)
    batch = clips.batch(16, torch.Generator().manual_seed(0))
    scores = build("motion")(batch["video"])
    selection = registry.build("topk.straight_through").select_on_grid(scores, 112)
    assert selection_recall(selection, batch["object_coverage"]) < 0.6


def test_random_scorer_is_repeatable_from_its_seed():
    video = torch.randn(1, 1, 16, 32, 32)
    assert torch.equal(build("random", seed=3)(video), build("random", seed=3)(video))
    assert not torch.equal(build("random", seed=3)(video), build("random", seed=4)(video))


def test_scorer_stride_must_match_the_tokenizer():
    tokenizer = registry.build("tokenizer.magvit", in_channels=1, base_channels=4,
                               channel_multipliers=(1, 1), num_res_blocks=1, stride=STRIDE,
                               quantizer=registry.build("quantizer.fsq", levels=[3, 3]))
    with pytest.raises(ValueError, match="scorer stride"):
        registry.build("model.adaptive_tokenizer", tokenizer=tokenizer,
                       scorer=registry.build("scorer.motion", stride=(2, 8, 8)),
                       topk=registry.build("topk.straight_through"))

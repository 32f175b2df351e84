"""Differentiable top-k: exact counts, latent frame 0 kept, gradients reach the scorer."""
from __future__ import annotations

import pytest
import torch

from lvmae import registry
from lvmae.components.models.adaptive_tokenizer import AdaptiveTokenizer
from lvmae.components.scorers.learned import LearnedScorer
from lvmae.components.tokenizers.fsq import FSQ
from lvmae.components.tokenizers.magvit import MagvitTokenizer

registry.discover()
VARIANTS = registry.names("topk")


def test_both_required_variants_are_registered():
    assert {"straight_through", "perturbed"} <= set(VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("k", [1, 7, 36])
def test_forward_keeps_exactly_k_tokens_plus_the_first_latent_frame(variant, k):
    topk = registry.build(f"topk.{variant}")
    scores = torch.randn(3, 5, 3, 4, generator=torch.Generator().manual_seed(k))
    selection = topk.select_on_grid(scores, k)
    assert set(selection.unique().tolist()) <= {0.0, 1.0}
    assert (selection[:, 0] == 1).all()
    assert selection[:, 1:].sum(dim=(1, 2, 3)).tolist() == [k] * 3
    # The hard forward keeps the k highest-scoring tokens of frames ≥ 1.
    later = scores[:, 1:].flatten(1)
    kept = selection[:, 1:].flatten(1).bool()
    assert (later[kept].view(3, k).min(dim=1).values >= later[~kept].view(3, -1).max(dim=1).values).all() \
        if k < later.shape[1] else kept.all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_k_out_of_range_names_the_grid(variant):
    with pytest.raises(ValueError, match="k=13"):
        registry.build(f"topk.{variant}").select_on_grid(torch.randn(1, 2, 2, 3), 13)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_reach_the_scorer_through_the_selection(variant):
    torch.manual_seed(0)
    tokenizer = MagvitTokenizer(in_channels=1, base_channels=4, channel_multipliers=(1, 1),
                                num_res_blocks=1, stride=(2, 4, 4), quantizer=FSQ([3, 3, 3]))
    scorer = LearnedScorer(in_channels=1, channels=4, stride=(2, 4, 4))
    model = AdaptiveTokenizer(tokenizer, scorer, registry.build(f"topk.{variant}"), selected_ratio=0.25)
    output = model(torch.randn(2, 1, 8, 16, 16), torch.Generator().manual_seed(1))
    assert output.selection[:, 1:].sum(dim=(1, 2, 3)).tolist() == [model.selected_count((4, 4, 4))] * 2
    output.losses["loss"].backward()
    for name, parameter in scorer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_perturbed_gradient_matches_a_finite_difference_of_the_expected_mask():
    """The estimator is unbiased: ∂E[topk(s + σZ)]·v / ∂s ≈ its Monte-Carlo gradient."""
    topk = registry.build("topk.perturbed", samples=20000, sigma=1.0)
    scores = torch.tensor([[0.3, -0.2, 0.1, 0.0]], requires_grad=True)
    direction = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    (topk(scores, 2, torch.Generator().manual_seed(0)) * direction).sum().backward()
    # E[mask_0] as a function of s_0, by central differences with common random numbers.
    mean = registry.build("topk.perturbed", samples=20000, sigma=1.0, forward_value="mean")
    step = 0.2
    shifted = [mean(scores.detach() + sign * step * direction, 2, torch.Generator().manual_seed(0))[0, 0]
               for sign in (1, -1)]
    finite_difference = float(shifted[0] - shifted[1]) / (2 * step)
    assert scores.grad[0, 0] == pytest.approx(finite_difference, abs=0.03)
    assert scores.grad[0, 0] > 0.1


def test_perturbed_mean_forward_is_soft_but_keeps_k_in_expectation():
    topk = registry.build("topk.perturbed", forward_value="mean")
    selection = topk(torch.randn(2, 10), 3, torch.Generator().manual_seed(0))
    assert torch.allclose(selection.sum(dim=1), torch.full((2,), 3.0))
    with pytest.raises(ValueError, match="topk.perturbed.forward_value"):
        registry.build("topk.perturbed", forward_value="soft")

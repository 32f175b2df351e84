"""Adaptive decoder masking and token targets: counts, the top-k + random rule, losses that
ignore non-target tokens."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from einops import rearrange

from lvmae import registry
from lvmae.components.masking.plan import MaskPlan, TokenGrid
from lvmae.components.targets.token_ids import level_digits

GRID = TokenGrid(4, 5, 5)


def _plan(seed=0, batch=3):
    gen = torch.Generator().manual_seed(seed)
    keep = registry.build("masking.encoder.tube", keep_ratio=0.2)(GRID, batch, gen)
    scores = torch.rand(batch, GRID.t, GRID.h, GRID.w, generator=gen)
    return keep, scores, gen


def test_adaptive_is_topk_of_masked_scores_plus_random_masked_tokens():
    keep, scores, gen = _plan()
    strategy = registry.build("masking.decoder.adaptive", top_ratio=0.10, random_ratio=0.05)
    targets = strategy(GRID, keep, gen, scores)
    top, extra = round(0.10 * GRID.n), round(0.05 * GRID.n)
    assert targets.shape == (3, top + extra)
    flat = rearrange(scores, "b t h w -> b (t h w)")
    for row in range(3):
        kept = set(keep[row].tolist())
        masked = [i for i in range(GRID.n) if i not in kept]
        expected_top = sorted(masked, key=lambda i: -flat[row, i].item())[:top]
        assert sorted(targets[row, :top].tolist()) == sorted(expected_top)
        rest = targets[row, top:].tolist()
        assert len(set(rest)) == extra and not set(rest) & (kept | set(expected_top))
    plan = MaskPlan(GRID, keep, targets)
    assert bool((plan.loss_weight == 1).all())


def test_adaptive_random_part_depends_on_the_seed_only():
    keep, scores, _ = _plan()
    strategy = registry.build("masking.decoder.adaptive")
    draw = lambda seed: strategy(GRID, keep, torch.Generator().manual_seed(seed), scores)
    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1)[:, -3:], draw(2)[:, -3:])
    assert torch.equal(draw(1)[:, :10], draw(2)[:, :10])


def test_adaptive_rejects_bad_input():
    keep, scores, gen = _plan()
    with pytest.raises(ValueError, match="top_ratio"):
        registry.build("masking.decoder.adaptive", top_ratio=0.0)
    with pytest.raises(ValueError, match="must not exceed 1"):
        registry.build("masking.decoder.adaptive", top_ratio=0.7, random_ratio=0.5)
    with pytest.raises(ValueError, match="do not match the token grid"):
        registry.build("masking.decoder.adaptive")(GRID, keep, gen, scores[:, :2])
    with pytest.raises(ValueError, match="needs token scores"):
        registry.build("masking.decoder.adaptive")(GRID, keep, gen, None)


def test_level_digits_is_the_fsq_mixed_radix_bijection():
    levels = [3, 4, 2]
    indices = torch.arange(math.prod(levels))
    digits = level_digits(indices, levels)
    assert sorted(map(tuple, digits.tolist())) == sorted(itertools.product(*map(range, levels)))
    basis = torch.tensor([1, 3, 12])
    assert torch.equal((digits * basis).sum(-1), indices)


@pytest.mark.parametrize("name, kwargs", [
    ("target.tokenizer_latents", {"latent_dim": 6}),
    ("target.token_ids", {"levels": (3, 4, 2), "factorisation": "per_level"}),
    ("target.token_ids", {"levels": (3, 4, 2), "factorisation": "codebook"}),
])
def test_token_targets_ignore_tokens_outside_the_loss_set(name, kwargs):
    keep, scores, gen = _plan(batch=2)
    targets = registry.build("masking.decoder.adaptive")(GRID, keep, gen, scores)
    # one target the encoder kept: its prediction must not move the loss
    targets[:, 0] = keep[:, 0]
    plan = MaskPlan(GRID, keep, targets)
    batch = {"latents": torch.randn(2, 6, GRID.t, GRID.h, GRID.w),
             "indices": torch.randint(0, 24, (2, GRID.t, GRID.h, GRID.w))}
    target_fn = registry.build(name, **kwargs)
    target = target_fn(batch, plan, (2, 16, 16))
    prediction = torch.randn(2, targets.shape[1], target_fn.channels(3, (2, 16, 16)))
    base = target_fn.loss(prediction, target, plan.loss_weight)["loss"]
    moved = prediction.clone()
    moved[:, 0] += 100.0 * torch.randn_like(moved[:, 0])
    assert torch.allclose(target_fn.loss(moved, target, plan.loss_weight)["loss"], base)
    moved[:, 1] += 100.0 * torch.randn_like(moved[:, 1])
    assert not torch.allclose(target_fn.loss(moved, target, plan.loss_weight)["loss"], base)


def test_latent_target_names_a_missing_precompute():
    keep, scores, gen = _plan()
    plan = MaskPlan(GRID, keep, registry.build("masking.decoder.adaptive")(GRID, keep, gen, scores))
    with pytest.raises(KeyError, match="precompute"):
        registry.build("target.tokenizer_latents")({}, plan, (2, 16, 16))

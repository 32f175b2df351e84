"""Perturbed-optimizer top-k (Berthet et al. 2020; Cordonnier et al. 2021, "Differentiable
Patch Selection"; docs/paper.md, tokenizer and scorer).

Axis legend: b batch, m candidate tokens, s noise samples.

The relaxation is E_Z[topk(s + σZ)], Z ~ N(0, I); its Jacobian-vector product has the
unbiased estimate  ∂L/∂s = E_Z[⟨∂L/∂mask, topk(s + σZ) − topk(s)⟩ · Z] / σ  (the clean
mask is a control variate: E[Z] = 0) — no sort is differentiated. Forward is the hard mask of the clean scores (exactly k per row) or, with
``forward_value="mean"``, the mean of the perturbed masks (rows still sum to k, values in
[0, 1]; it drifted least in long runs measured with benchmarks/scorer_learns.py).
"""
from __future__ import annotations

from typing import Literal

import torch
from einops import einsum

from lvmae.components.scorers.base import check_choice
from lvmae.components.topk.base import TopK, hard_topk_mask
from lvmae.registry import register

ForwardValue = Literal["hard", "mean"]


class _PerturbedTopK(torch.autograd.Function):

    @staticmethod
    def forward(ctx, scores, k, samples, sigma, forward_value, generator):
        noise = torch.randn((samples, *scores.shape), generator=generator,
                            device=scores.device, dtype=scores.dtype)        # (s, b, m)
        perturbed = hard_topk_mask(scores[None] + sigma * noise, k)          # (s, b, m)
        clean = hard_topk_mask(scores, k)                                    # (b, m)
        ctx.save_for_backward(perturbed, noise, clean)
        ctx.sigma = sigma
        return clean if forward_value == "hard" else perturbed.mean(dim=0)

    @staticmethod
    def backward(ctx, grad_mask):
        perturbed, noise, clean = ctx.saved_tensors
        samples = noise.shape[0]
        weight = einsum(grad_mask, perturbed, "b m, s b m -> s b")          # ⟨∂L/∂mask, mask_s⟩
        # Control variate: subtracting ⟨∂L/∂mask, clean mask⟩ (independent of Z, E[Z] = 0)
        # keeps the estimate unbiased and removes the bulk of its variance — the m − k tokens
        # every sample agrees on no longer add noise to every score's gradient.
        weight = weight - einsum(grad_mask, clean, "b m, b m -> b")[None]
        grad_scores = einsum(weight, noise, "s b, s b m -> b m") / (samples * ctx.sigma)
        return grad_scores, None, None, None, None, None


@register("topk.perturbed")
class PerturbedTopK(TopK):
    """Gaussian-perturbed top-k with ``samples`` draws of noise ``sigma``.

    Noise comes from the ``generator`` passed at call time, else from the selector's own
    generator seeded by ``seed`` (so a run is repeatable)."""

    def __init__(self, samples: int = 32, sigma: float = 0.5, forward_value: ForwardValue = "hard",
                 seed: int = 0):
        super().__init__()
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"topk.perturbed.samples must be an integer ≥ 1, got {samples!r}")
        if not sigma > 0:
            raise ValueError(f"topk.perturbed.sigma must be > 0, got {sigma!r}")
        self.samples = samples
        self.sigma = float(sigma)
        self.forward_value = check_choice(forward_value, ForwardValue, "topk.perturbed.forward_value")
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, scores: torch.Tensor, k: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """scores (b, m), k → selection (b, m); with ``forward_value="hard"`` exactly k ones per row."""
        if generator is None:
            if self.generator.device != scores.device:
                self.generator = torch.Generator(scores.device).manual_seed(
                    int(torch.randint(2**62, (1,), generator=self.generator)))
            generator = self.generator
        return _PerturbedTopK.apply(scores, k, self.samples, self.sigma, self.forward_value, generator)

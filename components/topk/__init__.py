"""Differentiable top-k selectors: hard masks forward, gradients to the scores backward."""

"""``python run.py tracking_check``: a seconds-long training run that exercises the tracking
path end to end — metrics every step, an image, a text artifact, a checkpoint path — to check
that runs reach the database (yours via ``LVMAE_MONGO_URL`` or the local one) and to test the
observers (an outage mid-run, credential masking) without the cost of a video model.

It fits a small linear regression with SGD; ``seconds_per_step`` paces the steps so that a run
can span a chosen wall-clock window (the outage test kills the database for > 30 s of it).
"""
from __future__ import annotations

import os
import time

import torch

from lvmae.experiments.commands.experiment import attach_operative_config, ex
from lvmae.experiments.engine.gin_config import gin_applies
from lvmae.experiments.reporting.visuals import attach_png, heatmap_grid

FEATURES = 16
SAMPLES = 256


@gin_applies
def tracking_check_loop(run, seed: int, steps: int = 20, lr: float = 0.1, seconds_per_step: float = 0.0,
                        note: str = "", workdir: str = "outputs/tracking_check") -> dict:
    """Logs ``train/loss`` and ``train/step_ms`` at every step; returns the final loss."""
    if steps < 1 or seconds_per_step < 0:
        raise ValueError(f"steps must be ≥ 1 and seconds_per_step ≥ 0, got {steps}, {seconds_per_step}")
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(SAMPLES, FEATURES, generator=generator)
    truth = torch.randn(FEATURES, 1, generator=generator)
    targets = inputs @ truth
    weights = torch.zeros(FEATURES, 1, requires_grad=True)
    if note:
        print(f"note: {note}")
    loss = torch.tensor(float("nan"))
    for step in range(1, steps + 1):
        started = time.perf_counter()
        loss = torch.mean((inputs @ weights - targets) ** 2)
        loss.backward()
        with torch.no_grad():
            weights -= lr * weights.grad
            weights.grad = None
        time.sleep(seconds_per_step)
        run.log_scalar("train/loss", loss.item(), step)
        run.log_scalar("train/step_ms", 1000 * (time.perf_counter() - started), step)
    image = torch.stack([weights.detach()[:, 0], truth[:, 0]]).reshape(2, 4, 4)
    attach_png(run, heatmap_grid(image, ["fitted weights", "true weights"]), "weights.png")
    os.makedirs(workdir, exist_ok=True)
    checkpoint = os.path.join(workdir, "weights.pt")
    torch.save({"weights": weights.detach()}, checkpoint)
    return {"final_loss": loss.item(), "checkpoint": checkpoint}


@ex.command
def tracking_check(_run, seed):
    """Checks the tracking path with a seconds-long run (metrics, image, artifact, checkpoint path)."""
    result = tracking_check_loop(_run, seed)
    _run.info["checkpoint"] = result["checkpoint"]
    attach_operative_config(_run)
    print(f"tracking check: final loss {result['final_loss']:.4g}")
    return result

"""``python run.py pretrain``: MAE pre-training with dual masking."""
from __future__ import annotations

import os

import gin
import torch

from experiments.experiment import attach_operative_config, ex, gin_applies
from experiments.training import (ScalarLogger, build_optimizer, save_checkpoint, warmup_cosine)
from components.data.shards import repeat_batches
from experiments.visuals import attach_training_images


@gin_applies
def pretrain_loop(run, seed: int, model=gin.REQUIRED, dataset=gin.REQUIRED,
                  batch_size: int = 8, steps: int = 100, lr: float = 1.5e-4,
                  weight_decay: float = 0.05, warmup_steps: int = 10, clip_grad: float = 1.0,
                  log_every: int = 10, shuffle_buffer: int = 256,
                  workdir: str = "outputs/default") -> dict:
    """Trains ``model`` (a ``model.mae``) on the train split of ``dataset``.

    Returns the first and last logged loss and the checkpoint path.
    """
    torch.manual_seed(seed)
    manifest = dataset.prepare()
    mask_generator = torch.Generator().manual_seed(seed)
    optimizer = build_optimizer(model, lr, weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, warmup_steps))
    logger = ScalarLogger(run, steps, log_every, "pretrain")
    batches = repeat_batches(manifest.urls("train"), batch_size, shuffle_buffer, seed)
    model.train()
    clips_since_log = 0
    for step in range(1, steps + 1):
        batch = next(batches)
        losses, plan, prediction = model(batch, mask_generator)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        lr_now = schedule.get_last_lr()[0]
        optimizer.step()
        schedule.step()
        clips_since_log += batch_size
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(f"pre-training loss is {losses['loss'].item()} at step {step}")
        if logger.due(step):
            logger.log(step, **{"train/loss": losses["loss"].item(), "train/lr": lr_now,
                                "train/grad_norm": grad_norm.item(),
                                "train/clips_per_s": clips_since_log / logger.seconds_since_last()})
            clips_since_log = 0
        logger.bar.update()
    logger.close()
    attach_training_images(run, batch, plan, prediction, model)
    path = save_checkpoint(os.path.join(workdir, "pretrain", "last.pt"),
                           {"model": model.state_dict(), "step": steps,
                            "optimizer": optimizer.state_dict(),
                            "run_id": getattr(run, "_id", None),
                            "gin_config": gin.operative_config_str()})
    losses = logger.history["train/loss"]
    return {"first_loss": losses[0][1], "final_loss": losses[-1][1], "checkpoint": path}


@ex.command
def pretrain(_run, seed):
    """Pre-trains a video MAE (configure with -g/-b gin files and bindings)."""
    result = pretrain_loop(_run, seed)
    _run.info["checkpoint"] = result["checkpoint"]
    attach_operative_config(_run)
    print(f"pre-training loss: first {result['first_loss']:.4f} → final {result['final_loss']:.4f}")
    print(f"checkpoint: {result['checkpoint']}")
    return result

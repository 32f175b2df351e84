"""``python run.py finetune``: supervised fine-tuning of a pre-trained encoder."""
from __future__ import annotations

import os

import gin
import torch
import torch.nn.functional as F

from components.data.shards import repeat_batches, stream_batches
from experiments.gin_config import operative_config
from experiments.experiment import attach_operative_config, ex, gin_applies
from experiments.training import (ScalarLogger, build_optimizer, load_checkpoint, save_checkpoint,
                                  warmup_cosine)

ENCODER_PREFIX = "encoder."


def load_pretrained_encoder(classifier: torch.nn.Module, path: str) -> int:
    """Copies the ``encoder.*`` weights of a pre-training checkpoint; returns how many tensors."""
    state = load_checkpoint(path)["model"]
    encoder_state = {k[len(ENCODER_PREFIX):]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    if not encoder_state:
        raise ValueError(f"checkpoint {path!r} holds no '{ENCODER_PREFIX}*' weights")
    missing, unexpected = classifier.encoder.load_state_dict(encoder_state, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {path!r} does not match the encoder: missing {missing}, "
                         f"unexpected {unexpected}")
    return len(encoder_state)


@torch.no_grad()
def top1(model: torch.nn.Module, urls: str, batch_size: int) -> float:
    model.eval()
    correct = total = 0
    for batch in stream_batches(urls, batch_size):
        correct += int((model(batch["video"]).argmax(dim=1) == batch["label"]).sum())
        total += len(batch["label"])
    model.train()
    if total == 0:
        raise ValueError(f"no evaluation samples in {urls}")
    return correct / total


@gin_applies
def finetune_loop(run, seed: int, model=gin.REQUIRED, dataset=gin.REQUIRED,
                  pretrained: str | None = None, batch_size: int = 16, steps: int = 100,
                  lr: float = 1e-3, weight_decay: float = 0.05, warmup_steps: int = 10,
                  clip_grad: float = 1.0, label_smoothing: float = 0.0, log_every: int = 10,
                  eval_every: int = 0, shuffle_buffer: int = 256,
                  workdir: str = "outputs/default") -> dict:
    """Fine-tunes ``model`` (a ``model.classifier``) and reports ``eval/top1`` on ``val``."""
    torch.manual_seed(seed)
    manifest = dataset.prepare()
    if pretrained:
        tensors = load_pretrained_encoder(model, pretrained)
        print(f"loaded {tensors} encoder tensors from {pretrained}")
    optimizer = build_optimizer(model, lr, weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, warmup_steps))
    logger = ScalarLogger(run, steps, log_every, "finetune")
    batches = repeat_batches(manifest.urls("train"), batch_size, shuffle_buffer, seed)
    model.train()
    for step in range(1, steps + 1):
        batch = next(batches)
        loss = F.cross_entropy(model(batch["video"]), batch["label"], label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        lr_now = schedule.get_last_lr()[0]
        optimizer.step()
        schedule.step()
        if logger.due(step):
            logger.log(step, **{"train/loss": loss.item(), "train/lr": lr_now})
        if eval_every and step % eval_every == 0 and step != steps:
            logger.log(step, **{"eval/top1": top1(model, manifest.urls("val"), batch_size)})
        logger.bar.update()
    logger.close()
    accuracy = top1(model, manifest.urls("val"), batch_size)
    logger.log(steps, **{"eval/top1": accuracy})
    path = save_checkpoint(os.path.join(workdir, "finetune", "last.pt"),
                           {"model": model.state_dict(), "step": steps,
                            "run_id": getattr(run, "_id", None),
                            "gin_config": operative_config()})
    return {"top1": accuracy, "checkpoint": path, "pretrained": pretrained}


@ex.command
def finetune(_run, seed):
    """Fine-tunes a classifier on a pre-trained encoder and evaluates top-1."""
    result = finetune_loop(_run, seed)
    _run.info["checkpoint"] = result["checkpoint"]
    attach_operative_config(_run)
    print(f"fine-tuning top-1: {result['top1']:.4f}")
    return result

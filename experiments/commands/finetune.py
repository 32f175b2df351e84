"""``python run.py finetune``: supervised fine-tuning of a pre-trained encoder, then evaluation.

The recipe of PAPER.md §3.3: one head per label head of the dataset (mean pooling + linear,
or class-attention pooling), random-tube token drop in training (``model.classifier.
token_drop``; 20% at 128 frames), layer-wise lr decay, drop-path, label smoothing and
optional video Mixup/CutMix. Pre-trained positional tables are resized when the fine-tuning
grid (frames, resolution) differs from pre-training. The final checkpoint is evaluated
single-view on ``val`` (``evaluate`` does multi-view), logging ``eval/top1`` etc.
"""
from __future__ import annotations

import os
import tempfile

import gin
import torch
import torch.nn.functional as F

from lvmae.components.data.shards import repeat_batches
from lvmae.experiments.engine.classifier_setup import build_classifier, manifest_heads
from lvmae.experiments.commands.evaluate import attach_evaluation, flat_metrics, predict, print_metrics
from lvmae.experiments.engine.gin_config import operative_config
from lvmae.experiments.commands.experiment import attach_operative_config, ex
from lvmae.experiments.engine.gin_config import gin_applies
from lvmae.experiments.engine import mixup  # noqa: F401  (registers video_mixup with gin)
from lvmae.experiments.engine.layer_decay import build_finetune_optimizer
from lvmae.experiments.engine.pretrained import load_pretrained_encoder
from lvmae.experiments.engine.training import ScalarLogger, save_checkpoint, warmup_cosine
from lvmae.experiments.engine.views import batch_labels, model_input_size, random_window


def classification_loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                        label_smoothing: float) -> dict[str, torch.Tensor]:
    """Cross-entropy per head (hard labels (b,) or soft targets (b, k)) and their sum ``loss``."""
    terms = {f"loss/{head}": F.cross_entropy(logits[head], target,
                                             label_smoothing=label_smoothing if target.dim() == 1 else 0.0)
             for head, target in targets.items()}
    terms["loss"] = sum(terms.values())
    return terms


@gin_applies
def finetune_loop(run, seed: int, model=gin.REQUIRED, dataset=gin.REQUIRED,
                  pretrained: str | None = None, pretrained_grid: tuple[int, int, int] | None = None,
                  batch_size: int = 16, steps: int = 100, lr: float = 1e-3,
                  layer_decay: float = 1.0, weight_decay: float = 0.05, warmup_steps: int = 10,
                  clip_grad: float = 1.0, label_smoothing: float = 0.0, mixup=None,
                  log_every: int = 10, eval_every: int = 0, shuffle_buffer: int = 256,
                  workdir: str = "outputs/default") -> dict:
    """Fine-tunes ``model`` (a ``model.classifier`` factory, or one built with the dataset's
    heads) on the train split of ``dataset`` and evaluates it on ``val``.

    Args:
      pretrained: a checkpoint of ours (pre-training or fine-tuning) or official VideoMAE
        weights; None trains from scratch.
      pretrained_grid: the (t, h, w) token grid of ``pretrained`` when it cannot be inferred.
      layer_decay: lr factor per layer below the heads (1 = none; VideoMAE uses 0.75).
      mixup: a ``video_mixup`` (soft targets already carry label smoothing) or None.
    """
    torch.manual_seed(seed)
    manifest = dataset.prepare()
    classes = manifest_heads(manifest)
    classifier = build_classifier(model, manifest)
    if pretrained:
        print(load_pretrained_encoder(classifier.encoder, pretrained, pretrained_grid).describe())
    optimizer = build_finetune_optimizer(classifier, lr, weight_decay, layer_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, warmup_steps))
    logger = ScalarLogger(run, steps, log_every, "finetune")
    batches = repeat_batches(manifest.urls("train"), batch_size, shuffle_buffer, seed)
    # Token drop and mixup draw from their own generator: a rerun draws the same tubes.
    generator = torch.Generator().manual_seed(seed)
    frames, side = model_input_size(classifier.encoder)
    classifier.train()
    for step in range(1, steps + 1):
        batch = next(batches)
        # Longer clips than the model takes: a random window (evaluation takes the centred one).
        video = random_window(batch["video"], frames, side, generator)
        targets = batch_labels(batch, list(classes))
        if mixup is not None:
            video, targets, _ = mixup(video, targets, classes, generator)
        losses = classification_loss(classifier(video, generator), targets, label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(classifier.parameters(), clip_grad)
        lr_now = schedule.get_last_lr()[-1]          # the last group holds the heads: full lr
        optimizer.step()
        schedule.step()
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(f"fine-tuning loss is {losses['loss'].item()} at step {step}")
        if logger.due(step):
            logger.log(step, **{f"train/{k}": v.item() for k, v in losses.items()},
                       **{"train/lr": lr_now, "train/grad_norm": grad_norm.item()})
        if eval_every and step % eval_every == 0 and step != steps:
            interim = predict(classifier, manifest.urls("val"), batch_size, description="eval")
            logger.log(step, **flat_metrics(interim.metrics(), classifier.head_names[0]))
        logger.bar.update()
    logger.close()
    path = save_checkpoint(os.path.join(workdir, "finetune", "last.pt"),
                           {"model": classifier.state_dict(), "step": steps, "heads": classes,
                            "grid": [classifier.encoder.grid.t, classifier.encoder.grid.h, classifier.encoder.grid.w],
                            "run_id": getattr(run, "_id", None),
                            "gin_config": operative_config()})
    accumulator = predict(classifier, manifest.urls("val"), batch_size)
    metrics = accumulator.metrics()
    logger.log(steps, **flat_metrics(metrics, classifier.head_names[0]))
    with tempfile.TemporaryDirectory() as folder:
        attach_evaluation(run, accumulator, dict(manifest.heads), folder)
    return {"top1": metrics[classifier.head_names[0]]["top1"], "metrics": metrics,
            "checkpoint": path, "pretrained": pretrained, "seed": seed}


@ex.command
def finetune(_run, seed):
    """Fine-tunes a classifier on a pre-trained encoder and evaluates it (single view)."""
    result = finetune_loop(_run, seed)
    _run.info["checkpoint"] = result["checkpoint"]
    attach_operative_config(_run)
    print(f"fine-tuning top-1: {result['top1']:.4f}")
    print_metrics(result["metrics"])
    return result

"""``python run.py finetune``: supervised fine-tuning of a pre-trained encoder, then evaluation.

The recipe of docs/paper.md, fine-tuning: one head per label head of the dataset (mean pooling + linear,
or class-attention pooling), random-tube token drop in training (``model.classifier.
token_drop``; 20% at 128 frames), layer-wise lr decay, drop-path, label smoothing and
optional video Mixup/CutMix. Pre-trained positional tables are resized when the fine-tuning
grid (frames, resolution) differs from pre-training. The final checkpoint is evaluated
single-view on ``val`` (``evaluate`` does multi-view), logging ``eval/top1`` etc.
"""
from __future__ import annotations

import tempfile

import gin
import torch
import torch.nn.functional as F

from lvmae.components.data.datasets.mixture import MixedManifest
from lvmae.components.data.reading.pipeline import DataPipeline
from lvmae.experiments.commands.evaluate import attach_evaluation, flat_metrics, predict, print_metrics
from lvmae.experiments.commands.experiment import attach_operative_config, ex
from lvmae.experiments.engine import mixup as _video_mixup  # noqa: F401  (registers video_mixup with gin)
from lvmae.experiments.engine.classifier_setup import build_classifier, manifest_heads
from lvmae.experiments.engine.efficiency import classifier_work
from lvmae.experiments.engine.gin_config import gin_applies
from lvmae.experiments.engine.health import HealthMonitor, encoder_health
from lvmae.experiments.engine.layer_decay import build_finetune_optimizer
from lvmae.experiments.engine.parallel import Parallel
from lvmae.experiments.engine.pretrained import load_pretrained_encoder
from lvmae.experiments.engine.run_folder import resolve_input
from lvmae.experiments.engine.trainer import Precision, Settings, Trainer, eval_loader, input_size
from lvmae.experiments.engine.training import unwrap
from lvmae.experiments.engine.views import batch_labels, random_window

STAGE = "finetune"


def classification_loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                        label_smoothing: float) -> dict[str, torch.Tensor]:
    """Cross-entropy per head (hard labels (b,) or soft targets (b, k)) and their sum ``loss``."""
    terms = {f"loss/{head}": F.cross_entropy(logits[head], target,
                                             label_smoothing=label_smoothing if target.dim() == 1 else 0.0)
             for head, target in targets.items()}
    terms["loss"] = sum(terms.values())
    return terms


def evaluation_manifest(manifest, eval_dataset, classes: dict):
    """The manifest whose ``val`` split fine-tuning reports: ``eval_dataset``'s when given (its
    label heads must be the training data's), else the training dataset's own — refused for a
    ``dataset.mixture``, which is for training only (a mixed validation set would mix the
    reported numbers of several tasks)."""
    if eval_dataset is None:
        if isinstance(manifest, MixedManifest):
            raise ValueError("finetune_loop.dataset is a dataset.mixture, which has no val split to report (it mixes "
                             "several tasks' clips for training); name the data to evaluate on with "
                             "finetune_loop.eval_dataset = @dataset.manifest() (or another dataset with the same "
                             "label heads)")
        return manifest
    evaluated = eval_dataset.prepare()
    if manifest_heads(evaluated) != classes:
        raise ValueError(f"finetune_loop.eval_dataset has label heads {manifest_heads(evaluated)}, but the model is "
                         f"trained on {classes}: evaluate on data with the training data's heads and classes")
    return evaluated


@gin_applies
def finetune_loop(run, seed: int, model=gin.REQUIRED, dataset=gin.REQUIRED,
                  pretrained: str | None = None, pretrained_grid: tuple[int, int, int] | None = None,
                  batch_size: int = 16, accum_steps: int = 1, steps: int = 100, lr: float = 1e-3,
                  layer_decay: float = 1.0, weight_decay: float = 0.05, warmup_steps: int = 10,
                  clip_grad: float = 1.0, label_smoothing: float = 0.0, mixup=None,
                  log_every: int = 10, eval_every: int = 0, checkpoint_every: int = 0,
                  checkpoint_minutes: float = 10.0, pipeline: DataPipeline | None = None,
                  shuffle_buffer: int | None = None, eval_dataset=None,
                  workdir: str = "outputs/default", precision: Precision = "auto", device: str = "auto",
                  parallel: Parallel = "ddp", deterministic: bool = False, exit_after_step: int = 0) -> dict:
    """Fine-tunes ``model`` (a ``model.classifier`` factory, or one built with the dataset's
    heads) on the train split of ``dataset`` and evaluates it on ``val`` (of ``eval_dataset``
    when given: needed when ``dataset`` is a ``dataset.mixture``, which has no ``val``).

    Args:
      pretrained: a checkpoint of ours (pre-training or fine-tuning; a path, a run folder, or
        ``run:N`` for pre-training run N under ``workdir``) or official VideoMAE weights;
        None trains from scratch. Ignored when resuming.
      pretrained_grid: the (t, h, w) token grid of ``pretrained`` when it cannot be inferred.
      layer_decay: lr factor per layer below the heads (1 = none; VideoMAE uses 0.75).
      mixup: a ``video_mixup`` (soft targets already carry label smoothing) or None.
      pipeline: the data pipeline (default: the gin-bound ``data_pipeline``); training clips
        longer or larger than the model's input give a random window; evaluation reads the
        pipeline's centred view at the model's size. ``shuffle_buffer`` overrides its buffer.
      checkpoint_every, checkpoint_minutes, precision, device, parallel, exit_after_step: as
        ``pretrain_loop`` (the training engine's settings).
    """
    settings = Settings("finetune_loop", steps, accum_steps, clip_grad, warmup_steps, 0.0, log_every,
                        checkpoint_every, checkpoint_minutes, precision, exit_after_step)
    trainer = Trainer(run, seed, command="finetune", stage=STAGE, workdir=workdir, settings=settings,
                      batch_size=batch_size, device=device, parallel=parallel, deterministic=deterministic)
    manifest = dataset.prepare()
    classes = manifest_heads(manifest)
    evaluated = evaluation_manifest(manifest, eval_dataset, classes)
    classifier = build_classifier(model, manifest)
    if pretrained and not trainer.resuming:
        path = resolve_input(pretrained, workdir, "pretrain", "finetune_loop.pretrained")
        print(load_pretrained_encoder(classifier.encoder, path, pretrained_grid).describe())
    # Windows and mixup draw on the host, token drop on the device: a rerun draws the same.
    generator = torch.Generator().manual_seed(seed)
    drop_generator = torch.Generator(device=trainer.device).manual_seed(seed)
    # the last parameter group holds the heads: its lr is the full one, the one logged
    trainer.prepare(classifier, lambda module: build_finetune_optimizer(unwrap(module), lr, weight_decay,
                                                                         layer_decay),
                    tracked={"generator": generator, "drop_generator": drop_generator}, lr_group=-1)
    trainer.extra_state = lambda: {"heads": classes, "grid": [classifier.encoder.grid.t, classifier.encoder.grid.h,
                                                                   classifier.encoder.grid.w]}
    batches = trainer.train_loader(pipeline, manifest, batch_size, seed, shuffle_buffer)
    frames, side = input_size(classifier.encoder)

    def validation(description: str):
        batches = eval_loader(pipeline, evaluated, "val", batch_size, frames, side, 1, 1, trainer.device)
        return predict(classifier, batches, trainer.device, precision, description)

    def step(batch: dict, index: int):
        # Longer clips than the model takes: a random window (evaluation takes the centred one).
        video = random_window(batch["video"], frames, side, generator)
        targets = batch_labels(batch, list(classes))
        if mixup is not None:
            video, targets, _ = mixup(video, targets, classes, generator)
        return classification_loss(trainer.forward(video, drop_generator), targets, label_smoothing), None

    def interim_evaluation(index: int, batch: dict, losses: dict, outputs) -> None:
        if eval_every and index % eval_every == 0 and index != steps:
            interim = validation("eval")
            trainer.log(index, **flat_metrics(interim.metrics(), classifier.head_names[0]))

    trainer.monitors.append(HealthMonitor(trainer.run, encoder_health(classifier.encoder, frames, side), steps,
                                          trainer.info.is_main))
    result = trainer.fit(step, batches, interim_evaluation, "finetune", work=classifier_work(classifier))
    accumulator = validation("evaluate")
    metrics = accumulator.metrics()
    trainer.log(steps, **flat_metrics(metrics, classifier.head_names[0]))
    with tempfile.TemporaryDirectory() as folder:
        attach_evaluation(trainer.run, accumulator, dict(manifest.heads), folder)
    return {"top1": metrics[classifier.head_names[0]]["top1"], "metrics": metrics,
            "checkpoint": result["checkpoint"], "run_folder": result["run_folder"],
            "pretrained": pretrained, "seed": seed, "resumed_from": result["resumed_from"]}


@ex.command
def finetune(_run, seed):
    """Fine-tunes a classifier on a pre-trained encoder and evaluates it (single view)."""
    result = finetune_loop(_run, seed)
    _run.info["checkpoint"] = result["checkpoint"]
    attach_operative_config(_run)
    print(f"fine-tuning top-1: {result['top1']:.4f}")
    print_metrics(result["metrics"])
    return result

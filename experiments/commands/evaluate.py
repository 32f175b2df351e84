"""``python run.py evaluate``: a fine-tuned classifier on a split, single- or multi-view.

Logs ``eval/top1``, ``eval/top5``, ``eval/mean_class`` (primary head: the manifest's first),
``eval/<head>/<metric>`` for every head and ``eval/action/<metric>`` for verb + noun sets;
attaches ``predictions.csv`` and one ``confusion_<head>.png`` per head to the run.
"""
from __future__ import annotations

import csv
import os
import tempfile

import gin
import torch
from einops import reduce
from tqdm import tqdm

from lvmae.components.backbones.pos_interpolation import adapt_state
from lvmae.components.data.reading.pipeline import DataPipeline
from lvmae.components.masking.plan import TokenGrid
from lvmae.experiments.commands.experiment import attach_operative_config, ex
from lvmae.experiments.engine.classifier_setup import build_classifier
from lvmae.experiments.engine.gin_config import gin_applies
from lvmae.experiments.engine.metrics import ACTION, Accumulator, confusion_matrix
from lvmae.experiments.engine.run_folder import resolve_input
from lvmae.experiments.engine.trainer import Precision, choose_device, eval_loader, inference, input_size
from lvmae.experiments.engine.training import load_checkpoint
from lvmae.experiments.engine.views import batch_labels


def predict(model: torch.nn.Module, batches, device: str | torch.device = "auto", precision: Precision = "auto",
            description: str = "evaluate") -> Accumulator:
    """Runs ``model`` (in eval mode: no token drop) over evaluation ``batches`` (the data
    pipeline's: ``views`` consecutive rows per clip) on the engine's device (``auto``: the GPU
    when there is one); logits are averaged over each clip's views."""
    heads = list(model.heads)
    accumulator = Accumulator(dict.fromkeys(heads, 0))
    progress = tqdm(batches, desc=description, mininterval=0.5)
    for batch in inference(model, progress, device, precision):
        views = int(batch.get("views", 1))
        logits = {head: reduce(value.float(), "(b v) k -> b k", "mean", v=views)
                  for head, value in model(batch["video"]).items()}
        accumulator.update(logits, batch_labels(batch, heads), batch.get("key"))
    return accumulator


def flat_metrics(metrics: dict[str, dict[str, float]], primary: str, prefix: str = "eval") -> dict[str, float]:
    """{head: {metric: v}} → {"eval/top1": primary's, "eval/<head>/<metric>": v, ...}."""
    flat = {f"{prefix}/{metric}": value for metric, value in metrics[primary].items()}
    for head, values in metrics.items():
        flat.update({f"{prefix}/{head}/{metric}": value for metric, value in values.items()})
    return flat


def write_predictions(accumulator: Accumulator, path: str) -> str:
    """CSV: key, then per head label, prediction and the top-5 classes (space-separated)."""
    logits, labels = accumulator.stacked()
    heads = list(accumulator.heads)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["key"] + [f"{h}_{c}" for h in heads for c in ("label", "pred", "top5")])
        top = {h: logits[h].topk(min(5, logits[h].shape[1]), dim=1).indices for h in heads}
        for i, key in enumerate(accumulator.keys):
            row = [key]
            for h in heads:
                row += [int(labels[h][i]), int(top[h][i, 0]), " ".join(str(int(c)) for c in top[h][i])]
            writer.writerow(row)
    return path


def plot_confusion(accumulator: Accumulator, head: str, class_names: list[str], path: str) -> str:
    """Row-normalised confusion matrix of ``head`` as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logits, labels = accumulator.stacked()
    matrix = confusion_matrix(logits[head].argmax(1), labels[head], logits[head].shape[1]).float()
    matrix = matrix / matrix.sum(dim=1, keepdim=True).clamp(min=1)
    classes = matrix.shape[0]
    size = min(4 + classes * 0.35, 20)            # readable up to ~50 classes, capped beyond
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(matrix.numpy(), cmap="viridis", vmin=0, vmax=1)
    if classes <= 50:
        names = class_names if len(class_names) == classes else [str(c) for c in range(classes)]
        axis.set_xticks(range(classes), names, rotation=90)
        axis.set_yticks(range(classes), names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{head}: confusion (rows sum to 1), {len(accumulator.keys)} clips")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def attach_evaluation(run, accumulator: Accumulator, class_names: dict[str, list[str]],
                      folder: str) -> list[str]:
    """Writes predictions.csv and confusion PNGs into ``folder`` and attaches them to ``run``."""
    os.makedirs(folder, exist_ok=True)
    paths = [write_predictions(accumulator, os.path.join(folder, "predictions.csv"))]
    for head in accumulator.heads:
        paths.append(plot_confusion(accumulator, head, class_names.get(head, []),
                                    os.path.join(folder, f"confusion_{head}.png")))
    if run is not None:
        for path in paths:
            run.add_artifact(path, os.path.basename(path))
    return paths


def load_finetuned(model: torch.nn.Module, path: str) -> None:
    """Loads a fine-tuning checkpoint into ``model`` (positions resized if the grid changed)."""
    checkpoint = load_checkpoint(path)
    grid = checkpoint.get("grid")
    state, _ = adapt_state(checkpoint["model"], model, model.encoder.grid,
                           TokenGrid(*grid) if grid else None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {path!r} does not match the classifier: missing {missing}, "
                         f"unexpected {unexpected}")


@gin_applies
def evaluate_loop(run, model=gin.REQUIRED, dataset=gin.REQUIRED, checkpoint: str | None = None,
                  split: str = "val", batch_size: int = 16, temporal_clips: int = 1,
                  spatial_crops: int = 1, workdir: str = "outputs/default", device: str = "auto",
                  precision: Precision = "auto", pipeline: DataPipeline | None = None) -> dict:
    """Evaluates a fine-tuned ``model.classifier`` on the engine's device. ``checkpoint``: a
    path, a run folder or ``run:N`` (fine-tuning run N under ``workdir``); default
    ``<workdir>/finetune/last.pt``, the newest completed fine-tuning run. Views: the data
    pipeline's evaluation views (``pipeline``, default the gin-bound ``data_pipeline``) at the
    model's input size, ``temporal_clips`` windows spread over each clip × ``spatial_crops``
    squares along its long side."""
    manifest = dataset.prepare()
    classifier = build_classifier(model, manifest)
    checkpoint = resolve_input(checkpoint or os.path.join(workdir, "finetune", "last.pt"), workdir,
                               "finetune", "evaluate_loop.checkpoint")
    load_finetuned(classifier, checkpoint)
    frames, side = input_size(classifier.encoder)
    engine_device = choose_device(device)
    batches = eval_loader(pipeline, manifest, split, batch_size, frames, side, temporal_clips, spatial_crops,
                          engine_device)
    accumulator = predict(classifier, batches, engine_device, precision)
    metrics = accumulator.metrics()
    flat = flat_metrics(metrics, classifier.head_names[0])
    for name, value in flat.items():
        if run is not None:
            run.log_scalar(name, value, 0)
    with tempfile.TemporaryDirectory() as folder:
        attach_evaluation(run, accumulator, dict(manifest.heads), folder)
    views_used = temporal_clips * spatial_crops
    return {"metrics": metrics, "views": views_used, "checkpoint": checkpoint, "split": split}


def print_metrics(metrics: dict[str, dict[str, float]]) -> None:
    for head, values in metrics.items():
        text = "  ".join(f"{k} {v:.4f}" for k, v in values.items())
        print(f"{head:>10}: {text}{'   (verb and noun both right)' if head == ACTION else ''}")


@ex.command
def evaluate(_run):
    """Evaluates a fine-tuned classifier: top-1/top-5/mean-class per head, confusion, predictions."""
    result = evaluate_loop(_run)
    attach_operative_config(_run)
    print(f"evaluation on {result['split']} ({result['views']} view(s)) of {result['checkpoint']}:")
    print_metrics(result["metrics"])
    return result

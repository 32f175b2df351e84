"""``python run.py probe``: linear or attentive probe on frozen encoder features.

Axis legend: N clips, n tokens, d width, k classes.

Cheap comparisons of pre-training variants without a full fine-tune. The frozen encoder runs
once over each split (every token, no augmentation); features are cached in memory — the
mean token (N, 1, d) for heads that only pool by mean (``head.mean_linear``: linear probe),
every token (N, n, d) in float16 for heads that attend (``head.class_attention``: attentive
probe; memory N·n·d·2 bytes). Then one head per label head trains on the cache.
Logs ``eval/top1`` etc. like ``finetune``, so the seed sweep and reports treat both alike.
"""
from __future__ import annotations

import tempfile

import gin
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lvmae.components.data.pipeline import DataPipeline
from lvmae.experiments.commands.evaluate import attach_evaluation, flat_metrics, print_metrics
from lvmae.experiments.commands.experiment import attach_operative_config, ex
from lvmae.experiments.engine.classifier_setup import manifest_heads
from lvmae.experiments.engine.gin_config import gin_applies
from lvmae.experiments.engine.metrics import Accumulator
from lvmae.experiments.engine.pretrained import load_pretrained_encoder
from lvmae.experiments.engine.run_folder import resolve_input
from lvmae.experiments.engine.trainer import (
    GeneratedBatches,
    Precision,
    Settings,
    Trainer,
    eval_loader,
    inference,
    input_size,
)
from lvmae.experiments.engine.views import batch_labels

STAGE = "probe"


@torch.no_grad()
def extract_features(encoder: nn.Module, batches, heads: list[str], keep_tokens: bool, description: str,
                     device: torch.device, precision: Precision = "auto"
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[str]]:
    """→ features (N, n or 1, d), labels {head: (N,)} (on ``device``), keys."""
    features, labels, keys = [], {h: [] for h in heads}, []
    for batch in inference(encoder, tqdm(batches, desc=description, mininterval=0.5), device, precision):
        tokens = encoder(batch["video"]).float()
        features.append(tokens.half() if keep_tokens else tokens.mean(dim=1, keepdim=True))
        for head, value in batch_labels(batch, heads).items():
            labels[head].append(value)
        keys.extend(batch["key"])
    if not keys:
        raise ValueError(f"no samples in {description}")
    return torch.cat(features), {h: torch.cat(v) for h, v in labels.items()}, keys


@gin_applies
def probe_loop(run, seed: int, encoder=gin.REQUIRED, dataset=gin.REQUIRED, head=gin.REQUIRED,
               pretrained: str | None = None, pretrained_grid: tuple[int, int, int] | None = None,
               steps: int = 500, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
               warmup_steps: int = 20, feature_batch_size: int = 16, log_every: int = 50,
               workdir: str = "outputs/default", precision: Precision = "auto", device: str = "auto",
               pipeline: DataPipeline | None = None) -> dict:
    """Trains ``head`` (a head factory) per label head on frozen ``encoder`` features, on the
    training engine's device. ``pretrained``: a path, a run folder or ``run:N`` (pre-training
    run N under ``workdir``); None probes the randomly initialised encoder (the floor to
    compare with). Features are read through the data pipeline's centred evaluation view
    (``pipeline``, default the gin-bound ``data_pipeline``). A probe takes seconds once the features are cached, so it writes no
    checkpoint and is not resumed."""
    settings = Settings("probe_loop", steps, 1, None, warmup_steps, 0.0, log_every, 0, 0.0, precision,
                        save_checkpoints=False)
    trainer = Trainer(run, seed, command="probe", stage=STAGE, workdir=workdir, settings=settings,
                      batch_size=batch_size, device=device)
    manifest = dataset.prepare()
    classes = manifest_heads(manifest)
    if pretrained:
        path = resolve_input(pretrained, workdir, "pretrain", "probe_loop.pretrained")
        print(load_pretrained_encoder(encoder, path, pretrained_grid, "probe_loop.pretrained").describe())
    encoder.requires_grad_(False)
    probes = nn.ModuleDict({h: head(dim=encoder.dim, num_classes=k) for h, k in classes.items()})
    keep_tokens = any(getattr(p, "needs_tokens", True) for p in probes.values())
    frames, side = input_size(encoder)

    def features(split: str):    # one centred view per clip, at the encoder's input size
        batches = eval_loader(pipeline, manifest, split, feature_batch_size, frames, side, 1, 1, trainer.device)
        return extract_features(encoder, batches, list(classes), keep_tokens, f"features {split}",
                                trainer.device, precision)

    train_x, train_y, _ = features("train")
    val_x, val_y, val_keys = features("val")
    trainer.prepare(probes, lambda module: torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay))
    generator = torch.Generator(device=trainer.device).manual_seed(seed)
    count, rows_per_batch = len(train_x), min(batch_size, len(train_x))
    # Random rows (b,) into the cached features, drawn on their device.
    rows = trainer.data(GeneratedBatches(
        lambda g: {"rows": torch.randint(count, (rows_per_batch,), generator=g, device=g.device)}, generator))

    def step(batch: dict, index: int):
        features = train_x[batch["rows"]].float()
        loss = sum(F.cross_entropy(probe(features), train_y[h][batch["rows"]]) for h, probe in probes.items())
        return {"loss": loss}, None

    trainer.fit(step, rows, description="probe")
    accumulator = Accumulator(classes)
    probes.eval()
    with torch.no_grad():
        for start in range(0, len(val_x), batch_size):
            part = slice(start, start + batch_size)
            accumulator.update({h: p(val_x[part].float()) for h, p in probes.items()},
                               {h: v[part] for h, v in val_y.items()}, val_keys[part])
    metrics = accumulator.metrics()
    trainer.log(steps, **flat_metrics(metrics, next(iter(classes))))
    with tempfile.TemporaryDirectory() as folder:
        attach_evaluation(trainer.run, accumulator, dict(manifest.heads), folder)
    return {"top1": metrics[next(iter(classes))]["top1"], "metrics": metrics,
            "pretrained": pretrained, "seed": seed, "cached": "tokens" if keep_tokens else "mean"}


@ex.command
def probe(_run, seed):
    """Linear / attentive probe on frozen encoder features (``probe_loop.head``)."""
    result = probe_loop(_run, seed)
    attach_operative_config(_run)
    print(f"probe ({result['cached']} features) top-1: {result['top1']:.4f}")
    print_metrics(result["metrics"])
    return result

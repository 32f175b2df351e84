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

from lvmae.components.data.shards import stream_batches
from lvmae.experiments.engine.classifier_setup import manifest_heads
from lvmae.experiments.commands.evaluate import attach_evaluation, flat_metrics, print_metrics
from lvmae.experiments.commands.experiment import attach_operative_config, ex
from lvmae.experiments.engine.gin_config import gin_applies
from lvmae.experiments.engine.metrics import Accumulator
from lvmae.experiments.engine.pretrained import load_pretrained_encoder
from lvmae.experiments.engine.training import ScalarLogger, warmup_cosine
from lvmae.experiments.engine.views import batch_labels


@torch.no_grad()
def extract_features(encoder: nn.Module, urls: str, batch_size: int, heads: list[str],
                     keep_tokens: bool, description: str) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[str]]:
    """→ features (N, n or 1, d), labels {head: (N,)}, keys."""
    encoder.eval()
    features, labels, keys = [], {h: [] for h in heads}, []
    for batch in tqdm(stream_batches(urls, batch_size), desc=description, mininterval=0.5):
        tokens = encoder(batch["video"])
        features.append(tokens.half() if keep_tokens else tokens.mean(dim=1, keepdim=True))
        for head, value in batch_labels(batch, heads).items():
            labels[head].append(value)
        keys.extend(batch["key"])
    if not keys:
        raise ValueError(f"no samples in {urls}")
    return torch.cat(features), {h: torch.cat(v) for h, v in labels.items()}, keys


@gin_applies
def probe_loop(run, seed: int, encoder=gin.REQUIRED, dataset=gin.REQUIRED, head=gin.REQUIRED,
               pretrained: str | None = None, pretrained_grid: tuple[int, int, int] | None = None,
               steps: int = 500, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
               warmup_steps: int = 20, feature_batch_size: int = 16, log_every: int = 50) -> dict:
    """Trains ``head`` (a head factory) per label head on frozen ``encoder`` features.

    ``pretrained`` None probes the randomly initialised encoder (the floor to compare with).
    """
    torch.manual_seed(seed)
    manifest = dataset.prepare()
    classes = manifest_heads(manifest)
    if pretrained:
        print(load_pretrained_encoder(encoder, pretrained, pretrained_grid, "probe_loop.pretrained").describe())
    encoder.requires_grad_(False)
    probes = nn.ModuleDict({h: head(dim=encoder.dim, num_classes=k) for h, k in classes.items()})
    keep_tokens = any(getattr(p, "needs_tokens", True) for p in probes.values())
    train_x, train_y, _ = extract_features(encoder, manifest.urls("train"), feature_batch_size,
                                           list(classes), keep_tokens, "features train")
    val_x, val_y, val_keys = extract_features(encoder, manifest.urls("val"), feature_batch_size,
                                              list(classes), keep_tokens, "features val")
    optimizer = torch.optim.AdamW(probes.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, warmup_steps))
    logger = ScalarLogger(run, steps, log_every, "probe")
    generator = torch.Generator().manual_seed(seed)
    probes.train()
    for step in range(1, steps + 1):
        rows = torch.randint(len(train_x), (min(batch_size, len(train_x)),), generator=generator)
        features = train_x[rows].float()
        loss = sum(F.cross_entropy(probe(features), train_y[h][rows]) for h, probe in probes.items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if logger.due(step):
            logger.log(step, **{"train/loss": loss.item()})
        logger.bar.update()
    logger.close()
    probes.eval()
    accumulator = Accumulator(classes)
    with torch.no_grad():
        for start in range(0, len(val_x), batch_size):
            part = slice(start, start + batch_size)
            accumulator.update({h: p(val_x[part].float()) for h, p in probes.items()},
                               {h: v[part] for h, v in val_y.items()}, val_keys[part])
    metrics = accumulator.metrics()
    logger.log(steps, **flat_metrics(metrics, next(iter(classes))))
    with tempfile.TemporaryDirectory() as folder:
        attach_evaluation(run, accumulator, dict(manifest.heads), folder)
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

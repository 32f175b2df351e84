"""``python run.py probe``: frozen evaluation — a grid of probes and kNN on cached encoder features.

Axis legend: N clips, v spatial views, s temporal segments, n tokens, D feature width.

The field's protocol (V-JEPA 2's frozen evaluation): the encoder never trains; its features
of every clip — ``segments`` temporal windows × ``views`` spatial crops, read from the blocks
``out_layers`` — are extracted once and cached on disk (experiments/engine/feature_cache.py),
so every probe and every later run on the same (weights, data, views, layers) reuses them.
One run trains a grid of probes together (``probe_grid``: attentive and linear heads ×
learning rates × weight decays; experiments/engine/probe_grid.py), picks the best on a
selection split and reports it on another:

- the manifest has a ``test`` split: fit on ``train``, select on ``val``, report ``test``;
- otherwise: a fixed ``select_fraction`` of ``train`` (chosen by a hash of the clip key, the
  same for every encoder and seed) selects, the rest fits, ``val`` is reported.

It also reports a weighted kNN classifier (``knn/top1``: no training, nothing to tune), a
per-probe table and picture, predictions and confusion matrices. ``eval/top1`` is the chosen
probe's top-1 on the reported split, like ``finetune``'s, so sweeps and reports treat both alike;
``eval/<kind>/top1`` (``eval/linear/top1``, ``eval/attentive/top1``) the same for the best probe of
each kind alone — the metric a study names when one kind is saturated on its task (a random
encoder's attentive probes can solve a task its linear probes cannot).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile

import gin
import torch
from einops import rearrange

from lvmae.components.data.reading.pipeline import DataPipeline
from lvmae.experiments.commands.evaluate import attach_evaluation, flat_metrics, print_metrics
from lvmae.experiments.commands.experiment import attach_operative_config, ex
from lvmae.experiments.engine.classifier_setup import manifest_heads
from lvmae.experiments.engine.feature_cache import (
    FeatureCache,
    FeatureSet,
    data_fingerprint,
    encoder_fingerprint,
    extract,
    pipeline_settings,
)
from lvmae.experiments.engine.gin_config import gin_applies
from lvmae.experiments.engine.knn import knn_top1
from lvmae.experiments.engine.metrics import Accumulator
from lvmae.experiments.engine.pretrained import load_pretrained_encoder
from lvmae.experiments.engine.probe_grid import (
    GridProbes,
    ProbeGrid,
    chosen_per_kind,
    needs_tokens,
    select,
    single,
    top1,
)
from lvmae.experiments.engine.run_folder import resolve_input
from lvmae.experiments.engine.trainer import (
    GeneratedBatches,
    Precision,
    Settings,
    Trainer,
    eval_loader,
    input_size,
)
from lvmae.experiments.reporting import probe_table

STAGE = "probe"
HASH_BUCKETS = 2 ** 32


@dataclasses.dataclass(frozen=True)
class Splits:
    """Which split fits the probes, which selects among them, which is reported."""

    fit: str
    select: str | None      # None: a held-out part of ``fit`` (``select_fraction``)
    report: str


def plan_splits(manifest, select_fraction: float) -> Splits:
    if "test" in manifest.splits:
        return Splits("train", "val", "test")
    if not 0.0 < select_fraction < 1.0:
        raise ValueError(f"probe_loop.select_fraction must lie in (0, 1) when the manifest {manifest.name!r} "
                         f"has no test split (got {select_fraction}): the probe is chosen on that part of train")
    return Splits("train", None, "val")


def held_out(keys: list[str], fraction: float) -> torch.Tensor:
    """Boolean (N,): clips whose key hashes below ``fraction`` (independent of seed and encoder)."""
    return torch.tensor([int(hashlib.sha1(k.encode()).hexdigest()[:8], 16) / HASH_BUCKETS < fraction for k in keys])


@gin_applies
def probe_loop(run, seed: int, encoder=gin.REQUIRED, dataset=gin.REQUIRED, heads: ProbeGrid | None = None,
               head=None, pretrained: str | None = None, pretrained_grid: tuple[int, int, int] | None = None,
               out_layers: tuple[int, ...] = (-1,), segments: int = 1, views: int = 1,
               select_fraction: float = 0.2, knn_k: int = 20, cache_dir: str | None = "",
               steps: int = 500, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
               warmup_steps: int = 20, feature_batch_size: int = 16, log_every: int = 50,
               workdir: str = "outputs/default", precision: Precision = "auto", device: str = "auto",
               pipeline: DataPipeline | None = None) -> dict:
    """Frozen evaluation of ``encoder`` (see the module docstring).

    ``heads``: the probe grid (default ``probe_grid()``: 16 probes); ``head``: instead, one
    head factory trained at ``lr`` / ``weight_decay``. ``pretrained``: a path, a run folder or
    ``run:N`` (pre-training run N under ``workdir``); None probes the randomly initialised
    encoder (the floor every pre-trained encoder must clear). ``cache_dir``: where features are
    cached ("" = ``<workdir>/features``, None = not on disk). A probe run writes no checkpoint
    and is not resumed: with its features cached it takes seconds to minutes."""
    if heads is not None and head is not None:
        raise ValueError("probe_loop: bind either heads (a probe grid) or head (one probe), not both")
    if segments < 1 or views < 1:
        raise ValueError(f"probe_loop.segments and .views must be ≥ 1, got {segments}, {views}")
    members = single(head, lr, weight_decay) if head is not None else (heads or ProbeGrid()).members()
    keep_tokens = any(needs_tokens(m.factory) for m in members)
    settings = Settings("probe_loop", steps, 1, None, warmup_steps, 0.0, log_every, 0, 0.0, precision,
                        save_checkpoints=False)
    trainer = Trainer(run, seed, command="probe", stage=STAGE, workdir=workdir, settings=settings,
                      batch_size=batch_size, device=device)
    manifest = dataset.prepare()
    classes = manifest_heads(manifest)
    splits = plan_splits(manifest, select_fraction)
    if pretrained:
        path = resolve_input(pretrained, workdir, "pretrain", "probe_loop.pretrained")
        print(load_pretrained_encoder(encoder, path, pretrained_grid, "probe_loop.pretrained").describe())
    encoder.requires_grad_(False)
    frames, side = input_size(encoder)
    pipeline = pipeline or DataPipeline(clip_frames=frames, size=side)
    cache = FeatureCache(os.path.join(workdir, "features") if cache_dir == "" else cache_dir)
    weights = encoder_fingerprint(encoder)

    def features(split: str) -> FeatureSet:
        parts = {"encoder": weights, "data": data_fingerprint(manifest, split), "layers": list(out_layers),
                 "segments": segments, "views": views, "frames": frames, "side": side, "tokens": keep_tokens,
                 "pipeline": pipeline_settings(pipeline)}

        def run_encoder() -> FeatureSet:
            batches = eval_loader(pipeline, manifest, split, feature_batch_size, frames, side, segments, views,
                                  trainer.device)
            return extract(encoder, batches, list(classes), tuple(out_layers), segments, views, keep_tokens,
                           trainer.device, precision, f"features {split}")
        return cache.get_or_extract(parts, run_encoder)

    fit = features(splits.fit)
    if splits.select is None:
        selecting = held_out(fit.keys, select_fraction)
        if selecting.all() or not selecting.any():
            raise ValueError(f"probe_loop.select_fraction={select_fraction} leaves no clip to "
                             f"{'fit' if selecting.all() else 'select'} on among {len(fit)} training clips")
        fit, choose = fit.subset((~selecting).nonzero()[:, 0]), fit.subset(selecting.nonzero()[:, 0])
    else:
        choose = features(splits.select)
    report = features(splits.report)
    print(f"features: fit {len(fit)}, select {len(choose)}, report {len(report)} clips × {views} view(s) × "
          f"{segments} segment(s), layers {tuple(out_layers)}, width {fit.features.shape[-1]} "
          f"(cache: {len(cache.hits)} read, {len(cache.misses)} written)")

    probes = GridProbes(members, fit.features.shape[-1], classes, fit.features)
    trainer.prepare(probes, lambda module: torch.optim.AdamW(probes.param_groups()))
    # Every (clip, view) of the fitting split is a training row (b, n, D).
    rows = rearrange(fit.features, "N v n D -> (N v) n D").to(trainer.device)
    row_labels = {h: y.repeat_interleave(fit.features.shape[1]).to(trainer.device) for h, y in fit.labels.items()}
    generator = torch.Generator(device=trainer.device).manual_seed(seed)
    count, per_batch = len(rows), min(batch_size, len(rows))
    batches = trainer.data(GeneratedBatches(
        lambda g: {"rows": torch.randint(count, (per_batch,), generator=g, device=g.device)}, generator))

    def step(batch: dict, index: int):
        picked = batch["rows"]
        return {"loss": probes.loss(rows[picked].float(), {h: y[picked] for h, y in row_labels.items()})}, None

    trainer.fit(step, batches, description=f"probe grid ({len(members)} × {len(classes)} head(s))")

    select_probs = probes.predict(choose, batch_size, trainer.device)
    report_probs = probes.predict(report, batch_size, trainer.device)
    chosen = select(select_probs, choose.labels)
    table = [{"label_head": h, "probe": m.name, "kind": m.kind, "lr": m.lr, "weight_decay": m.weight_decay,
              "select_top1": top1(select_probs[h][m.name], choose.labels[h]),
              "report_top1": top1(report_probs[h][m.name], report.labels[h]), "chosen": m.name == chosen[h]}
             for h in classes for m in members]
    accumulator = Accumulator(classes)
    accumulator.update({h: report_probs[h][chosen[h]].clamp_min(1e-12).log() for h in classes},
                       report.labels, report.keys)
    metrics = accumulator.metrics()
    primary = next(iter(classes))
    knn = knn_top1(fit, report, classes, knn_k)
    scalars = flat_metrics(metrics, primary)
    scalars |= {"knn/top1": knn[primary], **{f"knn/{h}/top1": v for h, v in knn.items()}}
    scalars |= {f"probe/{r['label_head']}/{r['probe']}/{split}_top1": r[f"{split}_top1"]
                for r in table for split in ("select", "report")}
    by_kind = {kind: row["report_top1"] for kind, row in chosen_per_kind(table, primary).items()}
    scalars |= {f"eval/{kind}/top1": value for kind, value in by_kind.items()}
    trainer.log(steps, **scalars)
    with tempfile.TemporaryDirectory() as folder:
        paths = [probe_table.write_table(table, os.path.join(folder, "probe_heads.csv")),
                 probe_table.plot(table, os.path.join(folder, "probe_heads.png"),
                                  f"probe grid: {len(members)} probes, chosen on {splits.select or 'held-out train'}, "
                                  f"reported on {splits.report}")]
        attach_evaluation(trainer.run, accumulator, dict(manifest.heads), folder)
        if trainer.run is not None:
            for path in paths:
                trainer.run.add_artifact(path, os.path.basename(path))
            trainer.run.info.update({"probe_chosen": chosen, "probe_splits": dataclasses.asdict(splits),
                                     "feature_cache": {"read": cache.hits, "written": cache.misses}})
    return {"top1": metrics[primary]["top1"], "by_kind": by_kind, "metrics": metrics, "knn": knn, "chosen": chosen,
            "table": table,
            "pretrained": pretrained, "seed": seed, "cached": "tokens" if keep_tokens else "mean",
            "probes": len(members), "cache": {"read": len(cache.hits), "written": len(cache.misses)}}


@ex.command
def probe(_run, seed):
    """Frozen evaluation: a grid of probes (or ``probe_loop.head``) and kNN on cached encoder features."""
    result = probe_loop(_run, seed)
    attach_operative_config(_run)
    print(probe_table.markdown(result.pop("table")))     # the run keeps it as probe_heads.csv
    print(f"probe ({result['cached']} features, {result['probes']} probe(s), chosen {result['chosen']}) "
          f"top-1: {result['top1']:.4f}   kNN top-1: {next(iter(result['knn'].values())):.4f}")
    print_metrics(result["metrics"])
    return result

"""``python run.py pretrain_tokenizer``: trains the adaptive tokenizer (tokenizer + learned
scorer + differentiable top-k, optionally a discriminator) on 16-frame clips.

Logs reconstruction loss, PSNR, codebook usage and perplexity, the selected fraction (and the
object recall on procedural flicker clips); attaches reconstructions and score heat-maps as
PNG. Runs on the training engine (docs/training.md): its own folder ``WORKDIR/tokenizer/<run
id>``, checkpoints by wall time or every ``checkpoint_every`` steps, explicit resume.
"""
from __future__ import annotations

import os
import tempfile

import gin
import torch
from einops import rearrange
from torch import nn

from lvmae.components.data.datasets.flicker_clips import selection_recall
from lvmae.components.data.reading.pipeline import DataPipeline
from lvmae.components.models.adaptive_tokenizer import AdaptiveTokenizer
from lvmae.components.models.video_discriminator import discriminator_gan_loss, generator_gan_loss, r1_penalty
from lvmae.experiments.commands.experiment import attach_operative_config, ex
from lvmae.experiments.engine.efficiency import counted_work
from lvmae.experiments.engine.gin_config import gin_applies
from lvmae.experiments.engine.health import HealthMonitor, feature_statistics, in_eval_mode
from lvmae.experiments.engine.trainer import (
    GeneratedBatches,
    Precision,
    Settings,
    Trainer,
    eval_loader,
    to_device,
)
from lvmae.experiments.engine.training import build_optimizer
from lvmae.experiments.reporting.tokenizer_images import save_reconstructions, save_score_maps

STAGE = "tokenizer"       # runs work in WORKDIR/tokenizer/<run id>
_EVAL_SEED_OFFSET = 7919   # the fixed evaluation clips never coincide with training draws
_RANDOM_SELECTION_DRAWS = 3  # random selections averaged for the selection-gain baseline


def psnr(recon: torch.Tensor, video: torch.Tensor, data_range: float | None = None) -> torch.Tensor:
    """Mean over clips of 10·log10(range² / MSE); ``range`` is ``data_range`` or each original
    clip's max − min (the clips are normalised, so there is no fixed 0–255 peak)."""
    mse = (recon.float() - video.float()).pow(2).flatten(1).mean(dim=1).clamp_min(1e-12)
    flat = video.float().flatten(1)
    peak = (torch.full_like(mse, data_range) if data_range
            else flat.amax(dim=1) - flat.amin(dim=1))
    return (10 * torch.log10(peak.pow(2) / mse)).mean()


def codebook_statistics(indices: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """indices (any shape) → usage (distinct codes / codebook size), distinct codes, perplexity
    (exp of the entropy of the code histogram)."""
    _, counts = indices.flatten().unique(return_counts=True)
    probability = counts.double() / counts.sum()
    entropy = -(probability * probability.log()).sum()
    return {"codebook_usage": len(counts) / codebook_size, "codes_used": float(len(counts)),
            "perplexity": float(entropy.exp())}


def tokenizer_health(model: AdaptiveTokenizer):
    """The tokenizer's health on the fixed clips: its encoder's continuous latents as rows
    (b·t·h·w, d), and the codebook usage and perplexity of the codes of the kept tokens."""
    def measure(batch: dict) -> dict[str, float]:
        video = batch["video"]
        latents = in_eval_mode(model, lambda: model.tokenizer.encode_continuous(video))    # (b, d, t, h, w)
        output = in_eval_mode(model, lambda: model(video))
        codes = codebook_statistics(output.quantized.indices[output.selection > 0.5],
                                    model.tokenizer.quantizer.codebook_size)
        return (feature_statistics(rearrange(latents, "b d t h w -> (b t h w) d"))
                | {"health/codebook_usage": codes["codebook_usage"], "health/perplexity": codes["perplexity"]})
    return measure


def _latent_tokens(output) -> tuple[int, int]:
    """Latent tokens per clip, encoded and decoded (every one of the latent grid)."""
    tokens = output.selection[0].numel()
    return tokens, tokens


def _training_batches(trainer: Trainer, pipeline: DataPipeline, dataset, clips, batch_size: int, seed: int):
    """Batches from shards (``dataset``, through the data pipeline) or a procedural generator
    (``clips``), positioned where the checkpoint left off."""
    if (dataset is None) == (clips is None):
        raise ValueError("pretrain_tokenizer_loop needs exactly one of `dataset` (shards) or "
                         "`clips` (a procedural clips.* generator)")
    if clips is not None:
        return trainer.data(GeneratedBatches(lambda generator: clips.batch(batch_size, generator),
                                            torch.Generator().manual_seed(seed)))
    return trainer.train_loader(pipeline, dataset.prepare(), batch_size, seed)


def _evaluation_batch(pipeline: DataPipeline, dataset, clips, count: int, seed: int) -> dict:
    if clips is not None:
        return clips.batch(count, torch.Generator().manual_seed(seed + _EVAL_SEED_OFFSET))
    for batch in eval_loader(pipeline, dataset.prepare(), "val", count, pipeline.clip_frames, pipeline.size, 1, 1):
        return batch
    raise ValueError("pretrain_tokenizer: the dataset's val split is empty")


@torch.no_grad()
def evaluate(model: AdaptiveTokenizer, batch: dict, data_range: float | None,
             chunk: int = 16) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Metrics on the fixed evaluation clips, and the tensors to draw."""
    was_training = model.training
    model.eval()
    outputs = [model(video) for video in batch["video"].split(chunk)]
    model.train(was_training)
    recon = torch.cat([o.recon for o in outputs])
    selection = torch.cat([o.selection for o in outputs])
    indices = torch.cat([o.quantized.indices for o in outputs])
    video = batch["video"]
    metrics = {"recon_loss": float((recon - video).pow(2).mean()),
               "psnr": float(psnr(recon, video, data_range)),
               "selected_fraction": float(selection.mean()),
               **codebook_statistics(indices[selection > 0.5], model.tokenizer.quantizer.codebook_size)}
    if "object_coverage" in batch:
        metrics["object_recall"] = selection_recall(selection, batch["object_coverage"])
    if model.scorer is not None:
        random_loss = random_selection_recon_loss(model, batch["video"], chunk)
        metrics["random_selection_recon_loss"] = random_loss
        metrics["selection_gain"] = random_loss - metrics["recon_loss"]
    scores = (torch.cat([o.scores for o in outputs]) if outputs[0].scores is not None else None)
    return metrics, {"video": video, "recon": recon, "selection": selection, "scores": scores}


@torch.no_grad()
def random_selection_recon_loss(model: AdaptiveTokenizer, video: torch.Tensor, chunk: int) -> float:
    """The reconstruction loss when the same number of tokens is kept at random (frame 0
    still kept), averaged over fixed draws: what the learned selection must beat."""
    tokenizer, losses = model.tokenizer, []
    grid = tokenizer.check_video(video)
    for draw in range(_RANDOM_SELECTION_DRAWS):
        generator = torch.Generator().manual_seed(draw)
        total = 0.0
        for clips in video.split(chunk):
            scores = torch.rand(clips.shape[0], *grid, generator=generator).to(clips.device)
            selection = model.topk.select_on_grid(scores, model.selected_count(grid))
            latents = tokenizer.encode_continuous(clips) * selection[:, None]
            recon = tokenizer.decode(tokenizer.quantize(latents).codes)
            total += float((recon - clips).pow(2).sum())
        losses.append(total / video.numel())
    return sum(losses) / len(losses)


def _attach_images(run, step: int, drawn: dict[str, torch.Tensor]) -> list[str]:
    names = []
    with tempfile.TemporaryDirectory() as folder:
        name = f"reconstructions_step{step:06d}.png"
        run.add_artifact(save_reconstructions(os.path.join(folder, name), drawn["video"], drawn["recon"]), name)
        names.append(name)
        if drawn["scores"] is not None:
            name = f"scores_step{step:06d}.png"
            run.add_artifact(save_score_maps(os.path.join(folder, name), drawn["video"],
                                             drawn["scores"], drawn["selection"]), name)
            names.append(name)
    return names


@gin_applies
def pretrain_tokenizer_loop(run, seed: int, model: AdaptiveTokenizer = gin.REQUIRED, dataset=None,
                            clips=None, discriminator: nn.Module | None = None,
                            train_scorer: bool = True,
                            batch_size: int = 16, steps: int = 200, lr: float = 1e-3,
                            weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.99),
                            warmup_steps: int = 10, clip_grad: float = 1.0,
                            gan_weight: float = 0.1, r1_weight: float = 10.0, gan_start_step: int = 0,
                            log_every: int = 10, eval_every: int = 50, eval_clips: int = 32,
                            checkpoint_every: int = 100, checkpoint_minutes: float = 10.0,
                            psnr_data_range: float | None = None,
                            workdir: str = "outputs/default", precision: Precision = "auto",
                            device: str = "auto", exit_after_step: int = 0,
                            pipeline: DataPipeline | None = None) -> dict:
    """Trains ``model`` (a ``model.adaptive_tokenizer``) on the training engine; returns the
    first and last evaluation metrics and the checkpoint path. Evaluations run at the start
    step (before training), every ``eval_every`` steps and at the end, on ``eval_clips`` fixed
    clips. ``train_scorer=False`` freezes the scorer (a heuristic scorer, or the control of the
    scorer-learns test). With a ``discriminator``, the adversarial terms (generator loss and
    discriminator updates) start after step ``gan_start_step`` (MAGVIT's schedule: the
    autoencoder first learns to reconstruct). Shards are read through ``pipeline`` (default:
    the gin-bound ``data_pipeline``). The run works in ``workdir/tokenizer/<run id>``."""
    if min(steps, batch_size, eval_every, eval_clips) < 1:
        raise ValueError("pretrain_tokenizer_loop: steps, batch_size, eval_every and eval_clips must be ≥ 1")
    if gan_start_step < 0:
        raise ValueError(f"pretrain_tokenizer_loop.gan_start_step must be ≥ 0, got {gan_start_step}")
    settings = Settings("pretrain_tokenizer_loop", steps, 1, clip_grad, warmup_steps, 0.0, log_every,
                        checkpoint_every, checkpoint_minutes, precision, exit_after_step)
    trainer = Trainer(run, seed, command="pretrain_tokenizer", stage=STAGE, workdir=workdir,
                      settings=settings, batch_size=batch_size, device=device)
    if not train_scorer and model.scorer is not None:
        model.scorer.requires_grad_(False)
    selection_generator = torch.Generator().manual_seed(seed + 1)
    tracked = {"selection": selection_generator}
    if discriminator is not None:
        discriminator.to(trainer.device)
        disc_optimizer = build_optimizer(discriminator, lr, weight_decay, betas)
        tracked.update(discriminator=discriminator, disc_optimizer=disc_optimizer)
    trainer.prepare(model, lambda module: build_optimizer(module, lr, weight_decay, betas), tracked=tracked)
    trainer.extra_state = lambda: {"tokenizer_config": model.config()}
    pipeline = pipeline if pipeline is not None or dataset is None else DataPipeline()
    batches = _training_batches(trainer, pipeline, dataset, clips, batch_size, seed)
    eval_batch = to_device(_evaluation_batch(pipeline, dataset, clips, eval_clips, seed), trainer.device)
    images: list[str] = []

    def run_evaluation(step: int) -> dict[str, float]:
        metrics, drawn = evaluate(model, eval_batch, psnr_data_range)
        trainer.log(step, **{f"eval/{name}": value for name, value in metrics.items()})
        if trainer.run is not None:
            images.extend(_attach_images(trainer.run, step, {k: v.cpu() if v is not None else None
                                                            for k, v in drawn.items()}))
        return metrics

    def step(batch: dict, index: int):
        output = trainer.forward(batch["video"], selection_generator)
        losses = dict(output.losses)
        if discriminator is not None and index > gan_start_step:
            losses["gan_loss"] = gan_weight * generator_gan_loss(discriminator(output.recon))
            losses["loss"] = losses["loss"] + losses["gan_loss"]
        return losses, output

    def after_step(index: int, batch: dict, losses: dict, output) -> dict[str, torch.Tensor]:
        video, extra = batch["video"], {}
        if discriminator is not None and index > gan_start_step:
            real = video.detach().requires_grad_(True)
            real_logits = discriminator(real)
            extra["disc_loss"] = discriminator_gan_loss(real_logits, discriminator(output.recon.detach()))
            extra["r1_penalty"] = r1_penalty(real_logits, real)
            disc_optimizer.zero_grad(set_to_none=True)
            (extra["disc_loss"] + r1_weight * extra["r1_penalty"]).backward()
            disc_optimizer.step()
        if trainer.log_due(index):
            extra.update(psnr=psnr(output.recon.detach(), video, psnr_data_range),
                         selected_fraction=output.selection.detach().mean())
        if index % eval_every == 0 and index != steps:
            run_evaluation(index)
        return extra

    first_eval = run_evaluation(trainer.start_step)
    trainer.monitors.append(HealthMonitor(trainer.run, tokenizer_health(model), steps, trainer.info.is_main))
    # The 3-D CNN has no analytic FLOP model: its FLOPs are counted once (efficiency.counted_work).
    result = trainer.fit(step, batches, after_step, "pretrain_tokenizer", work=counted_work(model, _latent_tokens))
    last_eval = run_evaluation(steps) if trainer.start_step < steps else first_eval
    return {"first_eval": first_eval, "last_eval": last_eval, "checkpoint": result["checkpoint"],
            "images": images, "start_step": trainer.start_step, "run_folder": result["run_folder"]}


@ex.command
def pretrain_tokenizer(_run, seed):
    """Trains the adaptive tokenizer + scorer (configure with -g/-b gin files and bindings)."""
    result = pretrain_tokenizer_loop(_run, seed)
    _run.info["checkpoint"] = result["checkpoint"]
    attach_operative_config(_run)
    first, last = result["first_eval"], result["last_eval"]
    print(f"tokenizer PSNR: first evaluation {first['psnr']:.2f} dB → last {last['psnr']:.2f} dB; "
          f"codebook usage {last['codebook_usage']:.4f} (perplexity {last['perplexity']:.1f})")
    if "object_recall" in last:
        print(f"scorer object recall: {first['object_recall']:.3f} → {last['object_recall']:.3f}")
    print(f"checkpoint: {result['checkpoint']}")
    return result

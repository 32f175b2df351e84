"""``python run.py pretrain_tokenizer``: trains the adaptive tokenizer (tokenizer + learned
scorer + differentiable top-k, optionally a discriminator) on 16-frame clips.

Logs reconstruction loss, PSNR, codebook usage and perplexity, the selected fraction (and the
object recall on procedural flicker clips); attaches reconstructions and score heat-maps as
PNG; checkpoints atomically every ``checkpoint_every`` steps and resumes from the last one.
"""
from __future__ import annotations

import os
import tempfile
from typing import Iterator

import gin
import torch
from torch import nn

from lvmae.components.data.flicker_clips import selection_recall
from lvmae.components.models.adaptive_tokenizer import AdaptiveTokenizer
from lvmae.components.models.video_discriminator import discriminator_gan_loss, generator_gan_loss, r1_penalty
from lvmae.experiments.commands.experiment import attach_operative_config, ex
from lvmae.experiments.engine.gin_config import gin_applies
from lvmae.experiments.reporting.tokenizer_images import save_reconstructions, save_score_maps
from lvmae.experiments.engine.training import (ScalarLogger, build_optimizer, load_checkpoint, save_checkpoint,
                                  warmup_cosine)

CHECKPOINT_NAME = os.path.join("tokenizer", "last.pt")
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


def _training_batches(dataset, clips, batch_size: int, seed: int, generator: torch.Generator,
                      skip: int) -> Iterator[dict]:
    """Endless batches from shards (``dataset``) or a procedural generator (``clips``);
    ``skip`` batches are dropped on resume so a resumed run sees the data it would have."""
    if (dataset is None) == (clips is None):
        raise ValueError("pretrain_tokenizer_loop needs exactly one of `dataset` (shards) or "
                         "`clips` (a procedural clips.* generator)")
    if clips is not None:
        while True:   # the generator's state is checkpointed, so no batch needs skipping
            yield clips.batch(batch_size, generator)
    from lvmae.components.data.shards import repeat_batches   # the data package is optional here
    batches = repeat_batches(dataset.prepare().urls("train"), batch_size, 256, seed)
    for _ in range(skip):
        next(batches)
    yield from batches


def _evaluation_batch(dataset, clips, count: int, seed: int) -> dict:
    if clips is not None:
        return clips.batch(count, torch.Generator().manual_seed(seed + _EVAL_SEED_OFFSET))
    from lvmae.components.data.shards import stream_batches
    for batch in stream_batches(dataset.prepare().urls("val"), count):
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
                            gan_weight: float = 0.1, r1_weight: float = 10.0,
                            log_every: int = 10, eval_every: int = 50, eval_clips: int = 32,
                            checkpoint_every: int = 100, resume: bool = True,
                            psnr_data_range: float | None = None,
                            workdir: str = "outputs/default") -> dict:
    """Trains ``model`` (a ``model.adaptive_tokenizer``); returns the first and last evaluation
    metrics and the checkpoint path. Evaluations run at step 0 (before training), every
    ``eval_every`` steps and at the end, on ``eval_clips`` fixed clips. ``train_scorer=False``
    freezes the scorer (a heuristic scorer, or the control of the scorer-learns test)."""
    if min(steps, batch_size, eval_every, eval_clips, checkpoint_every) < 1:
        raise ValueError("pretrain_tokenizer_loop: steps, batch_size, eval_every, eval_clips and "
                         "checkpoint_every must be ≥ 1")
    torch.manual_seed(seed)
    if not train_scorer and model.scorer is not None:
        model.scorer.requires_grad_(False)
    data_generator = torch.Generator().manual_seed(seed)
    selection_generator = torch.Generator().manual_seed(seed + 1)
    optimizer = build_optimizer(model, lr, weight_decay, betas)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, warmup_steps))
    disc_optimizer = (build_optimizer(discriminator, lr, weight_decay, betas)
                      if discriminator is not None else None)
    path = os.path.join(workdir, CHECKPOINT_NAME)
    start = 0
    if resume and os.path.isfile(path):
        state = load_checkpoint(path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if discriminator is not None:
            if "discriminator" not in state:
                raise ValueError(f"checkpoint {path!r} has no discriminator but one is configured")
            discriminator.load_state_dict(state["discriminator"])
            disc_optimizer.load_state_dict(state["disc_optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        data_generator.set_state(state["rng"]["data"])
        selection_generator.set_state(state["rng"]["selection"])
        start = int(state["step"])
        print(f"resuming tokenizer training from {path} at step {start}")
        if run is not None:
            run.info["resumed_from_step"] = start

    def checkpoint(step: int) -> str:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "schedule": schedule.state_dict(), "step": step,
                 "rng": {"torch": torch.get_rng_state(), "data": data_generator.get_state(),
                         "selection": selection_generator.get_state()},
                 "tokenizer_config": model.config(), "gin_config": gin.operative_config_str(),
                 "run_id": getattr(run, "_id", None)}
        if discriminator is not None:
            state["discriminator"] = discriminator.state_dict()
            state["disc_optimizer"] = disc_optimizer.state_dict()
        return save_checkpoint(path, state)

    eval_batch = _evaluation_batch(dataset, clips, eval_clips, seed)
    logger = ScalarLogger(run, steps, log_every, "pretrain_tokenizer")
    logger.bar.update(start)
    images: list[str] = []

    def run_evaluation(step: int) -> dict[str, float]:
        metrics, drawn = evaluate(model, eval_batch, psnr_data_range)
        logger.log(step, **{f"eval/{name}": value for name, value in metrics.items()})
        if run is not None:
            images.extend(_attach_images(run, step, drawn))
        return metrics

    first_eval = run_evaluation(start)
    batches = _training_batches(dataset, clips, batch_size, seed, data_generator, skip=start)
    model.train()
    for step in range(start + 1, steps + 1):
        video = next(batches)["video"]
        output = model(video, selection_generator)
        losses = dict(output.losses)
        if discriminator is not None:
            losses["gan_loss"] = gan_weight * generator_gan_loss(discriminator(output.recon))
            losses["loss"] = losses["loss"] + losses["gan_loss"]
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(f"tokenizer loss is {losses['loss'].item()} at step {step}; "
                                     f"the last good checkpoint is {path}")
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        lr_now = schedule.get_last_lr()[0]
        optimizer.step()
        schedule.step()
        if discriminator is not None:
            real = video.detach().requires_grad_(True)
            real_logits = discriminator(real)
            losses["disc_loss"] = discriminator_gan_loss(real_logits, discriminator(output.recon.detach()))
            losses["r1_penalty"] = r1_penalty(real_logits, real)
            disc_optimizer.zero_grad(set_to_none=True)
            (losses["disc_loss"] + r1_weight * losses["r1_penalty"]).backward()
            disc_optimizer.step()
        if logger.due(step):
            logger.log(step, **{f"train/{name}": value.item() for name, value in losses.items()},
                       **{"train/psnr": psnr(output.recon.detach(), video, psnr_data_range).item(),
                          "train/selected_fraction": output.selection.detach().mean().item(),
                          "train/lr": lr_now, "train/grad_norm": grad_norm.item()})
        if step % checkpoint_every == 0 or step == steps:
            checkpoint(step)
        if step % eval_every == 0 and step != steps:
            run_evaluation(step)
        logger.bar.update()
    logger.close()
    last_eval = run_evaluation(steps) if start < steps else first_eval
    if start >= steps:
        checkpoint(steps)
    return {"first_eval": first_eval, "last_eval": last_eval, "checkpoint": path, "images": images,
            "start_step": start}


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

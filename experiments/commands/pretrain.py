"""``python run.py pretrain``: MAE pre-training with dual masking.

Resumable without drift: a step-based checkpoint holds the model (unwrapped), optimizer,
scheduler, every rank's RNG state, the data position (micro-batches consumed), the operative
gin config and the Sacred run id. Masks are drawn from a generator re-seeded from
(seed, rank, step), so a resumed run draws the masks the uninterrupted run would have.
Resume into the *same* run with ``--id <run id>`` (see docs/training.md).
"""
from __future__ import annotations

import contextlib
import itertools
import os
from typing import Literal

import gin
import torch

from lvmae.components.data.shards import repeat_batches
from lvmae.experiments.commands.experiment import attach_operative_config, ex
from lvmae.experiments.engine.gin_config import gin_applies
from lvmae.experiments.engine.gin_config import operative_config
from lvmae.experiments.engine.parallel import Parallel, full_state, load_full_state, wrap_model
from lvmae.experiments.engine.training import (ScalarLogger, build_optimizer, gather_objects, load_checkpoint,
                                  mean_across_ranks, rng_state, save_checkpoint, set_rng_state,
                                  setup_distributed, step_generator, unwrap, warmup_cosine)

Precision = Literal["auto", "fp32", "bf16"]
CHECKPOINT_NAME = "last.pt"
# Exit status of a deliberate crash (``exit_after_step``): what a SIGKILL-ed process returns.
_CRASH_STATUS = 137


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _flush_and_truncate_metrics(run, step: int) -> None:
    """Makes metrics durable up to the checkpoint (heartbeat) and, on resume, asks observers
    that can to drop points logged after it, so a resumed run's series has no duplicates."""
    if run is None:
        return
    for observer in getattr(run, "observers", []):
        truncate = getattr(observer, "truncate_metrics", None)
        if truncate is not None:
            truncate(after_step=step)


def _heartbeat(run) -> None:
    emit = getattr(run, "_emit_heartbeat", None)
    if emit is not None:
        emit()


@gin_applies
def pretrain_loop(run, seed: int, model=gin.REQUIRED, dataset=gin.REQUIRED,
                  batch_size: int = 8, accum_steps: int = 1, steps: int = 100, lr: float = 1.5e-4,
                  weight_decay: float = 0.05, betas: tuple[float, float] = (0.9, 0.95),
                  warmup_steps: int = 10, min_lr_ratio: float = 0.0, clip_grad: float = 1.0,
                  log_every: int = 10, checkpoint_every: int = 0, visualize_every: int = 0,
                  shuffle_buffer: int = 256, workdir: str = "outputs/default", resume: bool = True,
                  init_from: str | None = None, precision: Precision = "auto", device: str = "auto",
                  parallel: Parallel = "ddp", compile: bool = False, deterministic: bool = False,
                  exit_after_step: int = 0) -> dict:
    """Trains ``model`` (a ``model.mae``) on the train split of ``dataset``.

    Args:
      batch_size: clips per process per micro-batch; the effective batch is
        batch_size × accum_steps × world size (logged as ``effective_batch_size``).
      checkpoint_every: steps between checkpoints (0: only at the end).
      visualize_every: steps between reconstruction PNGs attached to the run (0: never).
      resume: continue from ``workdir/pretrain/last.pt`` when it exists.
      init_from: a ``transformers`` VideoMAEForPreTraining checkpoint (.bin/.safetensors) to
        start from (ignored when resuming).
      precision: ``auto`` = bf16 autocast on GPU, fp32 on CPU.
      parallel: engine when launched by torchrun with several processes.
      deterministic: ``torch.use_deterministic_algorithms`` (bit-exact resume checks).
      exit_after_step: crash-test hook — the process dies (status 137) right after this step.

    Returns the first and last logged loss, the checkpoint path and the step resumed from.
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"pretrain_loop.precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    if accum_steps < 1 or steps < 1:
        raise ValueError("pretrain_loop.accum_steps and pretrain_loop.steps must be ≥ 1")
    if deterministic:
        torch.use_deterministic_algorithms(True)
    info = setup_distributed(device)
    run = run if info.is_main else None
    torch.manual_seed(seed + info.rank)
    use_bf16 = precision == "bf16" or (precision == "auto" and info.device.type == "cuda")
    manifest = dataset.prepare()
    model = model.to(info.device)
    checkpoint_path = os.path.join(workdir, "pretrain", CHECKPOINT_NAME)
    start_step, micro_batches, state = 0, 0, None
    if resume and os.path.isfile(checkpoint_path):
        state = load_checkpoint(checkpoint_path)
        _check_resumable(state, checkpoint_path, info.world_size, batch_size, accum_steps)
        start_step, micro_batches = int(state["step"]), int(state["micro_batches"])
        if int(state["seed"]) != seed:     # the data order and masks derive from the seed
            print(f"resuming with the checkpoint's seed {state['seed']} (this run was given {seed})")
            seed = int(state["seed"])
    elif init_from:
        from lvmae.components.models.hf_videomae import load_hf_checkpoint, mae_from_hf
        missing, unexpected = model.load_state_dict(mae_from_hf(load_hf_checkpoint(init_from)), strict=False)
        if unexpected:
            raise ValueError(f"pretrain_loop.init_from={init_from!r}: unexpected tensors {unexpected}")
        print(f"initialised from {init_from} ({len(missing)} tensors left at their initialisation)")
    wrapped = wrap_model(model, info, parallel)
    optimizer = build_optimizer(wrapped, lr, weight_decay, betas)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, warmup_steps, min_lr_ratio))
    if state is not None:
        load_full_state(wrapped, optimizer, state["model"], state["optimizer"], info, parallel)
        schedule.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"][info.rank])
        _note_resume(run, state, checkpoint_path)
    forward = torch.compile(wrapped) if compile else wrapped
    effective_batch = batch_size * accum_steps * info.world_size
    if run is not None:
        run.info.update({"effective_batch_size": effective_batch, "world_size": info.world_size,
                         "accum_steps": accum_steps, "parallel": parallel if info.enabled else "none",
                         "precision": "bf16" if use_bf16 else "fp32"})
    # Precomputed token-grid fields (run.py precompute) hold for the manifest's view only:
    # read exactly those frames so latents/indices/scores line up with the clip.
    view = {"view": manifest.view} if manifest.fields else {}
    batches = repeat_batches(manifest.urls("train"), batch_size, shuffle_buffer, seed, **view)
    # The data position: skip what the interrupted run consumed (the stream is deterministic).
    batches = itertools.islice(batches, micro_batches, None)
    mask_generator = torch.Generator(device=info.device)
    logger = ScalarLogger(run, steps, log_every, "pretrain", initial=start_step, show=info.is_main)
    wrapped.train()
    clips_since_log = 0
    losses = {}
    for step in range(start_step + 1, steps + 1):
        optimizer.zero_grad(set_to_none=True)
        step_generator(mask_generator, seed, info.rank, step)
        for micro in range(accum_steps):
            batch = _to_device(next(batches), info.device)
            micro_batches += 1
            sync = micro == accum_steps - 1 or not hasattr(wrapped, "no_sync")
            with (contextlib.nullcontext() if sync else wrapped.no_sync()), \
                    torch.autocast(info.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                losses, plan, prediction = forward(batch, mask_generator)
            (losses["loss"] / accum_steps).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(wrapped.parameters(), clip_grad)
        lr_now = schedule.get_last_lr()[0]
        optimizer.step()
        schedule.step()
        clips_since_log += effective_batch
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(f"pre-training loss is {losses['loss'].item()} at step {step}; "
                                     f"the last good checkpoint is {checkpoint_path}")
        if logger.due(step):
            scalars = {f"train/{name}": mean_across_ranks(value, info) for name, value in losses.items()}
            logger.log(step, **scalars, **{"train/lr": lr_now, "train/grad_norm": float(grad_norm),
                                           "train/clips_per_s": clips_since_log / logger.seconds_since_last()})
            clips_since_log = 0
        # Every run ends with a picture of its masks and reconstruction (and score maps).
        if info.is_main and (step == steps or (visualize_every and step % visualize_every == 0)):
            from lvmae.experiments.reporting.reconstruction_grid import attach_reconstruction
            from lvmae.experiments.reporting.visuals import attach_score_maps
            attach_reconstruction(run, unwrap(wrapped), batch, plan, prediction,
                                  os.path.join(workdir, "pretrain", f"reconstruction_{step:07d}.png"))
            attach_score_maps(run, batch)
        if step == steps or (checkpoint_every and step % checkpoint_every == 0):
            _checkpoint(checkpoint_path, wrapped, optimizer, schedule, step, micro_batches, seed,
                        info, parallel, run, batch_size, accum_steps)
        if step == exit_after_step:
            os._exit(_CRASH_STATUS)    # simulate a kill: no clean-up, no observer completion
        logger.bar.update()
    logger.close()
    if start_step >= steps:
        print(f"checkpoint {checkpoint_path} is already at step {start_step} ≥ steps={steps}")
    history = logger.history.get("train/loss", [(start_step, float("nan"))])
    return {"first_loss": history[0][1], "final_loss": history[-1][1], "checkpoint": checkpoint_path,
            "resumed_from": start_step, "model": unwrap(wrapped)}


def _check_resumable(state: dict, path: str, world_size: int, batch_size: int, accum_steps: int) -> None:
    """The data position is only exact when the batch layout is unchanged."""
    saved = {k: state.get(k) for k in ("world_size", "batch_size", "accum_steps")}
    now = {"world_size": world_size, "batch_size": batch_size, "accum_steps": accum_steps}
    if saved != now:
        raise ValueError(f"cannot resume {path!r}: it was written with {saved}, this run has {now}; "
                         "use the same layout or start a new workdir")


def _note_resume(run, state: dict, path: str) -> None:
    step = int(state["step"])
    print(f"resuming from {path} at step {step}")
    if run is None:
        return
    run.info["resumed_from_step"] = step
    saved_id, current_id = state.get("run_id"), getattr(run, "_id", None)
    if saved_id is not None and current_id is not None and str(saved_id) != str(current_id):
        print(f"note: the checkpoint belongs to run {saved_id}, this is run {current_id}; pass "
              f"--id {saved_id} to continue the same run's metrics")
    _flush_and_truncate_metrics(run, step)


def _checkpoint(path, wrapped, optimizer, schedule, step, micro_batches, seed, info, parallel, run,
                batch_size, accum_steps) -> None:
    model_state, optimizer_state = full_state(wrapped, optimizer, info, parallel)
    rng = gather_objects(rng_state(), info)
    if not info.is_main:
        return
    save_checkpoint(path, {
        "model": model_state, "optimizer": optimizer_state, "scheduler": schedule.state_dict(),
        "step": step, "micro_batches": micro_batches, "seed": seed, "rng": rng,
        "world_size": info.world_size,
        "batch_size": batch_size, "accum_steps": accum_steps,
        "run_id": getattr(run, "_id", None), "gin_config": operative_config()})
    _heartbeat(run)


@ex.command
def pretrain(_run, seed):
    """Pre-trains a video MAE (configure with -g/-b gin files and bindings)."""
    result = pretrain_loop(_run, seed)
    result.pop("model")
    if int(os.environ.get("RANK", "0")) == 0:
        _run.info["checkpoint"] = result["checkpoint"]
        attach_operative_config(_run)
        print(f"pre-training loss: first {result['first_loss']:.4f} → final {result['final_loss']:.4f}")
        print(f"checkpoint: {result['checkpoint']}")
    return result

"""``python run.py pretrain``: MAE pre-training with dual masking, on the training engine.

The engine (``experiments/engine/trainer.py``, docs/training.md) gives the run its folder
``WORKDIR/pretrain/<run id>``, device, precision, DDP/FSDP2, accumulation, checkpoints (by
wall time, atomic, the last two kept) and explicit resume (``--resume-run <run id>``). Masks
are drawn from a generator re-seeded from (seed, rank, step), so a resumed run draws the masks
the uninterrupted run would have. This module keeps only the model's step and its pictures.
"""
from __future__ import annotations

import os

import gin
import torch

from lvmae.components.data.reading.pipeline import DataPipeline
from lvmae.experiments.commands.experiment import attach_operative_config, ex
from lvmae.experiments.engine.efficiency import mae_work
from lvmae.experiments.engine.gin_config import gin_applies
from lvmae.experiments.engine.health import HealthMonitor, mae_health
from lvmae.experiments.engine.online_probe import OnlineProbe
from lvmae.experiments.engine.parallel import Parallel
from lvmae.experiments.engine.trainer import Precision, Settings, Trainer, check_input_size
from lvmae.experiments.engine.training import build_optimizer, step_generator

STAGE = "pretrain"


@gin_applies
def pretrain_loop(run, seed: int, model=gin.REQUIRED, dataset=gin.REQUIRED,
                  batch_size: int = 8, accum_steps: int = 1, steps: int = 100, lr: float = 1.5e-4,
                  weight_decay: float = 0.05, betas: tuple[float, float] = (0.9, 0.95),
                  warmup_steps: int = 10, min_lr_ratio: float = 0.0, clip_grad: float = 1.0,
                  log_every: int = 10, checkpoint_every: int = 0, checkpoint_minutes: float = 10.0,
                  visualize_every: int = 0, pipeline: DataPipeline | None = None,
                  shuffle_buffer: int | None = None, workdir: str = "outputs/default",
                  init_from: str | None = None, precision: Precision = "auto", device: str = "auto",
                  parallel: Parallel = "ddp", compile: bool = False, deterministic: bool = False,
                  exit_after_step: int = 0) -> dict:
    """Trains ``model`` (a ``model.mae``) on the train split of ``dataset``.

    Args:
      batch_size: clips per process per micro-batch; the effective batch is
        batch_size × accum_steps × world size (logged as ``effective_batch_size``).
      checkpoint_every: steps between checkpoints (0: not by steps).
      checkpoint_minutes: wall-clock minutes between checkpoints (0: not by time); there is
        always one at the end.
      visualize_every: steps between reconstruction PNGs attached to the run (0: never).
      pipeline: the data pipeline (default: the gin-bound ``data_pipeline``); its clips must
        have the model's frames and size. ``shuffle_buffer`` overrides its buffer.
      init_from: a ``transformers`` VideoMAEForPreTraining checkpoint (.bin/.safetensors) to
        start from (ignored when resuming).
      precision: ``auto`` = bf16 autocast on GPU, fp32 on CPU.
      parallel: engine when launched by torchrun with several processes.
      deterministic: ``torch.use_deterministic_algorithms`` (bit-exact resume checks).
      exit_after_step: crash-test hook — the process dies (status 137) right after this step.

    Returns the first and last logged loss, the checkpoint path and the step resumed from.
    """
    settings = Settings("pretrain_loop", steps, accum_steps, clip_grad, warmup_steps, min_lr_ratio,
                        log_every, checkpoint_every, checkpoint_minutes, precision, exit_after_step)
    trainer = Trainer(run, seed, command="pretrain", stage=STAGE, workdir=workdir, settings=settings,
                      batch_size=batch_size, device=device, parallel=parallel, compile=compile,
                      deterministic=deterministic)
    manifest = dataset.prepare()
    if init_from and not trainer.resuming:
        _init_from_videomae(model, init_from)
    trainer.prepare(model, lambda module: build_optimizer(module, lr, weight_decay, betas))
    # Precomputed token-grid fields (run.py precompute) are read with the frames and crop of
    # the view they were computed on: the pipeline's job.
    batches = trainer.train_loader(pipeline, manifest, batch_size, seed, shuffle_buffer)
    check_input_size(batches.pipeline, model.encoder, "pretrain_loop")
    mask_generator = torch.Generator(device=trainer.device)

    def step(batch: dict, index: int):
        step_generator(mask_generator, seed, trainer.info.rank, index)
        losses, plan, prediction = trainer.forward(batch, mask_generator)
        return losses, (plan, prediction)

    def pictures(index: int, batch: dict, losses: dict, outputs) -> None:
        # Every run ends with a picture of its masks and reconstruction (and score maps).
        if trainer.info.is_main and (index == steps or (visualize_every and index % visualize_every == 0)):
            from lvmae.experiments.reporting.reconstruction_grid import attach_reconstruction
            from lvmae.experiments.reporting.visuals import attach_score_maps
            plan, prediction = outputs
            attach_reconstruction(trainer.run, trainer.unwrapped(), batch, plan, prediction,
                                  os.path.join(trainer.folder, f"reconstruction_{index:07d}.png"))
            attach_score_maps(trainer.run, batch)

    trainer.monitors.append(HealthMonitor(trainer.run, mae_health(trainer.unwrapped()), steps, trainer.info.is_main))
    probe = OnlineProbe(trainer.unwrapped().encoder, steps, trainer.device, precision)
    if probe.enabled:
        trainer.monitors.append(probe)
    result = trainer.fit(step, batches, pictures, "pretrain", work=mae_work(trainer.unwrapped()))
    return {**result, "model": trainer.unwrapped()}


def _init_from_videomae(model, path: str) -> None:
    from lvmae.components.models.hf_videomae import load_hf_checkpoint, mae_from_hf
    missing, unexpected = model.load_state_dict(mae_from_hf(load_hf_checkpoint(path)), strict=False)
    if unexpected:
        raise ValueError(f"pretrain_loop.init_from={path!r}: unexpected tensors {unexpected}")
    print(f"initialised from {path} ({len(missing)} tensors left at their initialisation)")


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

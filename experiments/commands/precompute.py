"""``python run.py precompute``: the frozen adaptive tokenizer + scorer over every clip, once.

Runs a ``pretrain_tokenizer`` checkpoint window by window (``window_frames`` = 16 frames,
stride 16, concatenated along time) over one fixed *view* of every clip of a dataset's splits —
the data pipeline's evaluation view (``data_pipeline``: centred window of ``view_frames``
under its short-clip policy, short side resized, centred square; docs/data.md §4) — and writes
``latents`` (float16 by default), ``indices`` and ``scores`` beside each clip into new shards
(``components/data/writing/fields.py:add_fields``), each sample's json recording its view, with a new
manifest declaring the fields. MAE pre-training then reads them as
``batch["latents"|"indices"|"scores"]`` (targets ``tokenizer_latents``/``token_ids``, decoder
masking ``adaptive``), through the same pipeline, which decodes exactly that view.

A clip that gives no view (corrupt, or shorter than the window under ``short_policy='skip'``)
is left out, logged and counted; the counts go to the run (``info["data_skipped"]`` and the
metrics ``data/skipped_<reason>``) and into the printed report — one bad clip never aborts.

Axis legend: C channels, T/H/W pixels of the view, d latent width, t/h/w token grid.

Policy for each window's first latent frame (docs/tokenizer.md, "precompute"): a scorer
compares a latent frame with the one before it, and each window is scored alone (as the
scorer was trained), so latent frame 0 of every window has no score of its own. It gets the
scorer's ``first_frame`` rule, overridden here by ``first_frame`` (default ``next``: a copy of
the window's latent frame 1). ``zero`` would bar one latent frame in eight from the top part
of adaptive masking in a 128-frame clip; ``max`` would always put them first.

Source shards are only read: fields go to copies under ``out_dir`` (refused if it is the source
folder), shard by shard through a temporary name, so an interrupted run resumes; a rerun with
another checkpoint or view into the same ``out_dir`` is refused instead of mixing fields.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from typing import Literal

import gin
import numpy as np
import torch
from tqdm import tqdm

from lvmae.components.data.formats.manifest import View, load_manifest
from lvmae.components.data.reading.batch_streams import to_video_tensor
from lvmae.components.data.reading.pipeline import DataPipeline
from lvmae.components.data.writing.fields import add_fields
from lvmae.components.models.adaptive_tokenizer import AdaptiveTokenizer, rebuild_adaptive_tokenizer
from lvmae.components.scorers.base import FirstFrame, check_choice
from lvmae.experiments import program
from lvmae.experiments.commands.experiment import attach_operative_config, ex
from lvmae.experiments.engine.gin_config import gin_applies
from lvmae.experiments.engine.training import load_checkpoint

LatentDtype = Literal["float16", "float32"]
_LATENT_DTYPES = {"float16": np.float16, "float32": np.float32}
# Written into out_dir: what the fields were computed with, checked on every rerun.
PROVENANCE_NAME = "precompute.json"
# FSQ indices fit in int32 for any codebook up to 2^31 codes (the paper's is 2^18).
_INDEX_DTYPE = np.int32


def load_frozen_tokenizer(checkpoint: str) -> tuple[AdaptiveTokenizer, dict]:
    """A ``pretrain_tokenizer`` checkpoint → (frozen tokenizer + scorer in eval mode, its state)."""
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"precompute_job.checkpoint {checkpoint!r} does not exist: run "
                                f"`{program.name()} pretrain_tokenizer` first")
    state = load_checkpoint(checkpoint)
    if "tokenizer_config" not in state:
        raise ValueError(f"precompute_job.checkpoint {checkpoint!r} is not a pretrain_tokenizer "
                         "checkpoint (no 'tokenizer_config')")
    model = rebuild_adaptive_tokenizer(state["tokenizer_config"], state["model"]).eval()
    model.requires_grad_(False)
    return model, state


def weights_digest(state_dict: dict) -> str:
    """sha256 of the weights (not of the file: a resumed run rewrites the file with a new run id)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def window_scores(model: AdaptiveTokenizer, video: torch.Tensor) -> torch.Tensor:
    """video (b, C, T, H, W) → scores (b, T/st, h, w): each ``window_frames`` window scored
    alone, its first latent frame following the scorer's ``first_frame`` rule."""
    window = model.tokenizer.window_frames
    return torch.cat([model.scorer(piece) for piece in video.split(window, dim=2)], dim=1)


class FieldComputer:
    """uint8 view frames (T, H, W, C) → {latents (d, t, h, w), indices (t, h, w), scores (t, h, w)}."""

    def __init__(self, model: AdaptiveTokenizer, latent_dtype: LatentDtype, progress: tqdm | None,
                 device: torch.device | None = None, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None):
        device = device if device is not None else torch.device("cpu")
        self.model, self.progress, self.device = model.to(device), progress, device
        self.norm = {k: v for k, v in (("mean", mean), ("std", std)) if v is not None}
        self.clips = 0
        self.latent_dtype = _LATENT_DTYPES[latent_dtype]

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        # Normalised exactly as the pipeline does; float32 throughout (FSQ rounds in float32).
        video = to_video_tensor(frames, **self.norm)[None].to(self.device)
        latents, indices = self.model.tokenizer.encode_windows(video)
        fields = {"latents": latents[0].float().cpu().numpy().astype(self.latent_dtype),
                  "indices": indices[0].cpu().numpy().astype(_INDEX_DTYPE)}
        if self.model.scorer is not None:
            fields["scores"] = window_scores(self.model, video)[0].float().cpu().numpy()
        self.clips += 1
        if self.progress is not None:
            self.progress.update()
        return fields


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _check_out_dir(out_dir: str, source_root: str, provenance: dict) -> None:
    if os.path.realpath(out_dir) == os.path.realpath(source_root):
        raise ValueError(f"precompute_job.out_dir {out_dir!r} is the source dataset's folder; "
                         "the source shards are never modified — choose another folder")
    path = os.path.join(out_dir, PROVENANCE_NAME)
    if os.path.isfile(path):
        with open(path) as handle:
            existing = json.load(handle)
        if existing != provenance:
            raise ValueError(f"precompute_job.out_dir {out_dir!r} holds fields computed with "
                             f"{existing}, not {provenance}; remove it or choose another out_dir")
    else:
        os.makedirs(out_dir, exist_ok=True)
        with open(path, "w") as handle:
            json.dump(provenance, handle, indent=1, sort_keys=True)


@gin_applies
def precompute_job(checkpoint: str = gin.REQUIRED, dataset=gin.REQUIRED, out_dir: str = gin.REQUIRED,
                   splits: tuple[str, ...] | None = None, view_frames: int = 0,
                   pipeline: DataPipeline | None = None, first_frame: FirstFrame = "next",
                   latent_dtype: LatentDtype = "float16", threads: int = 0, device: str = "auto",
                   progress: bool = True) -> dict:
    """Writes the fields of ``dataset`` (any ``dataset.*``) into ``out_dir``; returns the new
    manifest's path and the token grid.

    Args:
      checkpoint: a ``pretrain_tokenizer`` checkpoint (``<workdir>/tokenizer/last.pt``).
      splits: the splits to process (default: all of the manifest's).
      view_frames: frames of the fixed view (0: ``data_pipeline.clip_frames``); a multiple of
        the tokenizer's ``window_frames``.
      pipeline: the data pipeline whose evaluation view is precomputed (default: the gin-bound
        ``data_pipeline``); its stride/fps, short-clip policy, size, resize, mean and std apply.
      first_frame: score of each window's first latent frame (see the module docstring).
      latent_dtype: storage of the latents (FSQ codes are multiples of 1/(L//2), which float16
        keeps exactly for the levels used here).
      threads: torch intra-op threads (0: leave torch's default).
      device: ``auto`` (CUDA when available, else CPU), or a torch device string.
    """
    check_choice(first_frame, FirstFrame, "precompute_job.first_frame")
    check_choice(latent_dtype, LatentDtype, "precompute_job.latent_dtype")
    if threads:
        torch.set_num_threads(threads)
    model, state = load_frozen_tokenizer(checkpoint)
    if model.scorer is not None:
        model.scorer.first_frame = first_frame
    manifest = dataset.prepare()
    pipeline = copy.copy(pipeline if pipeline is not None else DataPipeline())
    frames = view_frames or pipeline.clip_frames
    window = model.tokenizer.window_frames
    if frames <= 0 or frames % window:
        raise ValueError(f"precompute_job.view_frames must be a positive multiple of the tokenizer's "
                         f"window_frames={window}, got {frames} (data_pipeline.clip_frames="
                         f"{pipeline.clip_frames})")
    pipeline.clip_frames = frames
    view = View(frames=frames, stride=pipeline.stride)
    chosen = list(splits) if splits else list(manifest.splits)
    unknown = [split for split in chosen if split not in manifest.splits]
    if unknown:
        raise KeyError(f"precompute_job.splits {unknown} not in the manifest (splits: {list(manifest.splits)})")
    provenance = {"checkpoint": os.path.abspath(checkpoint), "step": int(state.get("step", 0)),
                  "weights_sha256": weights_digest(state["model"]),
                  "source": os.path.abspath(manifest.root),
                  "view": {"frames": frames, "stride": pipeline.stride, "fps": pipeline.fps,
                           "short_policy": pipeline.short_policy, "size": pipeline.size,
                           "resize": pipeline.resize, "mean": list(pipeline.mean), "std": list(pipeline.std)},
                  "first_frame": first_frame, "latent_dtype": latent_dtype}
    _check_out_dir(out_dir, manifest.root, provenance)
    source = getattr(dataset, "path", None) or os.path.join(manifest.root, "manifest.yaml")
    total = sum(manifest.splits[split].samples for split in chosen)
    with tqdm(total=total, desc="precompute", unit="clip", disable=not progress) as bar:
        computer = FieldComputer(model, latent_dtype, bar, _device(device), pipeline.mean, pipeline.std)
        result = add_fields(source, out_dir, view, computer, splits=chosen, progress=False, pipeline=pipeline)
    written = load_manifest(result.manifest)
    return {"manifest": result.manifest, "grid": list(written.view.grid), "fields": list(written.fields),
            "clips": computer.clips, "skipped": result.skipped,
            "samples": {split: written.splits[split].samples for split in chosen}}


@ex.command
def precompute(_run):
    """Writes frozen-tokenizer latents/indices and scorer scores beside every clip (new shards)."""
    result = precompute_job()
    _run.info.update({"manifest": result["manifest"], "grid": result["grid"], "data_skipped": result["skipped"]})
    for reason, count in result["skipped"].items():
        _run.log_scalar(f"data/skipped_{reason}", count, 0)
    attach_operative_config(_run)
    print(f"precomputed {result['fields']} on grid {result['grid']} for {result['clips']} clips "
          f"(clips already done in an earlier run are skipped)")
    left_out = sum(result["skipped"].values())
    print(f"left out {left_out} clip(s) that gave no view: {result['skipped']}" if left_out
          else "left out no clip")
    print(f"manifest: {result['manifest']}")
    return result

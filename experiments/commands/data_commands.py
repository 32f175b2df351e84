"""``python run.py write_shards`` and ``python run.py validate_shards``: dataset preparation.

    python run.py write_shards -u -b "write_shards_job.video_root='videos'" \\
        -b "write_shards_job.annotations={'train': 'EPIC_100_train.csv', 'val': 'EPIC_100_validation.csv'}" \\
        -b "write_shards_job.annotation_format='epic100'" \\
        -b "write_shards_job.out_dir='data/epic'" -b "write_shards_job.short_side=128"
    python run.py validate_shards -u -b "validate_shards_job.manifest='data/epic/manifest.yaml'"

Both take their options as gin bindings (or a gin file), like every other command. Bad input,
a refused clip under ``on_error='fail'`` and a run that writes nothing end with one message
and a non-zero exit (docs/data.md §3).
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import gin

from lvmae.components.data.decoding.codec import PixelFormat
from lvmae.components.data.writing.annotations import AnnotationError, AnnotationFormat
from lvmae.components.data.writing.validate import validate_manifest
from lvmae.components.data.writing.writer import (
    OnError,
    WriteError,
    WriteOptions,
    summary_lines,
    write_dataset,
)
from lvmae.experiments.commands.experiment import ex
from lvmae.experiments.engine.gin_config import gin_applies

# Errors that are the input's fault: printed as one message, non-zero exit, no traceback.
INPUT_ERRORS = (WriteError, AnnotationError, FileNotFoundError, ValueError)


@gin_applies
def write_shards_job(video_root: str = gin.REQUIRED, annotations: str | dict = gin.REQUIRED,
                     annotation_format: AnnotationFormat = gin.REQUIRED, out_dir: str = gin.REQUIRED,
                     split: str = "train", name: str | None = None, labels_path: str | None = None,
                     codec: Literal["mp4", "npy"] = "mp4", short_side: int | None = None,
                     fps: float | None = None, gop: int = 32, crf: int = 16, pix_fmt: PixelFormat = "yuv420p",
                     max_frames: int | None = None, sequence_fps: float | None = None,
                     frame_tolerance: float = 0.05, samples_per_shard: int = 64, on_error: OnError = "skip",
                     workers: int = 1) -> dict:
    """Writes the splits of ``annotations`` — one file (written as ``split``) or a dict
    ``{split: file}`` (one vocabulary over all of them) — and prints what was written and
    skipped. Unchanged samples are reused (content-keyed), the rest rewritten."""
    options = WriteOptions(codec=codec, short_side=short_side, fps=fps, gop=gop, crf=crf, pix_fmt=pix_fmt,
                           max_frames=max_frames, sequence_fps=sequence_fps, frame_tolerance=frame_tolerance)
    splits = dict(annotations) if isinstance(annotations, dict) else {split: annotations}
    manifest = write_dataset(video_root, splits, annotation_format, out_dir, name, labels_path,
                             options, samples_per_shard, on_error, workers=workers)
    for line in summary_lines(manifest, splits):
        print(line)
    return {"manifest": f"{out_dir}/manifest.yaml",
            "splits": {s: dataclasses.asdict(manifest.splits[s].summary) for s in splits},
            "heads": {h: len(n) for h, n in manifest.heads.items()}}


@gin_applies
def validate_shards_job(manifest: str = gin.REQUIRED, splits: list[str] | None = None, sources: bool = False) -> dict:
    """Checks shards against their manifest; ``sources=True`` also recomputes every sample's
    fingerprint from the videos and annotations it was written from (stale shards)."""
    report = validate_manifest(manifest, splits, sources=sources)
    print(report.summary())
    if not report.ok:
        raise SystemExit(f"{len(report.problems)} problem(s) in {manifest}")
    return {"samples": report.samples}


@ex.command
def write_shards():
    """Writes WebDataset shards from a video folder + annotation file (write_shards_job.*)."""
    try:
        return write_shards_job()
    except INPUT_ERRORS as error:
        # gin appends "In call to configurable …" to the message: the error alone is clearer.
        raise SystemExit(f"write_shards: {str(error).split(chr(10) + '  In call to configurable')[0]}") from None


@ex.command
def validate_shards():
    """Checks shards against their manifest and names bad samples (validate_shards_job.*)."""
    return validate_shards_job()


@gin_applies
def oracle_ceiling_job(dataset=gin.REQUIRED, samplers: list = ((128, 1), (64, 2), (32, 4), (32, 1)),
                       clips: int = 2000, pipeline=None) -> dict:
    """Oracle ceilings of a procedural dataset for samplers given as (frames, stride), then for
    the experiment's own data pipeline (``data_pipeline``: its clip length and stride, random
    windows as in training and the centred one as in evaluation), when one is given
    (``oracle_ceiling_job.pipeline = @data_pipeline()``)."""
    if not hasattr(dataset, "oracle_ceiling"):
        raise ValueError(f"oracle_ceiling_job.dataset: {type(dataset).__name__} is not a procedural "
                         f"dataset (no events to see)")
    rows = [(f"{frames}x{stride}", int(frames), int(stride), "random") for frames, stride in samplers]
    if pipeline is not None:
        if pipeline.fps:
            raise ValueError("oracle_ceiling_job: data_pipeline.fps is set; the ceiling needs a fixed stride")
        rows += [(f"data_pipeline {mode}", pipeline.clip_frames, pipeline.stride, start)
                 for mode, start in (("train", "random"), ("eval", "center"))]
    table = {}
    for name, frames, stride, start in rows:
        result = dataset.oracle_ceiling(frames, stride, start=start, clips=clips)
        table[name] = result
        print(f"{frames:4d} frames × stride {stride} ({start} windows{', ' + name if 'pipeline' in name else ''}): "
              f"sees every event in {result['seen_fraction']:.3f} of windows → accuracy ≤ "
              f"{result['ceiling']:.3f} (chance {result['chance']:.3f})")
    return table


@ex.command(unobserved=True)
def oracle_ceiling():
    """Prints the oracle ceilings of the configured procedural dataset (oracle_ceiling_job.*)."""
    return oracle_ceiling_job()

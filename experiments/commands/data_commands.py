"""``python run.py write_shards`` and ``python run.py validate_shards``: dataset preparation.

    python run.py write_shards -u -b "write_shards_job.video_root='videos'" \\
        -b "write_shards_job.annotations='train.csv'" -b "write_shards_job.annotation_format='epic100'" \\
        -b "write_shards_job.out_dir='data/epic'" -b "write_shards_job.short_side=128"
    python run.py validate_shards -u -b "validate_shards_job.manifest='data/epic/manifest.yaml'"

Both take their options as gin bindings (or a gin file), like every other command.
"""
from __future__ import annotations

import gin

from lvmae.components.data.validate import validate_manifest
from lvmae.components.data.writer import WriteOptions, write_split
from lvmae.experiments.commands.experiment import ex
from lvmae.experiments.engine.gin_config import gin_applies


@gin_applies
def write_shards_job(video_root: str = gin.REQUIRED, annotations: str = gin.REQUIRED,
                     annotation_format: str = gin.REQUIRED, out_dir: str = gin.REQUIRED,
                     split: str = "train", name: str | None = None, labels_path: str | None = None,
                     codec: str = "mp4", short_side: int | None = None, fps: float | None = None,
                     gop: int = 32, crf: int = 16, pix_fmt: str = "yuv420p", max_frames: int | None = None,
                     samples_per_shard: int = 64, on_error: str = "skip", workers: int = 1) -> dict:
    """Writes one split; returns its manifest entry. Complete shards are kept (resumable)."""
    options = WriteOptions(codec=codec, short_side=short_side, fps=fps, gop=gop, crf=crf,
                           pix_fmt=pix_fmt, max_frames=max_frames)
    manifest = write_split(video_root, annotations, annotation_format, out_dir, split, name,
                           labels_path, options, samples_per_shard, on_error, workers=workers)
    entry = manifest.splits[split]
    return {"manifest": f"{out_dir}/manifest.yaml", "split": split, "samples": entry.samples,
            "shards": entry.shards, "heads": {h: len(n) for h, n in manifest.heads.items()}}


@gin_applies
def validate_shards_job(manifest: str = gin.REQUIRED, splits: list[str] | None = None) -> dict:
    report = validate_manifest(manifest, splits)
    print(report.summary())
    if not report.ok:
        raise SystemExit(f"{len(report.problems)} problem(s) in {manifest}")
    return {"samples": report.samples}


@ex.command
def write_shards():
    """Writes WebDataset shards from a video folder + annotation file (write_shards_job.*)."""
    return write_shards_job()


@ex.command
def validate_shards():
    """Checks shards against their manifest and names bad samples (validate_shards_job.*)."""
    return validate_shards_job()


@gin_applies
def oracle_ceiling_job(dataset=gin.REQUIRED, samplers: list = ((128, 1), (64, 2), (32, 4), (32, 1)),
                       clips: int = 2000) -> dict:
    """Oracle ceilings of a procedural dataset for samplers given as (frames, stride)."""
    if not hasattr(dataset, "oracle_ceiling"):
        raise ValueError(f"oracle_ceiling_job.dataset: {type(dataset).__name__} is not a procedural "
                         f"dataset (no events to see)")
    table = {}
    for frames, stride in samplers:
        result = dataset.oracle_ceiling(int(frames), int(stride), clips=clips)
        table[f"{frames}x{stride}"] = result
        print(f"{frames:4d} frames × stride {stride}: sees every event in {result['seen_fraction']:.3f} "
              f"of windows → accuracy ≤ {result['ceiling']:.3f} (chance {result['chance']:.3f})")
    return table


@ex.command(unobserved=True)
def oracle_ceiling():
    """Prints the oracle ceilings of the configured procedural dataset (oracle_ceiling_job.*)."""
    return oracle_ceiling_job()

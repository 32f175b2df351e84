"""``python run.py write_shards`` and ``python run.py validate_shards``: dataset preparation.

    python run.py write_shards -u -b "write_shards_job.video_root='videos'" \\
        -b "write_shards_job.annotations='train.csv'" -b "write_shards_job.annotation_format='epic100'" \\
        -b "write_shards_job.out_dir='data/epic'" -b "write_shards_job.short_side=128"
    python run.py validate_shards -u -b "validate_shards_job.manifest='data/epic/manifest.yaml'"

Both take their options as gin bindings (or a gin file), like every other command.
"""
from __future__ import annotations

import gin

from components.data.validate import validate_manifest
from components.data.writer import WriteOptions, write_split
from experiments.experiment import ex, gin_applies


@gin_applies
def write_shards_job(video_root: str = gin.REQUIRED, annotations: str = gin.REQUIRED,
                     annotation_format: str = gin.REQUIRED, out_dir: str = gin.REQUIRED,
                     split: str = "train", name: str | None = None, labels_path: str | None = None,
                     codec: str = "mp4", short_side: int | None = None, fps: float | None = None,
                     gop: int = 32, crf: int = 16, pix_fmt: str = "yuv420p", max_frames: int | None = None,
                     samples_per_shard: int = 64, on_error: str = "skip") -> dict:
    """Writes one split; returns its manifest entry. Complete shards are kept (resumable)."""
    options = WriteOptions(codec=codec, short_side=short_side, fps=fps, gop=gop, crf=crf,
                           pix_fmt=pix_fmt, max_frames=max_frames)
    manifest = write_split(video_root, annotations, annotation_format, out_dir, split, name,
                           labels_path, options, samples_per_shard, on_error)
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

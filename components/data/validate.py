"""Checking shards against their manifest (``python run.py validate_shards``).

Per split: every shard of the pattern exists and reads; every sample parses against the
schema, has a label for every head within the head's classes, decodes (first and last
frame — a truncated mp4 fails here) with the stored frame count, and carries the manifest's
precomputed fields on its view's grid; keys are unique; the sample count matches. Problems
are reported as ``shard … sample …: reason``, never fixed in place.
"""
from __future__ import annotations

import dataclasses
import os

import webdataset as wds
from tqdm import tqdm
from webdataset.shardlists import expand_urls

from lvmae.components.data.codec import CorruptVideoError, PyAVDecoder
from lvmae.components.data.manifest import Manifest, load_manifest
from lvmae.components.data.schema import SampleError, parse_sample


@dataclasses.dataclass
class ValidationReport:
    manifest: str
    samples: dict[str, int] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        counts = ", ".join(f"{split}: {n} samples" for split, n in self.samples.items())
        head = f"{self.manifest}: {counts}; " + ("OK" if self.ok else f"{len(self.problems)} problem(s)")
        return "\n".join([head, *("  " + p for p in self.problems)])


def _check_sample(raw: dict, manifest: Manifest, decoder: PyAVDecoder) -> tuple[str, list[str]]:
    sample = parse_sample(raw)
    problems = []
    for head, names in manifest.heads.items():
        label = sample.labels.get(head)
        if label is None:
            problems.append(f"no label for head {head!r}")
        elif not -1 <= label < len(names):
            problems.append(f"label {head}={label} outside [0, {len(names)})")
    last = sample.num_frames - 1
    try:
        if sample.codec == "mp4":
            frames = decoder.decode(sample.clip, [0, last])
        else:
            frames = sample.clip[[0, last]]
            if sample.clip.shape[0] != sample.num_frames:
                problems.append(f"npy has {sample.clip.shape[0]} frames, json says {sample.num_frames}")
        size = list(sample.meta.get("size", frames.shape[1:3]))
        if list(frames.shape[1:3]) != size:
            problems.append(f"frames are {list(frames.shape[1:3])}, json says {size}")
    except CorruptVideoError as error:
        problems.append(f"clip does not decode to its {sample.num_frames} frames: {error}")
    for name in manifest.fields:
        if name not in sample.fields:
            problems.append(f"missing precomputed field {name!r}")
        elif manifest.view.grid and list(sample.fields[name].shape[-3:]) != list(manifest.view.grid):
            problems.append(f"{name} grid {list(sample.fields[name].shape[-3:])} ≠ view grid {manifest.view.grid}")
    return sample.key, problems


def validate_manifest(path: str, splits: list[str] | None = None, progress: bool = True) -> ValidationReport:
    manifest = load_manifest(path)
    report = ValidationReport(str(path))
    decoder = PyAVDecoder()
    for split in splits or list(manifest.splits):
        urls = expand_urls(manifest.urls(split))
        seen: set[str] = set()
        count = 0
        for url in tqdm(urls, desc=f"validate {split}", unit="shard", disable=not progress):
            if "://" not in url and not os.path.exists(url):
                report.problems.append(f"shard {url}: missing")
                continue
            errors: list[Exception] = []
            stream = wds.tarfile_samples([{"url": url}], handler=lambda e: errors.append(e) or True)
            for raw in stream:
                key = raw.get("__key__", "?")
                try:
                    key, problems = _check_sample(raw, manifest, decoder)
                except SampleError as error:
                    report.problems.append(str(error))
                    count += 1
                    continue
                count += 1
                if key in seen:
                    problems.append("duplicate key")
                seen.add(key)
                report.problems.extend(f"shard {url} sample {key}: {p}" for p in problems)
            report.problems.extend(f"shard {url}: unreadable tar ({e})" for e in errors)
        report.samples[split] = count
        if count != manifest.splits[split].samples:
            report.problems.append(f"split {split}: {count} samples in shards, manifest says "
                                   f"{manifest.splits[split].samples}")
    return report

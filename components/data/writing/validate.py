"""Checking shards against their manifest (``python run.py validate_shards``).

Per split: every shard of the pattern exists and reads; every sample parses against the
schema, has a label for every head within the head's classes, decodes (first and last
frame — a truncated mp4 fails here) with the stored frame count, and carries the manifest's
precomputed fields on its view's grid; keys are unique; the sample count matches. Shards
written by ``write_shards`` are also checked against their sidecar (``…json``): the same keys,
each sample's json carrying the fingerprint its sidecar lists, and the split's fingerprint in
the manifest. A tar that stops reading part-way is named with how many samples it gave and how
many it should hold. Problems are reported as ``shard … sample …: reason``, never fixed in place.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tarfile

import webdataset as wds
from tqdm import tqdm
from webdataset.shardlists import expand_urls

from lvmae.components.data.decoding.codec import CorruptVideoError, PyAVDecoder
from lvmae.components.data.formats.manifest import Manifest, load_manifest
from lvmae.components.data.formats.schema import SampleError, parse_sample
from lvmae.components.data.writing.writer import WRITER_VERSION, current_fingerprints, split_fingerprint


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


def _tar_damage(path: str) -> str:
    """Why a local tar stops early ('' when it reads to its end). Python's tarfile takes a
    broken header after the first member for the end of the archive, silently: anything but
    zero padding after the last member it read means members were lost."""
    try:
        with tarfile.open(path) as tar:
            for _ in tar:
                pass
            end = tar.offset
    except (tarfile.TarError, OSError) as error:
        return f"unreadable: {error}"
    with open(path, "rb") as handle:
        handle.seek(end)
        rest = handle.read()
    if rest.strip(b"\0"):
        return f"a broken member header at byte {end}; {len(rest)} bytes after it cannot be read"
    return ""


def _sidecar(url: str) -> dict | None:
    """The writer's sidecar of a local shard, or None (generated sets, URLs, other writers)."""
    path = f"{url[:-4]}.json" if url.endswith(".tar") else ""
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            sidecar = json.load(handle)
    except (OSError, ValueError):
        return None
    return sidecar if sidecar.get("writer") == WRITER_VERSION else None


def _check_sources(manifest: Manifest, split: str, expected: dict[str, str], report: ValidationReport) -> None:
    """Recomputes every sample's fingerprint from the inputs the split was written from."""
    try:
        now = current_fingerprints(manifest, split)
    except (ValueError, TypeError, OSError) as error:
        report.problems.append(f"split {split}: cannot recompute fingerprints from its inputs: {error}")
        return
    changed = sorted(k for k, f in expected.items() if now.get(k) != f)
    if changed:
        report.problems.append(f"split {split}: {len(changed)} sample(s) no longer match their inputs (source, "
                               f"range, labels or options changed since writing: {', '.join(changed[:5])}"
                               f"{' …' if len(changed) > 5 else ''}); rerun write_shards")
    added = sorted(set(now) - set(expected) - set(_skipped_keys(manifest, split)))
    if added:
        report.problems.append(f"split {split}: {len(added)} annotated clip(s) not in the shards "
                               f"({', '.join(added[:5])}); rerun write_shards")


def _skipped_keys(manifest: Manifest, split: str) -> list[str]:
    keys = []
    for url in expand_urls(manifest.urls(split)):
        sidecar = _sidecar(url)
        keys += [e["key"] for e in sidecar["entries"] if e["status"] == "skipped"] if sidecar else []
    return keys


def validate_manifest(path: str, splits: list[str] | None = None, progress: bool = True,
                      sources: bool = False) -> ValidationReport:
    """``sources``: also recompute every sample's fingerprint from the source files and
    annotations the split was written from (stale shards are reported)."""
    manifest = load_manifest(path)
    report = ValidationReport(str(path))
    decoder = PyAVDecoder()
    for split in splits or list(manifest.splits):
        written: dict[str, str] = {}
        urls = expand_urls(manifest.urls(split))
        seen: set[str] = set()
        count = 0
        split_fingerprints: list[str] | None = []     # None once a shard has no sidecar (copies)
        for url in tqdm(urls, desc=f"validate {split}", unit="shard", disable=not progress):
            if "://" not in url and not os.path.exists(url):
                report.problems.append(f"shard {url}: missing")
                continue
            sidecar = _sidecar(url)
            expected = ({e["key"]: e["fingerprint"] for e in sidecar["entries"] if e["status"] == "written"}
                        if sidecar else None)
            errors: list[Exception] = []
            stream = wds.tarfile_samples([{"url": url}], handler=lambda e, errors=errors: errors.append(e) or True)
            in_shard: list[str] = []
            for raw in stream:
                key = raw.get("__key__", "?")
                in_shard.append(key)
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
                if expected is not None:
                    stored = json.loads(raw["json"]).get("fingerprint", "")
                    if key not in expected:
                        problems.append("not listed in the shard's sidecar")
                    elif stored != expected[key]:
                        problems.append(f"fingerprint {stored or '(none)'} ≠ sidecar's {expected[key]}: "
                                        f"the sample is not what its inputs would write; rerun write_shards")
                report.problems.extend(f"shard {url} sample {key}: {p}" for p in problems)
            damage = [str(e) for e in errors] or ([_tar_damage(url)] if "://" not in url else [])
            absent = [k for k in expected if k not in in_shard] if expected is not None else []
            if any(damage) or absent:
                holds = f" of the {len(expected)} its sidecar lists" if expected is not None else ""
                lost = f"; missing {', '.join(absent[:5])}{' …' if len(absent) > 5 else ''}" if absent else ""
                report.problems.append(f"shard {url}: damaged tar, {len(in_shard)} sample(s) readable{holds}"
                                       f"{lost} ({'; '.join(d for d in damage if d) or 'members missing'})")
            written.update(expected or {})
            if expected is None:
                split_fingerprints = None
            elif split_fingerprints is not None:
                split_fingerprints += [e["fingerprint"] for e in sidecar["entries"] if e["status"] == "written"]
        report.samples[split] = count
        entry = manifest.splits[split]
        if count != entry.samples:
            report.problems.append(f"split {split}: {count} samples in shards, manifest says {entry.samples}")
        elif not count:
            skipped = f" (the writer skipped {dict(entry.summary.skipped)})" if entry.summary.skipped else ""
            report.problems.append(f"split {split}: no samples{skipped}")
        if sources and split_fingerprints is None:
            report.problems.append(f"split {split}: its shards have no write_shards sidecars (copies, e.g. with "
                                   f"precomputed fields): validate their source folder with sources=True")
        elif sources:
            _check_sources(manifest, split, written, report)
        if entry.fingerprint and split_fingerprints is not None and split_fingerprint(split_fingerprints) != entry.fingerprint:
            report.problems.append(f"split {split}: the shards' fingerprints do not match the manifest's "
                                   f"({entry.fingerprint}): shards and manifest come from different runs")
    return report

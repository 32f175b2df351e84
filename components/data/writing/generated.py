"""Shards of ready samples (the generated datasets): ``prefix-NNNNNN.tar`` files, a folder
named by the hash of every generation parameter, published atomically with its manifest (which
records each shard's sample count, size and SHA-1).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterable

from lvmae.components.data.formats.manifest import Manifest, load_manifest, save_manifest
from lvmae.components.data.formats.shard_index import record_shards
from lvmae.components.data.writing.shard_files import shard_sink

MANIFEST_NAME = "manifest.yaml"


def write_shards(samples: Iterable[dict], folder: str, prefix: str, samples_per_shard: int) -> int:
    """Writes ``prefix-000000.tar`` … into ``folder`` (each through a temporary name); returns
    the number of shards."""
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be ≥ 1, got {samples_per_shard}")
    os.makedirs(folder, exist_ok=True)
    shards, iterator = 0, iter(samples)
    while True:
        batch = list(itertools.islice(iterator, samples_per_shard))
        if not batch:
            return shards
        with shard_sink(os.path.join(folder, f"{prefix}-{shards:06d}.tar")) as sink:
            for sample in batch:
                sink.write(sample)
        shards += 1


def generated_folder(root: str, name: str, params: dict) -> str:
    """``root/<name>-<fingerprint>``, the fingerprint hashing every generation parameter, so
    changing one never overwrites shards already written."""
    fingerprint = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    return os.path.join(root, f"{name}-{fingerprint}")


def publish_generated(folder: str, write: Callable[[str], Manifest]) -> Manifest:
    """Returns the manifest in ``folder``; if there is none yet, ``write(staging)`` writes the
    shards into a staging folder and returns their manifest, and the folder is renamed into
    place: readers never see half a dataset."""
    manifest_path = os.path.join(folder, MANIFEST_NAME)
    if os.path.exists(manifest_path):
        return load_manifest(manifest_path)
    staging = f"{folder}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    save_manifest(record_shards(write(staging), staging), os.path.join(staging, MANIFEST_NAME))
    try:
        os.rename(staging, folder)
    except OSError:                      # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return load_manifest(manifest_path)

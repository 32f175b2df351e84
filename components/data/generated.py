"""Datasets that generate their own shards (synthetic sets): where they live and how they are
published.

The folder is ``root/<name>-<fingerprint>`` with the fingerprint hashing every generation
parameter, so changing one never overwrites shards already written. Shards are written into a
staging folder that is renamed into place at the end: readers never see half a dataset.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable

from lvmae.components.data.manifest import Manifest, load_manifest, save_manifest

MANIFEST_NAME = "manifest.yaml"


def generated_folder(root: str, name: str, params: dict) -> str:
    fingerprint = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    return os.path.join(root, f"{name}-{fingerprint}")


def publish_generated(folder: str, write: Callable[[str], Manifest]) -> Manifest:
    """Returns the manifest in ``folder``; if there is none yet, ``write(staging)`` writes the
    shards into a staging folder and returns their manifest, and the folder is renamed into place."""
    manifest_path = os.path.join(folder, MANIFEST_NAME)
    if os.path.exists(manifest_path):
        return load_manifest(manifest_path)
    staging = f"{folder}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    save_manifest(write(staging), os.path.join(staging, MANIFEST_NAME))
    try:
        os.rename(staging, folder)
    except OSError:                      # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return load_manifest(manifest_path)

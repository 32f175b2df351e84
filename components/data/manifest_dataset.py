"""``dataset.manifest``: shards someone already wrote (``run.py write_shards``), by manifest path.

    DATASET = @dataset.manifest()
    dataset.manifest.path = 'data/epic100/manifest.yaml'     # or '${oc.env:DATA}/…' inside YAML
"""
from __future__ import annotations

import os

from lvmae.components.data.base import Dataset
from lvmae.components.data.manifest import Manifest, load_manifest
from lvmae.registry import register


@register("dataset.manifest")
class ManifestDataset(Dataset):
    """Describes existing shards; ``prepare`` only reads (and checks) the manifest."""

    def __init__(self, path: str):
        self.path = os.path.expandvars(os.path.expanduser(path))

    def prepare(self) -> Manifest:
        return load_manifest(self.path)

"""What each shard should be: its sample count, size and digest, recorded in the manifest.

Writers record, per split, three lists in the order of the shard pattern (docs/data.md):

    shard_samples: [64, 64, 17]          # samples each shard holds
    shard_bytes:   [5120000, …]          # its size in bytes
    shard_sha1:    ["3f2a…", …]          # its SHA-1

Readers use them to see what a damaged tar loses (a member header destroyed mid-shard reads as a
shorter tar: the count says how many samples never came), preflight to refuse a missing or
changed shard before a run is recorded, and ``write_shards`` to rewrite a damaged shard instead
of reusing it. Manifests written before these fields existed carry empty lists: nothing is
checked for them.
"""
from __future__ import annotations

import hashlib
import os
import tarfile

from webdataset.shardlists import expand_urls

from lvmae.components.data.formats.manifest import Manifest

# Read size when hashing a shard.
_CHUNK = 1 << 20


class ShardCheckError(ValueError):
    """A shard the manifest names is missing or not what was written; names it."""


def file_sha1(path: str) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def count_samples(path: str) -> int:
    """Distinct sample keys in a tar (headers only; nothing decoded)."""
    with tarfile.open(path) as tar:
        return len({member.name.partition(".")[0] for member in tar if member.isfile()})


def is_local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


def record_shards(manifest: Manifest, folder: str | None = None) -> Manifest:
    """Fills ``shard_samples``/``shard_bytes``/``shard_sha1`` of every split whose shards are
    local files (``folder``: where they are now, when not yet at ``manifest.root``)."""
    for split in manifest.splits.values():
        pattern = split.shards
        root = folder or manifest.root
        urls = expand_urls(pattern if os.path.isabs(pattern) or not is_local(pattern) else os.path.join(root, pattern))
        if not urls or not all(is_local(u) and os.path.exists(u) for u in urls):
            continue
        split.shard_samples = [count_samples(u) for u in urls]
        split.shard_bytes = [os.path.getsize(u) for u in urls]
        split.shard_sha1 = [file_sha1(u) for u in urls]
    return manifest


def expected_samples(manifest: Manifest, split: str) -> dict[str, int]:
    """Shard url → samples it should hold ({} when the manifest does not record them)."""
    urls = expand_urls(manifest.urls(split))
    counts = manifest.splits[split].shard_samples
    return dict(zip(urls, counts)) if len(counts) == len(urls) else {}


def shard_problems(manifest: Manifest, splits: list[str] | None = None, digests: bool = False) -> list[str]:
    """Each local shard of ``splits`` (default all) that is missing, or whose size (and, with
    ``digests``, SHA-1) differs from what the manifest recorded; one line per shard."""
    problems = []
    for split in splits or list(manifest.splits):
        entry = manifest.splits[split]
        urls = expand_urls(manifest.urls(split))
        sizes = entry.shard_bytes if len(entry.shard_bytes) == len(urls) else [None] * len(urls)
        sha1s = entry.shard_sha1 if len(entry.shard_sha1) == len(urls) else [None] * len(urls)
        for url, size, sha1 in zip(urls, sizes, sha1s):
            if not is_local(url):
                continue
            if not os.path.exists(url):
                problems.append(f"split {split}: shard {url} is missing")
            elif size is not None and os.path.getsize(url) != size:
                problems.append(f"split {split}: shard {url} has {os.path.getsize(url)} bytes, the manifest "
                                f"recorded {size} (changed or damaged since it was written)")
            elif digests and sha1 and file_sha1(url) != sha1:
                problems.append(f"split {split}: shard {url} has another SHA-1 than the manifest recorded "
                                f"(changed or damaged since it was written)")
    return problems


def check_shards(manifest: Manifest, splits: list[str] | None = None, digests: bool = False) -> None:
    """Raises :class:`ShardCheckError` (one paragraph) when :func:`shard_problems` finds any."""
    problems = shard_problems(manifest, splits, digests)
    if problems:
        where = os.path.join(manifest.root, "manifest.yaml")
        shown = problems[:5] + ([f"… and {len(problems) - 5} more"] if len(problems) > 5 else [])
        raise ShardCheckError(f"{where} ({manifest.name!r}): {len(problems)} shard(s) are not what the manifest "
                              f"describes: {'; '.join(shown)}. Restore them, rerun write_shards (it rewrites "
                              f"damaged shards), or run validate_shards to see each sample.")


def manifest_paths_of(obj) -> list[str]:
    """The manifest files a dataset object (``dataset.manifest``, ``dataset.mixture``) or a
    manifest path reads; [] for generated sets (their shards are written when first used)."""
    if isinstance(obj, (str, os.PathLike)) and str(obj).endswith((".yaml", ".yml")):
        return [str(obj)]
    paths = getattr(obj, "manifest_paths", None)
    return list(paths()) if callable(paths) else []


def check_dataset_shards(obj, digests: bool = False) -> None:
    """:func:`check_shards` on every manifest ``obj`` reads (see :func:`manifest_paths_of`);
    a manifest that does not exist raises FileNotFoundError."""
    from lvmae.components.data.formats.manifest import load_manifest  # pylint: disable=import-outside-toplevel
    for path in manifest_paths_of(obj):
        check_shards(load_manifest(path), digests=digests)

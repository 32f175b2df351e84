"""Reading the samples of local tar shards so that no loss goes unnamed.

Python's ``tarfile`` (and so webdataset's tar reader) takes a destroyed member header in the
middle of a shard for the end of the archive: every sample after it vanishes without a word.
This reader opens local shards with ``ignore_zeros`` — a damaged header is stepped over block by
block until the next valid one, so the samples after it are still read — and watches the byte
offsets: a gap between one member's end and the next member's header, or a member cut off by
the end of the file, is damage. Per shard it then yields one :class:`ShardLoss` naming the shard
and the byte ranges, counting the samples lost without a key: the manifest's sample count of
the shard (``shard_samples``) minus the samples read. A sample that lost only some of its
members still has a key: it fails the schema (components/data/formats/schema.py) under its own name.

URLs (``pipe:``, ``http://`` …) go through webdataset's reader as before.
"""
from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator

import webdataset as wds
from webdataset.tariterators import base_plus_ext

from lvmae.components.data.formats.shard_index import is_local

_BLOCK = tarfile.BLOCKSIZE


class ShardLoss(ValueError):
    """Samples of a shard that could not be read at all (their key is lost); ``where`` names the
    shard and byte ranges, ``count`` how many samples (at least 1)."""

    def __init__(self, shard: str, message: str, count: int):
        super().__init__(message)
        self.shard, self.count = shard, max(1, count)
        self.where = f"shard {shard}"


def _padded(size: int) -> int:
    return (size + _BLOCK - 1) // _BLOCK * _BLOCK


def _nonzero(path: str, start: int, stop: int) -> bool:
    with open(path, "rb") as handle:
        handle.seek(start)
        return bool(handle.read(max(0, stop - start)).strip(b"\0"))


def local_tar_samples(path: str, expected: int | None = None) -> Iterator[dict | ShardLoss]:
    """Raw samples (extension → bytes, ``__key__``, ``__url__``) of one local tar in order, then
    at most one :class:`ShardLoss` for what could not be read (``expected``: the samples the
    manifest says the shard holds)."""
    damage: list[str] = []
    read = 0
    try:
        tar = tarfile.open(path, mode="r:", ignore_zeros=True)  # noqa: SIM115 (closed below)
    except (tarfile.TarError, OSError) as error:
        yield ShardLoss(path, f"shard {path}: unreadable tar ({error})", expected or 1)
        return
    size = os.path.getsize(path)
    with tar:
        group: dict | None = None
        end = 0                                  # where the next member header should start
        members = iter(tar)
        while True:
            try:
                member = next(members)
            except StopIteration:
                break
            except (tarfile.TarError, OSError) as error:   # a header cut short by the file's end
                damage.append(f"member header at byte {tar.offset} unreadable ({error})")
                break
            if member.offset != end and _nonzero(path, end, member.offset):
                damage.append(f"bytes [{end}, {member.offset}) unreadable")
            end = member.offset_data + _padded(member.size)
            if not member.isfile():
                continue
            parts = base_plus_ext(member.name)
            if parts[0] is None:
                continue
            key, extension = parts
            if group is not None and group["__key__"] != key:
                read += 1
                yield group
                group = None
            if member.offset_data + member.size > size:
                damage.append(f"cut at byte {size} inside member {member.name} (the file is truncated)")
                break
            try:
                data = tar.extractfile(member).read()
            except (tarfile.TarError, OSError) as error:
                damage.append(f"member {member.name} at byte {member.offset} unreadable ({error})")
                break
            if group is None:
                group = {"__key__": key, "__url__": path}
            group[extension] = data
        if group is not None:
            read += 1
            yield group
        if not damage and end < size and _nonzero(path, end, size):
            damage.append(f"bytes [{end}, {size}) after the last readable member unreadable")
    lost = (expected - read) if expected is not None else (1 if damage else 0)
    if lost > 0 or (damage and expected is None):
        holds = f"{read} of the {expected} samples the manifest lists read" if expected is not None else \
            f"{read} samples read"
        yield ShardLoss(path, f"shard {path}: {max(lost, 1)} sample(s) lost with their keys ({holds}; "
                              f"{'; '.join(damage) or 'members missing'})", lost)


def tar_samples(urls: list[str], expected: dict[str, int] | None = None) -> Iterator[dict | Exception]:
    """Raw samples of every shard in order; failures are yielded, not raised. Local files are
    read by :func:`local_tar_samples`, anything else by webdataset."""
    expected = expected or {}
    for url in urls:
        if is_local(url):
            yield from local_tar_samples(url, expected.get(url))
            continue
        errors: list[Exception] = []
        read = 0
        for raw in wds.tarfile_samples([{"url": url}], handler=lambda e, errors=errors: errors.append(e) or True):
            while errors:
                yield errors.pop(0)
            read += 1
            yield raw
        yield from errors
        if url in expected and read < expected[url]:
            yield ShardLoss(url, f"shard {url}: {expected[url] - read} sample(s) lost ({read} of the "
                                 f"{expected[url]} the manifest lists read)", expected[url] - read)

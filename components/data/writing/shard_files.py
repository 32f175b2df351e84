"""One shard of write_shards on disk: the tar (written through a temporary name), its sidecar
(``<split>-NNNNNN.json``: per clip its key, fingerprint and stored frames or skip reason, plus the
tar's size and SHA-1), and the old shards a rewrite copies from (``.replaced/``).

A tar is reused only when it still has the size and SHA-1 its sidecar recorded (:func:`intact`);
members carry a fixed modification time, so the same inputs give the same bytes.
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import tarfile
from collections.abc import Iterator

import webdataset as wds
from tqdm import tqdm

from lvmae.components.data.formats.shard_index import file_sha1
from lvmae.components.data.writing.annotations import ClipSpec
from lvmae.components.data.writing.clips import (
    WRITER_VERSION,
    OnError,
    WriteError,
    WriteOptions,
    _Skip,
    _Source,
    encode_clip,
)

REPLACED = ".replaced"            # old shards wait here while their split is rewritten
# Members' modification time: fixed, so the same samples give the same bytes (and SHA-1) whenever
# and wherever they are written.
SHARD_MTIME = 0.0
log = logging.getLogger(__name__)


@contextlib.contextmanager
def shard_sink(path: str) -> Iterator[wds.TarWriter]:
    """A ``wds.TarWriter`` on ``path.tmp``, renamed to ``path`` when the block completes; on
    any error the partial file is removed. Every shard this package writes goes through it."""
    tmp = f"{path}.tmp"
    try:
        with wds.TarWriter(tmp, mtime=SHARD_MTIME) as sink:
            yield sink
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _json_bytes(sample: dict) -> dict:
    return {k: (json.dumps(v).encode() if k == "json" else v) for k, v in sample.items()}


def _old_samples(tar_path: str, keys: set[str]) -> dict[str, dict]:
    """Members of ``keys`` in an old shard, as samples ready to write again (bytes untouched)."""
    found: dict[str, dict] = {}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            key, _, extension = member.name.partition(".")
            if key in keys and member.isfile():
                found.setdefault(key, {"__key__": key})[extension] = tar.extractfile(member).read()
    return found


def _write_shard(path: str, specs: list[ClipSpec], sources: dict[str, _Source], fingerprints: dict[str, str],
                 reusable: dict[str, tuple[str, dict]], options: WriteOptions, on_error: OnError,
                 progress: tqdm | None = None) -> dict:
    """Writes one shard (tar + sidecar, through temporary names); returns the sidecar."""
    sidecar = {"writer": WRITER_VERSION, "entries": []}
    tmp_json = f"{path[:-4]}.json.tmp"
    copies: dict[str, list[str]] = {}
    for spec in specs:
        old = reusable.get(fingerprints[spec.key])
        if old is not None and old[1]["status"] == "written":
            copies.setdefault(old[0], []).append(old[1]["key"])
    copied = {}
    for tar_path, keys in copies.items():
        for sample in _old_samples(tar_path, set(keys)).values():
            try:
                stored = json.loads(sample.get("json", b"{}")).get("fingerprint")
            except ValueError:
                continue
            copied[stored] = sample          # by fingerprint: bytes that are not what we want are never copied
    try:
        with shard_sink(path) as sink:
            for spec in specs:
                fingerprint = fingerprints[spec.key]
                entry = {"key": spec.key, "fingerprint": fingerprint}
                old = reusable.get(fingerprint)
                try:
                    if old is not None and old[1]["status"] == "written" and fingerprint in copied:
                        sample = copied[fingerprint]
                        entry.update({k: old[1][k] for k in ("frames", "fps", "range")}, reused=True)
                    elif old is not None and old[1]["status"] == "skipped":
                        raise _Skip(old[1]["reason"], old[1]["message"])
                    else:
                        source = sources[spec.key]
                        if source.reason:
                            raise _Skip(source.reason, source.message)
                        sample = encode_clip(spec, source, options, fingerprint)
                        meta = sample["json"]
                        entry.update(frames=meta["num_frames"], fps=meta["fps"], range=meta["frames"])
                        sample = _json_bytes(sample)
                except _Skip as skip:
                    if on_error == "fail":
                        raise WriteError(f"{spec.where}: clip {spec.key} ({spec.video}): {skip.message}") from None
                    log.warning("skipping clip %s (%s): %s", spec.key, spec.video, skip.message)
                    entry.update(status="skipped", reason=skip.reason, message=skip.message)
                else:
                    sink.write(sample)
                    entry["status"] = "written"
                sidecar["entries"].append(entry)
                if progress is not None:
                    progress.update()
        # The sidecar comes last and records the tar's bytes: a tar without one is never reused.
        sidecar["bytes"], sidecar["sha1"] = os.path.getsize(path), file_sha1(path)
        with open(tmp_json, "w", encoding="utf-8") as handle:
            json.dump(sidecar, handle)
        os.replace(tmp_json, f"{path[:-4]}.json")
    finally:
        if os.path.exists(tmp_json):
            os.remove(tmp_json)
    return sidecar


def _sidecars(folder: str, split: str) -> dict[str, dict]:
    """tar path → sidecar of every complete shard of ``split`` in ``folder``."""
    found = {}
    name = re.compile(re.escape(split) + r"-\d{6}(-r\d+)?\.json")
    for sidecar_path in glob.glob(os.path.join(glob.escape(folder), f"{glob.escape(split)}-*.json")):
        tar_path = sidecar_path[:-5] + ".tar"
        if not name.fullmatch(os.path.basename(sidecar_path)) or not os.path.exists(tar_path):
            continue
        try:
            with open(sidecar_path, encoding="utf-8") as handle:
                sidecar = json.load(handle)
        except (OSError, ValueError):
            continue
        if sidecar.get("writer") == WRITER_VERSION:
            found[tar_path] = sidecar
    return found


def _intact(tar_path: str, sidecar: dict) -> bool:
    """The tar has the size and SHA-1 its sidecar recorded (sidecars without them: unverified)."""
    if "sha1" not in sidecar or not os.path.exists(tar_path) or os.path.getsize(tar_path) != sidecar.get("bytes"):
        return False
    return file_sha1(tar_path) == sidecar["sha1"]


def _move_aside(out_dir: str, path: str) -> str:
    """Moves a shard (tar + sidecar) into ``.replaced/`` under a name no earlier run used
    there; returns the new tar path."""
    aside = os.path.join(out_dir, REPLACED)
    os.makedirs(aside, exist_ok=True)
    stem = os.path.basename(path)[:-4]
    number = 0
    while glob.glob(os.path.join(glob.escape(aside), f"{stem}-r{number}.*")):
        number += 1
    target = os.path.join(aside, f"{stem}-r{number}.tar")
    if os.path.exists(f"{path[:-4]}.json"):
        os.replace(f"{path[:-4]}.json", f"{target[:-4]}.json")
    if os.path.exists(path):
        os.replace(path, target)
    return target

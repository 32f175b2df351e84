"""The shard sample schema (docs/data.md): what one WebDataset sample holds.

    __key__        unique id, no dots or slashes
    mp4 | npy      the clip: H.264 mp4 bytes, or raw uint8 (t, h, w, c) as .npy
    json           {"labels": {head: int}, "fps": float, "num_frames": int, "size": [h, w],
                    "source": str, "frames": [start, stop)}    (frames in source numbering: the
                   range actually stored), plus "fingerprint" (write_shards: the hash of every
                   input of this sample) and "events" (oracle events, stored-frame numbers)
    latents.npy    optional float (d, t', h', w') on the token grid of the manifest's view
    indices.npy    optional int (t', h', w')
    scores.npy     optional float (t', h', w')

Older shards with a bare ``"label": int`` read as ``{"labels": {"label": int}}``.
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np

from lvmae.components.data.formats.manifest import PRECOMPUTED_FIELDS

CLIP_EXTENSIONS = ("mp4", "npy")
REQUIRED_META = ("labels", "fps", "num_frames")


class SampleError(ValueError):
    """A shard sample that breaks the schema."""


@dataclasses.dataclass
class RawSample:
    """One sample as read from a shard, clip still encoded (mp4) or raw (npy)."""

    key: str
    shard: str
    codec: str                       # "mp4" or "npy"
    clip: bytes | np.ndarray         # mp4 bytes, or uint8 (t, h, w, c)
    meta: dict
    fields: dict[str, np.ndarray]    # precomputed fields present in this sample

    @property
    def labels(self) -> dict[str, int]:
        return self.meta["labels"]

    @property
    def num_frames(self) -> int:
        return int(self.meta["num_frames"])


def make_sample(key: str, clip: np.ndarray | bytes, labels: dict[str, int], fps: float,
                num_frames: int, size: tuple[int, int], source: str = "",
                frames: tuple[int, int | None] = (0, None), **fields: np.ndarray) -> dict:
    """A sample dict ready for ``wds.TarWriter.write`` (``bytes`` clip = mp4)."""
    if "." in key or "/" in key:
        raise SampleError(f"sample key {key!r} must not contain '.' or '/'")
    unknown = [f for f in fields if f not in PRECOMPUTED_FIELDS]
    if unknown:
        raise SampleError(f"sample {key}: unknown precomputed fields {unknown}; allowed {PRECOMPUTED_FIELDS}")
    sample = {"__key__": key,
              "json": {"labels": {h: int(v) for h, v in labels.items()}, "fps": float(fps),
                       "num_frames": int(num_frames), "size": [int(size[0]), int(size[1])],
                       "source": source, "frames": [int(frames[0]), frames[1]]}}
    if isinstance(clip, bytes):
        sample["mp4"] = clip
    else:
        sample["npy"] = npy_bytes(clip)
    for name, value in fields.items():
        sample[f"{name}.npy"] = npy_bytes(value)
    return sample


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as .npy bytes (no pickles)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _npy_load(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def parse_sample(raw: dict) -> RawSample:
    """A tar sample (extension → bytes, as webdataset groups them) → RawSample; errors name
    the shard and the key. npy payloads are parsed here; mp4 stays encoded."""
    import json
    key, shard = raw.get("__key__", "?"), raw.get("__url__", "?")
    where = f"shard {shard} sample {key}"
    try:
        if "json" not in raw:
            raise SampleError("no json member")
        meta = json.loads(raw["json"])
        if "labels" not in meta and "label" in meta:
            meta["labels"] = {"label": int(meta["label"])}
        codec = next((ext for ext in CLIP_EXTENSIONS if ext in raw), None)
        if codec is None:
            raise SampleError(f"no clip member (one of {CLIP_EXTENSIONS}); members: "
                              f"{sorted(k for k in raw if not k.startswith('__'))}")
        clip = raw[codec] if codec == "mp4" else _npy_load(raw[codec])
        if codec == "npy":
            if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[-1] != 3:
                raise SampleError(f"npy clip must be uint8 (t, h, w, 3), got {clip.dtype} {clip.shape}")
            meta.setdefault("num_frames", clip.shape[0])
        missing = [k for k in REQUIRED_META if k not in meta]
        if missing:
            raise SampleError(f"json lacks {missing}")
        fields = {name: _npy_load(raw[f"{name}.npy"]) for name in PRECOMPUTED_FIELDS
                  if f"{name}.npy" in raw}
    except SampleError as error:
        raise _named(SampleError(f"{where}: {error}"), where) from None
    except (ValueError, OSError, KeyError) as error:
        raise _named(SampleError(f"{where}: unreadable member ({error})"), where) from error
    return RawSample(key, shard, codec, clip, meta, fields)


def _named(error: SampleError, where: str) -> SampleError:
    error.where = where      # "shard … sample …": the name a skipped sample is counted under
    return error

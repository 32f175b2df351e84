"""Frozen features, extracted once per (encoder weights, data, views, layers) and kept on disk.

Axis legend: N clips, v spatial views, s temporal segments, n tokens per segment, L read
layers, d encoder width.

Every head of a probe grid, the kNN evaluation and every later probe of the same encoder on
the same data read one extraction. A cache entry's key hashes what the features depend on:
the encoder's weights (so a random initialisation is keyed by its seed, and a checkpoint by
its contents, not its path), the encoder's class, the data (manifest name, split, the split's
sample fingerprint or its shard files), the evaluation views (segments × views), the frame
and pixel size, the read layers, the pipeline's evaluation settings and whether tokens or
their mean are kept. Entries are written atomically (temporary file + rename); a damaged
entry is reported and re-extracted, never trusted.

Layout of one entry: features (N, v, s·n, L·d) float16 — segments concatenated along the
tokens, layers along the width (V-JEPA 2 reads ``out_layers`` and concatenates them) — or
(N, v, 1, L·d) float32 when only the mean token is kept; labels {head: (N,)}; keys (N,).
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import pickle
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn
from tqdm import tqdm

from lvmae.experiments.engine.trainer import Precision, inference
from lvmae.experiments.engine.views import batch_labels

CACHE_FORMAT = 1        # bump when the entry layout changes: old entries are never misread


@dataclass(frozen=True)
class FeatureSet:
    """Cached features of one split: ``features`` (N, v, s·n or 1, L·d), ``labels`` {head: (N,)}."""

    features: torch.Tensor
    labels: dict[str, torch.Tensor]
    keys: list[str]

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, rows: torch.Tensor) -> FeatureSet:
        picked = rows.tolist()
        return FeatureSet(self.features[rows], {h: v[rows] for h, v in self.labels.items()},
                          [self.keys[i] for i in picked])


def encoder_fingerprint(encoder: nn.Module) -> str:
    """sha256 of the encoder's class and every tensor of its state (names, shapes, dtypes, bytes)."""
    digest = hashlib.sha256(type(encoder).__qualname__.encode())
    for name, tensor in encoder.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def data_fingerprint(manifest, split: str) -> dict:
    """What identifies a split's samples: its recorded sample fingerprint, else its shard files'
    names, sizes and modification times."""
    record = manifest.splits[split]
    identity = {"manifest": manifest.name, "root": os.path.abspath(manifest.root or "."), "split": split,
                "samples": record.samples}
    if record.fingerprint:
        return identity | {"fingerprint": record.fingerprint}
    pattern = manifest.urls(split)
    files = []
    for brace in _expand_braces(pattern):
        for path in sorted(glob.glob(brace)):
            stat = os.stat(path)
            files.append((os.path.basename(path), stat.st_size, int(stat.st_mtime)))
    return identity | {"shards": files or pattern}


def _expand_braces(pattern: str) -> list[str]:
    """webdataset's ``{000..003}`` ranges as explicit paths (other patterns unchanged)."""
    import braceexpand

    return list(braceexpand.braceexpand(pattern))


def pipeline_settings(pipeline) -> dict:
    """The evaluation-relevant settings of a data pipeline, as plain values."""
    plain = (bool, int, float, str, tuple, type(None))
    return {k: v for k, v in sorted(vars(pipeline).items())
            if isinstance(v, plain) and k not in ("workers", "prefetch", "pin_memory", "persistent_workers",
                                                  "shuffle_buffer", "decoder_threads")}


def cache_key(parts: dict) -> str:
    text = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def read_tokens(encoder: nn.Module, video: torch.Tensor, layers: tuple[int, ...]) -> torch.Tensor:
    """video (b, c, T, H, W) → tokens (b, n, L·d) of ``layers`` (``(-1,)``: the encoder's output)."""
    if tuple(layers) == (-1,):
        return encoder(video)
    forward_layers = getattr(encoder, "forward_layers", None)
    if forward_layers is None:
        raise ValueError(f"probe_loop.out_layers={tuple(layers)}: {type(encoder).__name__} cannot return "
                         "intermediate layers (it has no forward_layers); use out_layers=(-1,)")
    return torch.cat(forward_layers(video, tuple(layers)), dim=-1)


@torch.no_grad()
def extract(encoder: nn.Module, batches, heads: list[str], layers: tuple[int, ...], segments: int,
            views: int, keep_tokens: bool, device: torch.device, precision: Precision,
            description: str) -> FeatureSet:
    """One pass of the frozen encoder over ``batches`` (rows ordered clip, segment, view, as the
    data pipeline's evaluation views are) → a FeatureSet on the CPU."""
    features, labels, keys = [], {h: [] for h in heads}, []
    for batch in inference(encoder, tqdm(batches, desc=description, mininterval=0.5), device, precision):
        tokens = read_tokens(encoder, batch["video"], layers).float()          # (b·s·v, n, L·d)
        tokens = rearrange(tokens, "(b s v) n d -> b v (s n) d", s=segments, v=views)
        features.append(tokens.half().cpu() if keep_tokens else tokens.mean(dim=2, keepdim=True).cpu())
        for head, value in batch_labels(batch, heads).items():
            labels[head].append(value.cpu())
        keys.extend(batch["key"])
    if not keys:
        raise ValueError(f"no samples in {description}")
    return FeatureSet(torch.cat(features), {h: torch.cat(v) for h, v in labels.items()}, keys)


class FeatureCache:
    """Entries ``<folder>/<key>.pt``; ``folder`` None keeps nothing on disk."""

    def __init__(self, folder: str | None):
        self.folder = folder
        self.hits: list[str] = []
        self.misses: list[str] = []

    def get_or_extract(self, parts: dict, extract_fn) -> FeatureSet:
        key = cache_key(parts)
        path = os.path.join(self.folder, f"{key}.pt") if self.folder else None
        if path and os.path.exists(path):
            try:
                entry = torch.load(path, map_location="cpu", weights_only=True)
                found = FeatureSet(entry["features"], entry["labels"], list(entry["keys"]))
                self.hits.append(path)
                return found
            except (OSError, RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as error:
                # a damaged entry is never trusted: extract again
                print(f"feature cache: {path} unreadable ({type(error).__name__}: {error}); extracting again")
        found = extract_fn()
        if path:
            os.makedirs(self.folder, exist_ok=True)
            temporary = f"{path}.tmp-{os.getpid()}"
            torch.save({"features": found.features, "labels": found.labels, "keys": found.keys,
                        "parts": json.dumps(parts, sort_keys=True, default=str)}, temporary)
            os.replace(temporary, path)
            self.misses.append(path)
        return found

"""Batching a ClipStream: collation into the cross-team batch format and the DataLoader wrapper.

Axis legend: b batch, c channels, t frames, h/w pixels; d latent channels, t'/h'/w' token grid.

    {"video": float (b, c, t, h, w), "label": long (b,), "labels": {head: long (b,)},
     "key": list[str]}  + optional "latents" (b, d, t', h', w'), "indices"/"scores" (b, t', h', w')
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from lvmae.components.data.reading.augment import normalise
from lvmae.components.data.reading.reader import ClipStream


def collate(items: list[dict]) -> dict:
    """Items of ClipStream → one batch in the cross-team format."""
    heads = items[0]["labels"].keys()
    batch = {"key": [item["key"] for item in items],
             "video": torch.stack([item["video"] for item in items]),
             "label": torch.tensor([item["label"] for item in items], dtype=torch.long),
             "labels": {h: torch.tensor([item["labels"][h] for item in items], dtype=torch.long) for h in heads}}
    for name in ("latents", "indices", "scores"):
        if name in items[0]:
            batch[name] = torch.stack([item[name] for item in items])
    return batch


class BatchLoader:
    """Batches of a ClipStream through a DataLoader. Workers ship uint8 clips (4× less
    inter-process traffic than float) and each batch is normalised once, in the main process —
    on ``device`` when given, after a non-blocking copy, so a GPU does the arithmetic."""

    def __init__(self, stream: ClipStream, batch_size: int, num_workers: int = 0, drop_last: bool = False,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 device: torch.device | str | None = None):
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be ≥ 1 and num_workers ≥ 0, got {batch_size}, {num_workers}")
        self.stream, self.device = stream, torch.device(device) if device is not None else None
        stream.emit_uint8 = True
        self.loader = torch.utils.data.DataLoader(
            stream, batch_size=batch_size, num_workers=num_workers, collate_fn=collate, drop_last=drop_last,
            persistent_workers=persistent_workers and num_workers > 0,
            prefetch_factor=prefetch_factor if num_workers else None,
            pin_memory=self.device is not None and self.device.type == "cuda")

    def __iter__(self) -> Iterator[dict]:
        for batch in self.loader:
            video = batch["video"]
            if self.device is not None:
                batch = to_device(batch, self.device)
                video = batch["video"]
            batch["video"] = normalise(video, self.stream.mean, self.stream.std)
            yield batch


def to_device(batch: dict, device: torch.device) -> dict:
    """Moves every tensor of a batch (and of nested dicts such as ``labels``) to ``device``,
    copied without blocking."""
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v)
                else to_device(v, device) if isinstance(v, dict) else v) for k, v in batch.items()}


def make_loader(stream: ClipStream, batch_size: int, num_workers: int = 0, drop_last: bool = False,
                prefetch_factor: int | None = None, persistent_workers: bool = False,
                device: torch.device | str | None = None) -> BatchLoader:
    """Batches in the cross-team format; workers split the stream (no sampler needed)."""
    return BatchLoader(stream, batch_size, num_workers, drop_last, prefetch_factor, persistent_workers, device)

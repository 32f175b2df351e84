"""Labels of a dataset to write: one vocabulary per dataset (head → class names, index = class id)
shared by every split — from the official class file when there is one, else in one pass over
every split's annotations — and every clip given its class ids (:func:`read_dataset`).

The row readers, one per annotation format, are writing/annotations.py.
"""
from __future__ import annotations

import collections
import csv
import json
import logging
import os

from lvmae.components.data.writing.annotations import (
    DIVING48_VOCABULARY,
    EPIC_CLASS_FILES,
    HEADS,
    AnnotationError,
    AnnotationFormat,
    ClipSpec,
    Vocabulary,
    _int,
    read_rows,
)

log = logging.getLogger(__name__)


def _epic_classes(labels_path: str | None, annotation_files: list[str]) -> Vocabulary | None:
    folders = [labels_path] if labels_path else sorted({os.path.dirname(os.path.abspath(p)) for p in annotation_files})
    if labels_path and os.path.isfile(labels_path):
        folders = [os.path.dirname(os.path.abspath(labels_path))]
    for folder in folders:
        files = {head: os.path.join(folder, name) for head, name in EPIC_CLASS_FILES.items()}
        present = [f for f in files.values() if os.path.isfile(f)]
        if len(present) == len(files):
            return {head: _class_csv(file) for head, file in files.items()}
        if labels_path:
            absent = [os.path.basename(f) for f in files.values() if not os.path.isfile(f)]
            raise FileNotFoundError(f"labels_path {labels_path}: epic100 needs the official class files "
                                    f"{list(EPIC_CLASS_FILES.values())} in one folder; missing {absent}")
    return None


def _class_csv(path: str) -> list[str]:
    """EPIC-100 class file (``id,key,instances,category``) → names by id; ids must be 0…n−1."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"id", "key"} <= set(reader.fieldnames or []):
            raise AnnotationError(f"{path}: an EPIC-100 class file has columns id,key,…; got {reader.fieldnames}")
        names = {_int(row["id"], f"{path} line {reader.line_num} id"): row["key"].strip() for row in reader}
    if sorted(names) != list(range(len(names))):
        raise AnnotationError(f"{path}: class ids must be 0…{len(names) - 1} without gaps")
    return [names[i] for i in range(len(names))]


def _load_vocabulary(annotation_format: str, labels_path: str) -> Vocabulary:
    if not os.path.exists(labels_path):
        raise FileNotFoundError(f"labels_path not found: {labels_path}")
    if annotation_format == "epic100":
        return _epic_classes(labels_path, [])
    if os.path.isdir(labels_path):
        raise AnnotationError(f"labels_path {labels_path}: a folder is only understood for epic100")
    if annotation_format == "ssv2":
        with open(labels_path, encoding="utf-8") as handle:
            index = json.load(handle)
        if not isinstance(index, dict):
            raise AnnotationError(f"{labels_path}: the SSv2 labels.json maps each class to its index")
        by_id = {_int(i, f"{labels_path} class {name!r}"): name for name, i in index.items()}
        if sorted(by_id) != list(range(len(by_id))):
            raise AnnotationError(f"{labels_path}: class indices must be 0…{len(by_id) - 1} without gaps")
        return {"label": [by_id[i] for i in range(len(by_id))]}
    if labels_path.endswith(".json"):
        with open(labels_path, encoding="utf-8") as handle:
            entries = json.load(handle)
        if not isinstance(entries, list):
            raise AnnotationError(f"{labels_path}: expected a JSON list of class names (index = class id)")
        # Diving48_vocab.json: one [takeoff, somersault, twist, flight] list per class.
        return {"label": [" ".join(map(str, e)) if isinstance(e, list) else str(e) for e in entries]}
    with open(labels_path, encoding="utf-8") as handle:
        names = [line.strip() for line in handle if line.strip()]
    return {"label": names}


def _names_from_rows(splits: dict[str, list[ClipSpec]], head: str) -> list[str]:
    labels = [c.labels[head] for clips in splits.values() for c in clips if c.labels[head] != -1]
    if all(isinstance(x, int) or x.lstrip("-").isdigit() for x in labels):
        top = max((int(x) for x in labels), default=-1)
        return [str(i) for i in range(top + 1)]
    return sorted(set(map(str, labels)))


def _epic_names_from_rows(splits: dict[str, list[ClipSpec]]) -> Vocabulary:
    """Without the class files: a class is named by its most frequent narrated form over every
    split; an id no row uses is named ``<head>_<id>`` (never a bare number)."""
    vocabulary = {}
    for head in EPIC_CLASS_FILES:
        forms: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
        for clips in splits.values():
            for clip in clips:
                forms[clip.labels[head]][getattr(clip, "names", {}).get(head, "")] += 1
        top = max(forms, default=-1)
        names = []
        for i in range(top + 1):
            counted = [(n, form) for form, n in forms.get(i, collections.Counter()).items() if form]
            names.append(max(counted, key=lambda x: (x[0], x[1]))[1] if counted else f"{head}_{i}")
        duplicates = [n for n, k in collections.Counter(names).items() if k > 1]
        vocabulary[head] = [f"{n} ({head}_{i})" if n in duplicates else n for i, n in enumerate(names)]
    return vocabulary


def build_vocabulary(annotation_format: AnnotationFormat, splits: dict[str, list[ClipSpec]],
                     annotation_files: list[str], labels_path: str | None = None,
                     known: Vocabulary | None = None) -> tuple[Vocabulary, str]:
    """One vocabulary for every split; returns it and where it came from."""
    if labels_path:
        return _load_vocabulary(annotation_format, labels_path), f"labels_path {labels_path}"
    if annotation_format == "epic100":
        official = _epic_classes(None, annotation_files)
        if official:
            return official, f"{' and '.join(EPIC_CLASS_FILES.values())} beside the annotations"
    if annotation_format == "diving48":
        for folder in sorted({os.path.dirname(os.path.abspath(p)) for p in annotation_files}):
            candidate = os.path.join(folder, DIVING48_VOCABULARY)
            if os.path.isfile(candidate):
                return _load_vocabulary("diving48", candidate), candidate
    if known:
        return known, "the existing manifest"
    if annotation_format == "epic100":
        log.warning("epic100 without %s: classes named by their most frequent narrated form over "
                    "every split (pass labels_path for the official names)", " / ".join(EPIC_CLASS_FILES.values()))
        return _epic_names_from_rows(splits), "the annotation files (most frequent narrated form)"
    heads = HEADS[annotation_format]
    return {head: _names_from_rows(splits, head) for head in heads}, "the annotation files (every split)"


def assign_ids(clips: list[ClipSpec], vocabulary: Vocabulary, source: str) -> list[ClipSpec]:
    """Class names → ids (and raw ids checked) against ``vocabulary``; errors name the line."""
    out = []
    index = {head: {name: i for i, name in enumerate(names)} for head, names in vocabulary.items()}
    for clip in clips:
        labels = {}
        for head, value in clip.labels.items():
            if head not in vocabulary:
                raise AnnotationError(f"{clip.where}: head {head!r} not in the vocabulary ({list(vocabulary)}, "
                                      f"from {source})")
            if isinstance(value, str) and value in index[head]:
                labels[head] = index[head][value]
            elif isinstance(value, int) or value.lstrip("-").isdigit():
                labels[head] = int(value)
                if not -1 <= labels[head] < len(vocabulary[head]):
                    raise AnnotationError(f"{clip.where}: {head} class {labels[head]} outside the "
                                          f"{len(vocabulary[head])} classes of {source}")
            else:
                raise AnnotationError(f"{clip.where}: {head} class {value!r} is not in the vocabulary "
                                      f"from {source}; pass labels_path with every class, or write "
                                      f"every split in one run (annotations={{'train': …, 'val': …}})")
        out.append(ClipSpec(clip.key, clip.video, labels, clip.start_frame, clip.stop_frame, clip.where, clip.events))
    return out


def read_dataset(annotations: dict[str, str], annotation_format: AnnotationFormat,
                 labels_path: str | None = None,
                 known: Vocabulary | None = None) -> tuple[dict[str, list[ClipSpec]], Vocabulary, str]:
    """Every split's clips with class ids from one vocabulary; returns (clips per split,
    vocabulary, where the vocabulary came from). ``known``: an existing manifest's vocabulary,
    kept when no class file is given."""
    rows = {split: read_rows(path, annotation_format) for split, path in annotations.items()}
    vocabulary, source = build_vocabulary(annotation_format, rows, list(annotations.values()), labels_path, known)
    return {split: assign_ids(clips, vocabulary, source) for split, clips in rows.items()}, vocabulary, source


def read_annotations(path: str, annotation_format: AnnotationFormat,
                     labels_path: str | None = None) -> tuple[list[ClipSpec], Vocabulary]:
    """One file: (clips in file order, vocabulary)."""
    splits, vocabulary, _ = read_dataset({"_": path}, annotation_format, labels_path)
    return splits["_"], vocabulary

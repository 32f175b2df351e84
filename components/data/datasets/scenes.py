"""A tiny procedural world for the task battery: textured objects of a few shapes on textured
backgrounds, moving, panning, flashing. Every task of the battery draws a *scene plan* (plain
numbers, JSON-able) and renders it here, so one renderer serves the pre-training world and
every task, and a label is a function of the plan alone.

Axis legend: t frames, h/w pixels (square, ``size``), c = 3 RGB channels.
"""
from __future__ import annotations

import numpy as np

SHAPES = ("disc", "square", "triangle", "cross")


def shape_mask(kind: str, size: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """Boolean (size, size) mask of a shape of outer ``radius`` px at ``centre`` (row, col),
    wrapping at the borders (a torus, so a moving object never leaves the frame)."""
    rows, cols = np.ogrid[:size, :size]
    # Signed offsets on the torus, in [−size/2, size/2).
    dy = (rows - centre[0] + size / 2) % size - size / 2
    dx = (cols - centre[1] + size / 2) % size - size / 2
    if kind == "disc":
        return dy ** 2 + dx ** 2 <= radius ** 2
    if kind == "square":
        half = radius * 0.8          # about the disc's area
        return (np.abs(dy) <= half) & (np.abs(dx) <= half)
    if kind == "triangle":           # pointing up; symmetric under a left–right flip
        top, bottom = -radius, radius * 0.7
        inside_rows = (dy >= top) & (dy <= bottom)
        return inside_rows & (np.abs(dx) <= (dy - top) / (bottom - top) * radius * 1.1)
    if kind == "cross":
        arm = radius * 0.38
        return ((np.abs(dy) <= radius) & (np.abs(dx) <= arm)) | ((np.abs(dx) <= radius) & (np.abs(dy) <= arm))
    raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPES}")


def stripes(size: int, period: float, angle: float, phase: float) -> np.ndarray:
    """A (size, size) stripe pattern in [−1, 1]."""
    rows, cols = np.mgrid[:size, :size].astype(np.float64)
    return np.sin(2 * np.pi * (cols * np.cos(angle) + rows * np.sin(angle)) / period + phase)


def smooth_texture(seed: int, size: int, cells: int) -> np.ndarray:
    """A (size, size) smooth random texture in about [−1, 1]: a ``cells``² grid of random
    values, upsampled bilinearly and made periodic (wraps like the world)."""
    grid = np.random.default_rng(seed).uniform(-1, 1, (cells, cells))
    coords = np.arange(size) * cells / size
    low = np.floor(coords).astype(int)
    frac = coords - low
    high = (low + 1) % cells
    rows = grid[low] * (1 - frac)[:, None] + grid[high] * frac[:, None]
    return rows[:, low] * (1 - frac)[None, :] + rows[:, high] * frac[None, :]


def random_colour(rng: np.random.Generator, low: float = 40.0, high: float = 230.0) -> list[float]:
    return [float(v) for v in rng.uniform(low, high, 3)]


def draw_object(rng: np.random.Generator, size: int, kind: str | None = None,
                radius: tuple[float, float] = (3.5, 6.5), speed: tuple[float, float] = (0.0, 1.0),
                velocity: tuple[float, float] | None = None, frames: tuple[int, int] | None = None,
                colour: list[float] | None = None) -> dict:
    """One object's plan: shape, colour, stripe texture, radius, start, velocity (px/frame),
    visible frames [start, stop) (None: always)."""
    if velocity is None:
        angle, magnitude = rng.uniform(0, 2 * np.pi), rng.uniform(*speed)
        velocity = (float(magnitude * np.sin(angle)), float(magnitude * np.cos(angle)))
    return {"kind": kind if kind is not None else SHAPES[int(rng.integers(len(SHAPES)))],
            "colour": colour if colour is not None else random_colour(rng),
            "radius": float(rng.uniform(*radius)),
            "start": [float(v) for v in rng.uniform(0, size, 2)],
            "velocity": [float(v) for v in velocity],
            "texture": {"amplitude": float(rng.uniform(0.0, 0.35)), "period": float(rng.uniform(2.5, 6.0)),
                        "angle": float(rng.uniform(0, np.pi)), "phase": float(rng.uniform(0, 2 * np.pi))},
            "frames": list(frames) if frames is not None else None}


def draw_background(rng: np.random.Generator, amplitude: tuple[float, float] = (0.0, 40.0),
                    pan_speed: tuple[float, float] = (0.0, 0.0), pan: tuple[float, float] | None = None) -> dict:
    """A background's plan: base colour, smooth texture (seed, cells, amplitude) and pan velocity."""
    if pan is None:
        angle, magnitude = rng.uniform(0, 2 * np.pi), rng.uniform(*pan_speed)
        pan = (float(magnitude * np.sin(angle)), float(magnitude * np.cos(angle)))
    return {"colour": random_colour(rng, 20.0, 200.0), "texture_seed": int(rng.integers(2**31)),
            "cells": int(rng.integers(3, 7)), "amplitude": float(rng.uniform(*amplitude)),
            "pan": [float(v) for v in pan]}


def render_scene(background: dict, objects: list[dict], frames: int, size: int, noise: float,
                 noise_seed: int) -> np.ndarray:
    """A scene plan → uint8 clip (t, h, w, c). Objects are drawn in order (later ones on top)."""
    texture = smooth_texture(background["texture_seed"], size, background["cells"])
    noise_rng = np.random.default_rng(noise_seed)
    clip = np.empty((frames, size, size, 3))
    for t in range(frames):
        shift = [round(v * t) for v in background["pan"]]
        moved = np.roll(texture, shift, axis=(0, 1))
        clip[t] = np.asarray(background["colour"]) + background["amplitude"] * moved[..., None]
        for obj in objects:
            if obj["frames"] is not None and not obj["frames"][0] <= t < obj["frames"][1]:
                continue
            centre = (obj["start"][0] + obj["velocity"][0] * t, obj["start"][1] + obj["velocity"][1] * t)
            mask = shape_mask(obj["kind"], size, centre, obj["radius"])
            tex = obj["texture"]
            # The stripes move with the object, so its texture is part of its appearance.
            pattern = np.roll(stripes(size, tex["period"], tex["angle"], tex["phase"]),
                              [round(c) for c in centre], axis=(0, 1))
            shade = 1.0 + tex["amplitude"] * pattern[mask]
            clip[t][mask] = np.asarray(obj["colour"])[None, :] * shade[:, None]
    clip += noise_rng.normal(0.0, noise, clip.shape)
    return np.clip(clip, 0, 255).astype(np.uint8)

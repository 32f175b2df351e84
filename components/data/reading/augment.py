"""Spatial augmentation applied identically to a clip and to its precomputed token grid.

Axis legend: c channels, t frames, h/w pixels; d latent channels, t'/h'/w' token grid.

Training: a random resized crop (area fraction ``scale``, aspect ``ratio``), resized to
``out_size`` (the scale jitter), then a horizontal flip with probability ``flip_prob``.
Evaluation: the centred square crop of the short side, resized. When the sample carries
token-grid fields (latents, indices, scores), the crop box is snapped to whole grid cells and
the grid is cropped and resampled with the nearest cell, so each output token still describes
the pixels it covers; token ids stay integers.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

Interpolation = Literal["bilinear", "nearest-exact"]
INTERPOLATIONS = ("bilinear", "nearest-exact")


@dataclasses.dataclass(frozen=True)
class CropBox:
    top: int
    left: int
    height: int
    width: int
    flip: bool = False


class SpatialAugment:
    """uint8 clip (t, H, W, c) + grid fields → uint8 (c, t, out, out) and grids of unchanged (h', w')."""

    def __init__(self, out_size: int, train: bool = True, scale: tuple[float, float] = (0.4, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip_prob: float = 0.5,
                 interpolation: Interpolation = "bilinear"):
        if out_size < 1:
            raise ValueError(f"out_size must be ≥ 1, got {out_size}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min ≤ max ≤ 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min ≤ max, got {ratio}")
        if not 0 <= flip_prob <= 1:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        self.out_size, self.train, self.scale, self.ratio, self.flip_prob = out_size, train, scale, ratio, flip_prob
        self.interpolation = interpolation

    def box(self, height: int, width: int, rng: np.random.Generator,
            cell: tuple[int, int] = (1, 1)) -> CropBox:
        """A crop in pixels whose edges fall on multiples of ``cell`` (the token cell size)."""
        cell_h, cell_w = cell
        rows, cols = height // cell_h, width // cell_w
        if not self.train:
            side = min(rows * cell_h, cols * cell_w)
            crop_rows, crop_cols = side // cell_h, side // cell_w
            return CropBox(((rows - crop_rows) // 2) * cell_h, ((cols - crop_cols) // 2) * cell_w,
                           crop_rows * cell_h, crop_cols * cell_w)
        area = height * width
        crop_h, crop_w = height, width
        for _ in range(10):   # torchvision's RandomResizedCrop: try, then fall back to the whole frame
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                crop_h, crop_w = h, w
                break
        crop_rows, crop_cols = max(1, round(crop_h / cell_h)), max(1, round(crop_w / cell_w))
        top = int(rng.integers(rows - crop_rows + 1)) * cell_h
        left = int(rng.integers(cols - crop_cols + 1)) * cell_w
        return CropBox(top, left, crop_rows * cell_h, crop_cols * cell_w, bool(rng.random() < self.flip_prob))

    def __call__(self, clip: np.ndarray, fields: dict[str, np.ndarray], rng: np.random.Generator
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """uint8 (t, H, W, c) + grids (…, h', w') → uint8 (c, t, out, out) + grids."""
        _, height, width, _ = clip.shape
        grid_hw = next((f.shape[-2:] for f in fields.values()), None)
        if grid_hw is not None and (height % grid_hw[0] or width % grid_hw[1]):
            raise ValueError(f"token grid {tuple(grid_hw)} does not tile the stored frame {height}×{width}")
        cell = (height // grid_hw[0], width // grid_hw[1]) if grid_hw is not None else (1, 1)
        box = self.box(height, width, rng, cell)
        # Resize uint8 in channels-last memory: torch's vectorised uint8 path is ~10× faster than
        # float (benchmarks/data_throughput.py); conversion to float happens once, in normalise.
        crop = torch.from_numpy(np.ascontiguousarray(
            clip[:, box.top:box.top + box.height, box.left:box.left + box.width]))
        crop = rearrange(crop, "t h w c -> t c h w")
        smooth = self.interpolation == "bilinear"
        out = F.interpolate(crop, size=(self.out_size, self.out_size), mode=self.interpolation,
                            **({"align_corners": False, "antialias": True} if smooth else {}))
        if box.flip:
            out = out.flip(-1)
        grids = {name: self._grid(torch.from_numpy(np.ascontiguousarray(value)), box, cell)
                 for name, value in fields.items()}
        return rearrange(out, "t c h w -> c t h w"), grids

    @staticmethod
    def _grid(value: torch.Tensor, box: CropBox, cell: tuple[int, int]) -> torch.Tensor:
        grid_h, grid_w = value.shape[-2:]
        rows = slice(box.top // cell[0], (box.top + box.height) // cell[0])
        cols = slice(box.left // cell[1], (box.left + box.width) // cell[1])
        crop = value[..., rows, cols]
        # Nearest cell: the output token centred at fraction u of the crop takes the crop cell at u.
        pick_r = torch.clamp(((torch.arange(grid_h) + 0.5) * crop.shape[-2] / grid_h).long(), max=crop.shape[-2] - 1)
        pick_c = torch.clamp(((torch.arange(grid_w) + 0.5) * crop.shape[-1] / grid_w).long(), max=crop.shape[-1] - 1)
        out = crop[..., pick_r, :][..., pick_c]
        return out.flip(-1) if box.flip else out


def channels_first(clip: np.ndarray) -> torch.Tensor:
    """uint8 (t, h, w, c) → uint8 (c, t, h, w) (no augmentation)."""
    return rearrange(torch.from_numpy(np.ascontiguousarray(clip)), "t h w c -> c t h w")


def normalise(video: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 ([b,] c, t, h, w) → float, (x/255 − mean)/std per channel, in one pass, on the
    video's device."""
    mean_c, std_c = (torch.tensor(v, dtype=torch.float32, device=video.device) for v in (mean, std))
    scale = rearrange(1.0 / (255.0 * std_c), "c -> c 1 1 1")
    shift = rearrange(mean_c / std_c, "c -> c 1 1 1")
    return torch.addcmul(-shift, video.float(), scale)


def short_side_boxes(height: int, width: int, size: int, resize: int, count: int = 1) -> list[CropBox]:
    """Evaluation crops in source pixels: the frame resized so its short side is ``resize``,
    then ``count`` squares of ``size`` spread evenly along the long side (one: centred) —
    computed on the source so only the crop is resampled."""
    if not 0 < size <= resize:
        raise ValueError(f"crop size must satisfy 0 < size ≤ resize, got size={size} resize={resize}")
    if count < 1:
        raise ValueError(f"spatial views must be ≥ 1, got {count}")
    side = max(1, round(min(height, width) * size / resize))     # the crop, in source pixels
    along_width = width >= height
    room = (width if along_width else height) - side
    other = ((height if along_width else width) - side) // 2
    starts = [room // 2] if count == 1 else [round(i * room / (count - 1)) for i in range(count)]
    return [CropBox(other, s, side, side) if along_width else CropBox(s, other, side, side) for s in starts]


def crop_resize(clip: np.ndarray, box: CropBox, size: int) -> torch.Tensor:
    """uint8 (t, H, W, c) → uint8 (c, t, size, size): the box, resized (antialiased), flipped
    when ``box.flip``."""
    crop = torch.from_numpy(np.ascontiguousarray(clip[:, box.top:box.top + box.height, box.left:box.left + box.width]))
    crop = rearrange(crop, "t h w c -> t c h w")
    if crop.shape[-2:] != (size, size):
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if box.flip:
        crop = crop.flip(-1)
    return rearrange(crop, "t c h w -> c t h w")

"""Procedural clips for training and testing the learned scorer: one bright moving square
over strong per-pixel, per-frame noise ("flicker"), so raw frame differences are large
everywhere and only a scorer that learned what matters finds the object
(benchmarks/scorer_learns.py, tests/test_scorer_learns.py).

Axis legend: b batch, C channels, T/H/W pixels, t/h/w token grid of stride (st, sh, sw).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from lvmae.components.scorers.base import check_stride
from lvmae.registry import register


def _interval_coverage(start: torch.Tensor, side: torch.Tensor, size: int) -> torch.Tensor:
    """start, side (b, T) → (b, T, size): the fraction of pixel [i, i+1) inside
    [start, start + side) — an anti-aliased edge."""
    pixel = torch.arange(size, dtype=torch.float32)
    low = torch.maximum(pixel, start[..., None])
    high = torch.minimum(pixel + 1, (start + side)[..., None])
    return (high - low).clamp(0.0, 1.0)


def _bounce(start: torch.Tensor, velocity: torch.Tensor, frames: int, room: torch.Tensor) -> torch.Tensor:
    """Positions (b, T) of a point moving at ``velocity`` and reflecting inside [0, room]."""
    travelled = start[:, None] + velocity[:, None] * torch.arange(frames, dtype=torch.float32)
    phase = torch.remainder(travelled, 2 * room[:, None])
    return room[:, None] - (phase - room[:, None]).abs()


@register("clips.flicker_square")
class FlickerSquare:
    """Batches ``{"video": (b, C, T, H, W), "object_coverage": (b, t, h, w)}``.

    Args:
      frames, image_size, channels: clip shape.
      stride: the token grid on which ``object_coverage`` (the object's mean alpha over each
        tubelet) is reported.
      side_px: (min, max) side of the square, drawn uniformly (real-valued: anti-aliased).
      speed_px: (min, max) speed per frame along each axis, random sign.
      brightness: the square's added intensity; noise_std: the flicker's standard deviation.
    """

    def __init__(self, frames: int = 16, image_size: int = 32, channels: int = 1,
                 stride: tuple[int, int, int] = (2, 4, 4), side_px: tuple[float, float] = (6.0, 8.0),
                 speed_px: tuple[float, float] = (1.0, 2.0), brightness: float = 1.0,
                 noise_std: float = 1.0):
        self.stride = check_stride(stride, "clips.flicker_square.stride")
        if frames % self.stride[0] or image_size % self.stride[1] or image_size % self.stride[2]:
            raise ValueError(f"clips.flicker_square: frames={frames} and image_size={image_size} "
                             f"must be divisible by stride {self.stride}")
        if not 0 < side_px[0] <= side_px[1] < image_size:
            raise ValueError(f"clips.flicker_square.side_px must satisfy 0 < min ≤ max < image_size, "
                             f"got {side_px!r}")
        self.frames, self.image_size, self.channels = frames, image_size, channels
        self.side_px, self.speed_px = tuple(side_px), tuple(speed_px)
        self.brightness, self.noise_std = float(brightness), float(noise_std)

    def _uniform(self, b: int, bounds, generator: torch.Generator) -> torch.Tensor:
        return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(b, generator=generator)

    def batch(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A batch drawn from ``generator`` (CPU)."""
        b, size, frames = batch_size, self.image_size, self.frames
        side = self._uniform(b, self.side_px, generator)
        room = size - side
        axes = []
        for _ in range(2):   # y then x
            start = torch.rand(b, generator=generator) * room
            sign = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
            velocity = sign * self._uniform(b, self.speed_px, generator)
            position = _bounce(start, velocity, frames, room)
            axes.append(_interval_coverage(position, side[:, None].expand(-1, frames), size))
        alpha = axes[0][..., :, None] * axes[1][..., None, :]                    # (b, T, H, W)
        noise = torch.randn(b, self.channels, frames, size, size, generator=generator)
        video = self.noise_std * noise + self.brightness * repeat(alpha, "b T H W -> b c T H W",
                                                                  c=self.channels)
        coverage = F.avg_pool3d(rearrange(alpha, "b T H W -> b 1 T H W"), self.stride, self.stride)
        return {"video": video, "object_coverage": coverage[:, 0]}


def object_token_mask(coverage: torch.Tensor, min_coverage: float = 0.25) -> torch.Tensor:
    """coverage (b, t, h, w) → bool (b, t, h, w): object tokens of latent frames ≥ 1 (frame 0
    is always selected, so it says nothing about the scorer)."""
    mask = coverage >= min_coverage
    mask[:, 0] = False
    return mask


def selection_recall(selection: torch.Tensor, coverage: torch.Tensor,
                     min_coverage: float = 0.25) -> float:
    """Fraction of object tokens (latent frames ≥ 1) that the selection (b, t, h, w) keeps."""
    objects = object_token_mask(coverage, min_coverage)
    total = int(objects.sum())
    if total == 0:
        raise ValueError("selection_recall: the clips hold no object token")
    return float((selection.detach() > 0.5)[objects].sum()) / total

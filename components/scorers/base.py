"""The scorer contract: ``video (b, C, T, H, W) → scores (b, t, h, w)`` on the token grid.

Axis legend: b batch, C channels, T/H/W pixels, t/h/w token grid of stride (st, sh, sw).

Scores compare a latent frame with the one before it, so latent frame 0 has no score of its
own; ``first_frame`` says what it gets: ``"zero"`` (never preferred; the tokenizer's top-k
keeps frame 0 anyway), ``"next"`` (a copy of latent frame 1's scores — neutral) or ``"max"``
(each clip's maximum — always ranked first).
"""
from __future__ import annotations

import abc
from typing import Literal, get_args

import torch
from torch import nn

from lvmae.registry import set_contract, subclass_of

FirstFrame = Literal["zero", "next", "max"]


def check_choice(value: str, choices, parameter: str) -> str:
    allowed = get_args(choices)
    if value not in allowed:
        raise ValueError(f"{parameter} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def check_stride(stride, parameter: str) -> tuple[int, int, int]:
    stride = tuple(int(s) for s in stride)
    if len(stride) != 3 or min(stride) < 1:
        raise ValueError(f"{parameter} must be three positive integers (st, sh, sw), got {stride!r}")
    return stride


class Scorer(nn.Module, abc.ABC):
    """Per-token importance on the grid of ``stride``; higher means more worth reconstructing."""

    stride: tuple[int, int, int]
    first_frame: FirstFrame = "zero"

    def check_video(self, video: torch.Tensor) -> None:
        st, sh, sw = self.stride
        if video.dim() != 5:
            raise ValueError(f"{type(self).__name__} expects video (b, C, T, H, W), got {tuple(video.shape)}")
        frames, height, width = video.shape[2:]
        if frames % st or height % sh or width % sw:
            raise ValueError(f"{type(self).__name__} with stride {self.stride} needs T % {st} == 0, "
                             f"H % {sh} == 0 and W % {sw} == 0; got T={frames}, H={height}, W={width}")
        if frames // st < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 latent frames "
                             f"(T ≥ {2 * st}), got T={frames}")

    @abc.abstractmethod
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (b, C, T, H, W) → scores (b, t, h, w) float."""

    def config(self) -> dict:
        """Constructor arguments as plain values (saved in checkpoints to rebuild it)."""
        return dict(self._config)

    def with_first_frame(self, later: torch.Tensor) -> torch.Tensor:
        """scores of latent frames 1… (b, t−1, h, w) → (b, t, h, w) per ``first_frame``."""
        if self.first_frame == "zero":
            first = torch.zeros_like(later[:, :1])
        elif self.first_frame == "next":
            first = later[:, :1]
        else:
            first = later.amax(dim=(1, 2, 3), keepdim=True).expand_as(later[:, :1])
        return torch.cat([first, later], dim=1)


def adjacent_distance(features: torch.Tensor) -> torch.Tensor:
    """features (b, c, t, h, w) → ‖f[t] − f[t−1]‖₂ over c, (b, t−1, h, w)."""
    return (features[:, :, 1:] - features[:, :, :-1]).pow(2).sum(dim=1).clamp_min(1e-12).sqrt()


set_contract("scorer", subclass_of(Scorer, forward=("video",)))

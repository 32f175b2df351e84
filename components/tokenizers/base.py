"""The tokenizer contract, its frame contract, and rebuilding a tokenizer from a checkpoint.

Axis legend: b batch, C channels, T/H/W pixels, d latent (code) dimension, t/h/w token grid.

Frame contract (tested): a tokenizer with stride (st, sh, sw) is non-causal and maps a clip of
T frames with T % st == 0 (and H % sh == W % sw == 0) to exactly T/st latent frames — unlike
MAGVIT-v2's causal tokenizer there is no extra first frame, so its grid equals the MAE
tubelet grid. ``window_frames`` (16 in the paper) is the clip length it is trained on; longer
clips are tokenized window by window with stride ``window_frames`` and concatenated along
time (``encode_windows``, docs/paper.md).
"""
from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn

from lvmae import registry
from lvmae.components.tokenizers.quantizer import Quantized, Quantizer
from lvmae.registry import set_contract, subclass_of


class Tokenizer(nn.Module, abc.ABC):
    """Encoder → quantizer → decoder on a declared stride and window length."""

    stride: tuple[int, int, int]
    window_frames: int
    in_channels: int
    quantizer: Quantizer

    @property
    def latent_dim(self) -> int:
        return self.quantizer.dim

    def grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(T, H, W) → token grid (t, h, w); raises when the frame contract is broken."""
        st, sh, sw = self.stride
        if frames % st or height % sh or width % sw:
            raise ValueError(f"{type(self).__name__} with stride {self.stride} needs T % {st} == 0, "
                             f"H % {sh} == 0 and W % {sw} == 0; got T={frames}, H={height}, W={width}")
        return frames // st, height // sh, width // sw

    def check_video(self, video: torch.Tensor) -> tuple[int, int, int]:
        if video.dim() != 5 or video.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects video (b, {self.in_channels}, T, H, W), "
                             f"got {tuple(video.shape)}")
        return self.grid(*video.shape[2:])

    @abc.abstractmethod
    def encode_continuous(self, video: torch.Tensor) -> torch.Tensor:
        """video (b, C, T, H, W) → pre-quantisation latents (b, d, t, h, w)."""

    @abc.abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (codes) (b, d, t, h, w) → video (b, C, T, H, W)."""

    def quantize(self, latents: torch.Tensor) -> Quantized:
        return self.quantizer(latents)

    def encode(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video (b, C, T, H, W) → (latents (b, d, t, h, w) quantized codes, indices (b, t, h, w))."""
        quantized = self.quantize(self.encode_continuous(video))
        return quantized.codes, quantized.indices

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (b, t, h, w) → video (b, C, T, H, W)."""
        codes = self.quantizer.indices_to_codes(indices)           # (b, t, h, w, d)
        return self.decode(codes.permute(0, 4, 1, 2, 3).contiguous())

    def encode_windows(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A long clip, window by window (``window_frames``, stride ``window_frames``),
        concatenated along time: video (b, C, T, H, W) with T % window_frames == 0 →
        (latents (b, d, T/st, h, w), indices (b, T/st, h, w))."""
        frames = video.shape[2]
        if frames % self.window_frames:
            raise ValueError(f"encode_windows needs T divisible by window_frames="
                             f"{self.window_frames}, got T={frames}")
        pieces = [self.encode(window) for window in video.split(self.window_frames, dim=2)]
        return (torch.cat([latents for latents, _ in pieces], dim=2),
                torch.cat([indices for _, indices in pieces], dim=1))

    def config(self) -> dict:
        """``{"name": registry name, "kwargs": constructor arguments}`` with nested components
        in the same form — enough to rebuild the module (see ``build_from_config``)."""
        return {"name": registered_name(self), "kwargs": dict(self._config)}


def registered_name(component: Any) -> str:
    """The ``kind.name`` a component's class was registered under."""
    for entry in registry.entries():
        if isinstance(entry.obj, type) and type(component) is entry.obj:
            return entry.full_name
    raise registry.RegistryError(f"{type(component).__qualname__} is not a registered component")


def component_config(component: Any) -> dict:
    """``{"name", "kwargs"}`` of a registered component that has a ``config()`` method."""
    config = component.config()
    return config if "name" in config else {"name": registered_name(component), "kwargs": config}


def build_from_config(config: dict) -> Any:
    """Rebuilds a component (and its nested ``{"name", "kwargs"}`` components) from a config
    saved by ``component_config``; gin bindings do not apply (every argument is explicit)."""
    if not isinstance(config, dict) or set(config) != {"name", "kwargs"}:
        raise ValueError(f"a component config is {{'name': ..., 'kwargs': {{...}}}}, got {config!r}")
    kwargs = {key: build_from_config(value) if isinstance(value, dict) and set(value) == {"name", "kwargs"}
              else value for key, value in config["kwargs"].items()}
    # Every constructor argument is passed explicitly, so gin bindings of the current process
    # cannot silently change a rebuilt checkpoint's architecture.
    return registry.get(config["name"]).obj(**kwargs)


set_contract("tokenizer", subclass_of(Tokenizer, encode_continuous=("video",), decode=("latents",)))

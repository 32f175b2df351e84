"""The adaptive tokenizer (docs/paper.md, tokenizer and scorer): tokenizer + learned scorer + differentiable
top-k, trained end to end. Unselected pre-quantisation latents are zeroed before the quantizer
and the decoder, so the tokenizer learns to reconstruct from the selected tokens and the
scorer — whose only gradient comes through the top-k mask — learns what to select.

Axis legend: b batch, C channels, T/H/W pixels, d latent dimension, t/h/w token grid.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from lvmae.components.masking.plan import count_from_ratio
from lvmae.components.scorers.base import Scorer
from lvmae.components.tokenizers.base import Tokenizer, build_from_config, component_config
from lvmae.components.tokenizers.quantizer import Quantized
from lvmae.components.topk.base import TopK
from lvmae.registry import register

_STD_EPS = 1e-6


@dataclasses.dataclass
class AdaptiveOutput:
    """recon (b, C, T, H, W); selection (b, t, h, w) float (1 = kept); scores (b, t, h, w) or
    None without a scorer; quantized: the codes/indices the decoder saw; losses: named terms,
    ``loss`` being their weighted sum."""

    recon: torch.Tensor
    selection: torch.Tensor
    scores: torch.Tensor | None
    quantized: Quantized
    losses: dict[str, torch.Tensor]


def standardize_per_clip(scores: torch.Tensor, first: int) -> torch.Tensor:
    """(b, t, h, w) → zero mean, unit variance over each clip's frames ≥ ``first``, so a
    top-k temperature or noise σ means the same thing whatever the features' scale."""
    scored = scores[:, first:]
    mean = scored.mean(dim=(1, 2, 3), keepdim=True)
    std = scored.std(dim=(1, 2, 3), keepdim=True)
    return (scores - mean) / (std + _STD_EPS)


@register("model.adaptive_tokenizer")
class AdaptiveTokenizer(nn.Module):
    """Tokenizer + optional scorer/top-k selection + optional perceptual term.

    Args:
      tokenizer: a built ``tokenizer.*``.
      scorer: a built ``scorer.*`` on the tokenizer's stride, or None (no selection: a plain
        autoencoder, every token kept).
      topk: a built ``topk.*`` (required with a scorer).
      selected_ratio: fraction of the scorable tokens (latent frames ≥ 1) kept, besides latent
        frame 0 which is always kept (the paper's k = 768 of 1,568; docs/paper.md, tokenizer and scorer).
      perceptual: an optional ``model.perceptual_loss`` (a local, user-supplied network).
      perceptual_weight: its weight in ``loss``.
    """

    def __init__(self, tokenizer: Tokenizer, scorer: Scorer | None = None, topk: TopK | None = None,
                 selected_ratio: float = 0.5, perceptual: nn.Module | None = None,
                 perceptual_weight: float = 0.1):
        super().__init__()
        if scorer is not None:
            if topk is None:
                raise ValueError("model.adaptive_tokenizer.topk is required when a scorer is given")
            if tuple(scorer.stride) != tuple(tokenizer.stride):
                raise ValueError(f"model.adaptive_tokenizer: scorer stride {tuple(scorer.stride)} "
                                 f"differs from the tokenizer's {tuple(tokenizer.stride)}")
        count_from_ratio(selected_ratio, 1, "model.adaptive_tokenizer.selected_ratio")
        self.tokenizer = tokenizer
        self.scorer = scorer
        self.topk = topk
        self.selected_ratio = float(selected_ratio)
        self.perceptual = perceptual
        self.perceptual_weight = float(perceptual_weight)

    def selected_count(self, grid: tuple[int, int, int]) -> int:
        """k: tokens kept per clip besides latent frame 0."""
        t, h, w = grid
        return count_from_ratio(self.selected_ratio, (t - 1) * h * w,
                                "model.adaptive_tokenizer.selected_ratio")

    def select(self, video: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """video → (selection (b, t, h, w), raw scores (b, t, h, w) or None)."""
        grid = self.tokenizer.check_video(video)
        if self.scorer is None:
            return video.new_ones(video.shape[0], *grid), None
        scores = self.scorer(video)
        standardized = standardize_per_clip(scores, first=1)
        selection = self.topk.select_on_grid(standardized, self.selected_count(grid),
                                             keep_first_frame=True, generator=generator)
        return selection, scores

    def forward(self, video: torch.Tensor, generator: torch.Generator | None = None) -> AdaptiveOutput:
        """video (b, C, T, H, W) → AdaptiveOutput (reconstruction, selection, losses)."""
        selection, scores = self.select(video, generator)
        latents = self.tokenizer.encode_continuous(video)                       # (b, d, t, h, w)
        quantized = self.tokenizer.quantize(latents * selection[:, None].to(latents.dtype))
        recon = self.tokenizer.decode(quantized.codes.to(latents.dtype))
        recon_loss = (recon.float() - video.float()).pow(2).mean()
        losses = {"recon_loss": recon_loss, **quantized.losses}
        if self.perceptual is not None:
            losses["perceptual_loss"] = self.perceptual_weight * self.perceptual(recon, video)
        losses["loss"] = sum(value for name, value in losses.items() if name.endswith("_loss"))
        return AdaptiveOutput(recon, selection, scores, quantized, losses)

    def config(self) -> dict:
        """Plain config to rebuild tokenizer + scorer + top-k (the perceptual net is a
        training-only term and is not part of the frozen model)."""
        return {"tokenizer": component_config(self.tokenizer),
                "scorer": component_config(self.scorer) if self.scorer is not None else None,
                "topk": None, "selected_ratio": self.selected_ratio}


def rebuild_adaptive_tokenizer(config: dict, state_dict: dict | None = None) -> AdaptiveTokenizer:
    """An AdaptiveTokenizer (without top-k: frozen use needs only scores) from ``config()``
    and optionally the weights of ``state_dict``."""
    tokenizer = build_from_config(config["tokenizer"])
    scorer = build_from_config(config["scorer"]) if config.get("scorer") else None
    model = AdaptiveTokenizer.__new__(AdaptiveTokenizer)
    nn.Module.__init__(model)
    model.tokenizer, model.scorer, model.topk = tokenizer, scorer, None
    model.selected_ratio, model.perceptual, model.perceptual_weight = config["selected_ratio"], None, 0.0
    if state_dict is not None:
        own = {k: v for k, v in state_dict.items() if not k.startswith("perceptual.")}
        model.load_state_dict(own)
    return model

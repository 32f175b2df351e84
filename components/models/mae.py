"""Video MAE with dual masking: encoder on ``enc_keep_idx``, decoder on ``dec_target_idx``.

Axis legend: b batch, C channels, T frames, H/W pixels, n tokens, k kept, q targets, c target width.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import nn

from lvmae import registry
from lvmae.components.backbones.vit import VideoViT
from lvmae.components.masking.base import DecoderMasking, EncoderMasking
from lvmae.components.masking.plan import MaskPlan
from lvmae.components.models.finite_watch import FiniteWatch
from lvmae.components.targets.base import Target
from lvmae.registry import register, set_contract, subclass_of

ScoreSource = Literal["auto", "batch", "scorer"]


@register("model.mae")
class VideoMAE(nn.Module):
    """Encoder + decoder + the two masking slots + a target.

    Args:
      encoder: a built backbone.
      decoder: a decoder *factory* (gin ``@decoder.mae`` without parentheses); it receives
        the encoder width, the target width and the token grid.
      encoder_masking, decoder_masking: strategies (any pair composes).
      target: what the decoder regresses.
      scorer: an optional live ``scorer.*`` (frozen, on the tubelet grid) giving the token
        scores of a decoder masking that needs them (``adaptive``).
      score_source: where those scores come from: ``auto`` = the batch's precomputed
        ``scores`` when present, else the live scorer; ``batch`` = precomputed only;
        ``scorer`` = always the live scorer (a heuristic-scorer baseline on shards that also
        carry learned scores).
    """

    def __init__(self, encoder: VideoViT, decoder: Callable[..., nn.Module],
                 encoder_masking: EncoderMasking, decoder_masking: DecoderMasking, target: Target,
                 scorer: nn.Module | None = None, score_source: ScoreSource = "auto"):
        super().__init__()
        if score_source not in get_args(ScoreSource):
            raise ValueError(f"model.mae.score_source must be one of {get_args(ScoreSource)}, "
                             f"got {score_source!r}")
        if score_source == "scorer" and scorer is None:
            raise ValueError("model.mae.score_source='scorer' needs model.mae.scorer")
        if scorer is not None and tuple(scorer.stride) != tuple(encoder.tubelet):
            raise ValueError(f"model.mae.scorer: its stride {tuple(scorer.stride)} differs from the "
                             f"encoder's tubelet {tuple(encoder.tubelet)}; the scores would not be on "
                             "the token grid")
        if scorer is not None:
            scorer.requires_grad_(False)   # a frozen ranking, never trained by the MAE loss
        self.scorer = scorer
        self.score_source = score_source
        self.encoder = encoder
        self.target = target
        self.decoder = decoder(encoder_dim=encoder.dim, grid=encoder.grid,
                               out_dim=target.channels(encoder.in_channels, encoder.tubelet))
        self.encoder_masking = encoder_masking
        self.decoder_masking = decoder_masking
        # non-finite scores, targets, predictions and losses, by component (the NaN guard reads it)
        self.finite_watch = FiniteWatch()
        self._watched = {"scores": f"scores of {registry.describe(scorer)}",
                         "batch scores": "the batch's precomputed scores (the shards' scores field)",
                         "targets": f"targets of {registry.describe(target)}",
                         "predictions": f"predictions of {registry.describe(self.decoder)}",
                         "loss": f"the loss of {registry.describe(target)}"}

    def plan(self, batch_size: int, generator: torch.Generator,
             scores: torch.Tensor | None = None) -> MaskPlan:
        if self.decoder_masking.needs_scores and scores is None:
            raise ValueError(f"{registry.describe(self.decoder_masking)} needs token scores; "
                             "give the batch a 'scores' field or configure a scorer")
        return MaskPlan.draw(self.encoder.grid, self.encoder_masking, self.decoder_masking,
                             batch_size, generator, scores)

    def token_scores(self, batch: dict) -> torch.Tensor | None:
        """Token scores (b, t, h, w) for the decoder masking, per ``score_source``; None when
        neither the batch nor a live scorer provides them (or the masking needs none)."""
        scores = batch.get("scores") if self.score_source != "scorer" else None
        if (scores is not None or self.scorer is None or self.score_source == "batch"
                or not self.decoder_masking.needs_scores):
            return scores
        with torch.no_grad():
            was_training = self.scorer.training
            scores = self.scorer.eval()(batch["video"])
            self.scorer.train(was_training)
        return scores

    def forward(self, batch: dict, generator: torch.Generator) -> tuple[dict[str, torch.Tensor], MaskPlan, torch.Tensor]:
        """batch{video (b, C, T, H, W)} → (loss terms, plan, predictions (b, q, c))."""
        video = batch["video"]
        scores = self.token_scores(batch)
        if scores is not None:
            live = self.scorer is not None and (self.score_source == "scorer" or batch.get("scores") is None)
            self.finite_watch.note(self._watched["scores" if live else "batch scores"], scores)
        plan = self.plan(video.shape[0], generator, scores)
        features = self.encoder(video, plan.enc_keep_idx)
        prediction = self.decoder(features, plan)
        with torch.no_grad():
            target = self.target(batch, plan, self.encoder.tubelet)
        self.finite_watch.note(self._watched["targets"], target)
        self.finite_watch.note(self._watched["predictions"], prediction)
        losses = self.target.loss(prediction, target, plan.loss_weight)
        self.finite_watch.note(self._watched["loss"], losses["loss"])
        return losses, plan, prediction

    def flops(self, kept_tokens: int, target_tokens: int) -> int:
        """Forward matmul FLOPs for one clip (×3 for a training step)."""
        return (self.encoder.flops(kept_tokens)
                + self.decoder.flops(kept_tokens, target_tokens, self.encoder.dim))


set_contract("model", subclass_of(nn.Module))

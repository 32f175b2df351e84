"""The target contract. Axis legend: b batch, n tokens, q decoder targets, c target channels."""
from __future__ import annotations

import abc

import torch
from torch import nn

from lvmae.components.masking.plan import MaskPlan
from lvmae.registry import set_contract, subclass_of


class Target(nn.Module, abc.ABC):
    """Turns a batch into per-token targets and scores predictions token by token.

    ``term`` names the loss term in the dict ``loss`` returns (logged as ``train/loss/<term>``).
    """

    term: str = "reconstruction"

    @abc.abstractmethod
    def channels(self, in_channels: int, tubelet: tuple[int, int, int]) -> int:
        """c: width of one token's target (the decoder's output width)."""

    @abc.abstractmethod
    def forward(self, batch: dict, plan: MaskPlan, tubelet: tuple[int, int, int]) -> torch.Tensor:
        """batch with ``video`` (b, C, T, H, W), plan → target (b, q, c) at dec_target_idx."""

    @abc.abstractmethod
    def per_token_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """prediction, target (b, q, c) → loss (b, q)."""

    def loss(self, prediction: torch.Tensor, target: torch.Tensor,
             weight: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted mean of the per-token loss with an explicit denominator (Σ weight).

        Returns ``loss`` (what is optimised), ``loss/<term>`` (the same term, named) and
        ``loss_tokens`` (the denominator: how many tokens the loss covered)."""
        per_token = self.per_token_loss(prediction.float(), target.float())
        denominator = weight.sum().clamp_min(1.0)
        term = (per_token * weight).sum() / denominator
        return {"loss": term, f"loss/{self.term}": term.detach(), "loss_tokens": denominator.detach()}


set_contract("target", subclass_of(Target, channels=("in_channels", "tubelet"),
                                         forward=("batch", "plan", "tubelet"),
                                         per_token_loss=("prediction", "target")))

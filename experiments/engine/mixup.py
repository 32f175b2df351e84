"""Mixup / CutMix for video clips with soft targets for every label head (timm's ``Mixup``).

Axis legend: b batch, C channels, T frames, H/W pixels, k classes of a head.

Each batch is paired with its flip (clip i with clip b−1−i, as timm does). Mixup blends whole
clips; CutMix pastes one spatial box through *all* frames (a tube), so motion inside the box
stays coherent. The same mixing weight λ applies to every label head; label smoothing is
folded into the soft targets.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from lvmae.experiments.engine.gin_config import gin_applies


@gin_applies
class video_mixup:  # pylint: disable=invalid-name  (gin name = what users type)
    """Mixes a batch with probability ``prob``; CutMix instead of Mixup with ``switch_prob``.

    Args:
      mixup_alpha, cutmix_alpha: Beta(α, α) parameters; 0 disables that kind.
      prob: probability that a batch is mixed at all.
      switch_prob: when both are enabled, probability of CutMix rather than Mixup.
      label_smoothing: ε spread uniformly over the classes of each head.
    """

    def __init__(self, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1):
        for name, value in [("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)]:
            if value < 0:
                raise ValueError(f"video_mixup.{name} must be ≥ 0, got {value!r}")
        for name, value in [("prob", prob), ("switch_prob", switch_prob)]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"video_mixup.{name} must lie in [0, 1], got {value!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"video_mixup.label_smoothing must lie in [0, 1), got {label_smoothing!r}")
        if mixup_alpha == 0 and cutmix_alpha == 0:
            raise ValueError("video_mixup: mixup_alpha and cutmix_alpha are both 0; drop video_mixup instead")
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.prob, self.switch_prob = float(prob), float(switch_prob)
        self.label_smoothing = float(label_smoothing)

    def soft_targets(self, labels: torch.Tensor, classes: int, lam: float) -> torch.Tensor:
        """labels (b,) → (b, k): λ·smooth(y) + (1 − λ)·smooth(y flipped)."""
        off = self.label_smoothing / classes
        one_hot = torch.full((labels.shape[0], classes), off, device=labels.device)
        one_hot.scatter_(1, labels[:, None], 1.0 - self.label_smoothing + off)
        return lam * one_hot + (1.0 - lam) * one_hot.flip(0)

    def __call__(self, video: torch.Tensor, labels: Mapping[str, torch.Tensor],
                 classes: Mapping[str, int], generator: torch.Generator
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor], float]:
        """video (b, C, T, H, W), {head: (b,)} → mixed video, {head: soft (b, k)}, λ."""
        uniform = lambda: float(torch.rand((), generator=generator))
        lam = 1.0
        if uniform() < self.prob:
            use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or uniform() < self.switch_prob)
            alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
            # Beta sampling takes no generator: draw it under a seed taken from ours.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(2**31 - 1, (), generator=generator)))
                lam = float(torch.distributions.Beta(alpha, alpha).sample())
            video = video.clone()
            if use_cutmix:
                height, width = video.shape[-2:]
                cut = math.sqrt(1.0 - lam)
                box_h, box_w = int(height * cut), int(width * cut)
                cy, cx = int(uniform() * height), int(uniform() * width)
                y0, y1 = max(cy - box_h // 2, 0), min(cy + box_h // 2, height)
                x0, x1 = max(cx - box_w // 2, 0), min(cx + box_w // 2, width)
                video[..., y0:y1, x0:x1] = video.flip(0)[..., y0:y1, x0:x1]
                lam = 1.0 - (y1 - y0) * (x1 - x0) / (height * width)   # the box actually pasted
            else:
                video = lam * video + (1.0 - lam) * video.flip(0)
        soft = {h: self.soft_targets(labels[h], classes[h], lam) for h in classes}
        return video, soft, lam

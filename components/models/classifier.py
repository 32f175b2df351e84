"""Video classifier for fine-tuning: encoder → one head per label head of the dataset.

Axis legend: b batch, C channels, T frames, H/W pixels, n tokens, k kept tokens, d width.

Training drops tokens with random-tube masking (docs/paper.md, fine-tuning: 20% at 128 frames, 0% at
32/64); evaluation always sees every token.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from lvmae.components.backbones.drop_path import add_drop_path
from lvmae.components.masking.encoder_tube import TubeMasking
from lvmae.registry import register

DEFAULT_HEAD = "label"


def head_classes(num_classes: int | Mapping[str, int]) -> dict[str, int]:
    """``4`` → ``{"label": 4}``; a mapping is kept (insertion order: the first is primary)."""
    if num_classes == 0:
        raise ValueError("model.classifier.num_classes is not set: bind the classifier as a factory "
                         "(finetune_loop.model = @model.classifier) to take the dataset's heads, "
                         "or give a class count / {head: classes}")
    if isinstance(num_classes, int):
        heads = {DEFAULT_HEAD: num_classes}
    elif isinstance(num_classes, Mapping):
        heads = {str(k): v for k, v in num_classes.items()}
    else:
        raise TypeError(f"model.classifier.num_classes must be an int or a mapping "
                         f"head → classes, got {num_classes!r}")
    if not heads or any(not isinstance(v, int) or v < 1 for v in heads.values()):
        raise ValueError(f"model.classifier.num_classes needs ≥ 1 class per head, got {heads}")
    return heads


@register("model.classifier")
class VideoClassifier(nn.Module):
    """Encoder (all tokens at evaluation, a random-tube subset in training) → heads.

    Args:
      encoder: a built backbone (``forward(video, enc_keep_idx)``, ``.grid``, ``.dim``).
      head: a head *factory* (gin ``@head.mean_linear`` without parentheses), called once per
        label head with ``dim`` and ``num_classes``.
      num_classes: classes of the single head ``label``, or ``{head name: classes}`` — the
        fine-tuning loop passes the dataset manifest's heads.
      token_drop: fraction of tokens dropped (as whole tubes) in training, in [0, 1).
      drop_path: stochastic-depth rate of the last encoder block, in [0, 1).
    """

    def __init__(self, encoder: nn.Module, head: Callable[..., nn.Module],
                 num_classes: int | Mapping[str, int] = 0, token_drop: float = 0.0,
                 drop_path: float = 0.0):
        super().__init__()
        if not isinstance(token_drop, (int, float)) or not 0.0 <= token_drop < 1.0:
            raise ValueError(f"model.classifier.token_drop must lie in [0, 1), got {token_drop!r}")
        self.encoder = encoder
        self.heads = nn.ModuleDict({name: head(dim=encoder.dim, num_classes=classes)
                                    for name, classes in head_classes(num_classes).items()})
        self.token_drop = float(token_drop)
        self.token_dropper = TubeMasking(keep_ratio=1.0 - token_drop) if token_drop else None
        self._drop_path_hooks = add_drop_path(encoder, drop_path)

    @property
    def head_names(self) -> list[str]:
        return list(self.heads)

    def keep_indices(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor | None:
        """enc_keep_idx (b, k) in training with token drop, else None (every token)."""
        if not self.training or self.token_dropper is None:
            return None
        if generator is None:
            raise ValueError("model.classifier: token_drop > 0 needs a torch.Generator in training")
        return self.token_dropper(self.encoder.grid, batch_size, generator)

    def features(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """video (b, C, T, H, W) → tokens (b, k or n, d)."""
        return self.encoder(video, self.keep_indices(video.shape[0], generator))

    def forward(self, video: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """video (b, C, T, H, W) → {head name: logits (b, classes)}."""
        tokens = self.features(video, generator)
        return {name: head(tokens) for name, head in self.heads.items()}

"""Uniform (frame-level) decoder masking: every token of every k-th latent frame
(the paper's "Uniform" baseline, after VideoMAE V2 [14]; 1 frame in 7 ≈ 14.3% of tokens)."""
from __future__ import annotations

import torch
from einops import rearrange

from lvmae.components.masking.base import DecoderMasking
from lvmae.components.masking.plan import TokenGrid
from lvmae.registry import register


@register("masking.decoder.uniform")
class UniformFrameDecoding(DecoderMasking):
    """Decodes whole latent frames spaced ``stride = round(1 / budget)`` apart.

    The number of frames is ``max(1, t // stride)`` for every clip (fixed counts per batch);
    with ``random_phase`` each clip draws the first frame uniformly among the offsets that fit
    that many frames, otherwise it starts at frame 0.

    Policy for overlap: whole frames include tokens the encoder kept; they are decoded but get
    ``loss_weight`` 0 (MaskPlan), so the loss covers only tokens the encoder did not see.
    """

    decodes_kept_tokens = True

    def __init__(self, budget: float = 0.15, random_phase: bool = True):
        if not isinstance(budget, (int, float)) or not 0.0 < float(budget) <= 1.0:
            raise ValueError(f"masking.decoder.uniform.budget must be a fraction in (0, 1], got {budget!r}")
        self.budget = float(budget)
        self.stride = max(1, round(1.0 / self.budget))
        self.random_phase = bool(random_phase)

    def frame_count(self, grid: TokenGrid) -> int:
        """f: latent frames every clip decodes."""
        return max(1, grid.t // self.stride)

    def count(self, grid: TokenGrid, kept: int) -> int:
        return self.frame_count(grid) * grid.cells

    def frames(self, grid: TokenGrid, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """(b, f) long: the latent frames each clip decodes."""
        count = self.frame_count(grid)
        stride = self.stride if count > 1 else 1
        offsets = grid.t - (count - 1) * stride            # admissible first frames: [0, offsets)
        if self.random_phase:
            first = torch.randint(offsets, (batch_size, 1), generator=generator, device=generator.device)
        else:
            first = torch.zeros(batch_size, 1, dtype=torch.long, device=generator.device)
        return first + stride * torch.arange(count, device=generator.device)

    def __call__(self, grid: TokenGrid, enc_keep_idx: torch.Tensor, generator: torch.Generator,
                 scores: torch.Tensor | None = None) -> torch.Tensor:
        frames = self.frames(grid, enc_keep_idx.shape[0], generator)            # (b, f)
        cells = torch.arange(grid.cells, device=frames.device)                  # (c,)
        idx = rearrange(frames, "b f -> b f 1") * grid.cells + rearrange(cells, "c -> 1 1 c")
        return rearrange(idx, "b f c -> b (f c)")

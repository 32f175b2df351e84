"""Lookup-free quantization (MAGVIT-v2, Yu et al. ICLR 2024), the alternative to FSQ.

Axis legend: b batch, d code dimension = bits, t/h/w token grid (any trailing axes).

Each channel is quantized to ±``code_scale`` by its sign; the index is the binary number of
the positive bits (channel 0 least significant). The entropy loss asks every token to be
confidently assigned (low per-token entropy) while the batch uses the codebook evenly (high
codebook entropy). With codes at ±1, the softmax over all 2^d codes of −‖z − c‖²/τ factorises
into d independent bit distributions, so the per-token entropy is exact without enumerating
2^d codes; the codebook entropy uses the product of the batch's mean bit marginals (an upper
bound on the true codebook entropy — the usual factorised approximation).
"""
from __future__ import annotations

import torch
from einops import rearrange

from lvmae.components.tokenizers.quantizer import Quantized, Quantizer, no_autocast
from lvmae.registry import register

_LOG_EPS = 1e-6   # keeps log(p) finite at saturated probabilities


def _binary_entropy(probability: torch.Tensor) -> torch.Tensor:
    p = probability.clamp(_LOG_EPS, 1 - _LOG_EPS)
    return -(p * p.log() + (1 - p) * (1 - p).log())


@register("quantizer.lfq")
class LFQ(Quantizer):
    """LFQ with ``bits`` channels (codebook 2^bits) and its entropy/commitment losses."""

    def __init__(self, bits: int = 18, code_scale: float = 1.0, temperature: float = 0.01,
                 entropy_weight: float = 0.1, codebook_entropy_weight: float = 1.0,
                 commitment_weight: float = 0.25):
        super().__init__()
        if not isinstance(bits, int) or not 1 <= bits <= 62:
            raise ValueError(f"quantizer.lfq.bits must be an integer in [1, 62], got {bits!r}")
        for name, value in [("code_scale", code_scale), ("temperature", temperature)]:
            if value <= 0:
                raise ValueError(f"quantizer.lfq.{name} must be > 0, got {value!r}")
        self._config = dict(bits=bits, code_scale=code_scale, temperature=temperature,
                            entropy_weight=entropy_weight,
                            codebook_entropy_weight=codebook_entropy_weight,
                            commitment_weight=commitment_weight)
        self.dim = bits
        self.codebook_size = 2 ** bits
        self.code_scale = float(code_scale)
        self.temperature = float(temperature)
        self.entropy_weight = float(entropy_weight)
        self.codebook_entropy_weight = float(codebook_entropy_weight)
        self.commitment_weight = float(commitment_weight)
        self.register_buffer("basis", 2 ** torch.arange(bits, dtype=torch.long), persistent=False)

    def forward(self, latents: torch.Tensor) -> Quantized:
        """latents (b, d, ...) → Quantized(codes (b, d, ...) = ±code_scale, indices (b, ...))."""
        if latents.dim() < 2 or latents.shape[1] != self.dim:
            raise ValueError(f"quantizer.lfq expects (b, {self.dim}, ...) latents (one channel "
                             f"per bit), got {tuple(latents.shape)}")
        with no_autocast(latents):
            z = rearrange(latents.float(), "b d ... -> b ... d")
            hard = torch.where(z > 0, self.code_scale, -self.code_scale)
            codes = hard + (z - z.detach())     # exactly ±scale forward, identity backward
            indices = self.codes_to_indices(hard)
            # p(bit = +1) under softmax(−‖z − c‖²/τ): the ±scale distance difference is 4·scale·z.
            bit_probability = torch.sigmoid(4 * self.code_scale * z / self.temperature)
            token_entropy = _binary_entropy(bit_probability).sum(dim=-1).mean()
            mean_bits = rearrange(bit_probability, "b ... d -> (b ...) d").mean(dim=0)
            codebook_entropy = _binary_entropy(mean_bits).sum()
            commitment = (z - hard.detach()).pow(2).mean()
            losses = {
                "token_entropy": token_entropy.detach(),
                "codebook_entropy": codebook_entropy.detach(),
                "entropy_loss": self.entropy_weight
                * (token_entropy - self.codebook_entropy_weight * codebook_entropy),
                "commitment_loss": self.commitment_weight * commitment,
            }
            codes = rearrange(codes, "b ... d -> b d ...")
        return Quantized(codes=codes, indices=indices, losses=losses)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (..., d) → indices (...) long: the bits where the code is positive."""
        return ((codes > 0).long() * self.basis).sum(dim=-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (...) → codes (..., d) float32 in {−code_scale, +code_scale}."""
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(f"quantizer.lfq: indices must lie in [0, {self.codebook_size})")
        bits = (indices.long()[..., None] // self.basis) % 2
        return (bits.float() * 2 - 1) * self.code_scale

"""FSQ and LFQ: parity with vector-quantize-pytorch, code ↔ index bijections, one result type."""
from __future__ import annotations

import pytest
import torch

from lvmae import registry
from lvmae.components.tokenizers.fsq import FSQ
from lvmae.components.tokenizers.lfq import LFQ
from lvmae.components.tokenizers.quantizer import Quantized

registry.discover()

LEVEL_SETS = [[8, 8, 8, 8, 8, 8], [8, 5, 5, 5], [7, 5, 5, 5, 5], [3, 3, 3], [8, 6, 5]]


@pytest.mark.parametrize("levels", LEVEL_SETS, ids=str)
def test_fsq_matches_vector_quantize_pytorch(levels):
    peer_module = pytest.importorskip("vector_quantize_pytorch")
    peer = peer_module.FSQ(levels=levels)
    ours = FSQ(levels)
    generator = torch.Generator().manual_seed(len(levels))
    # Wide inputs reach every level, including the saturated extremes.
    latents = 3 * torch.randn(4, len(levels), 3, 5, 5, generator=generator)
    peer_codes, peer_indices = peer(latents)
    result = ours(latents)
    # The peer's straight-through sum x + (round(x) − x) can miss a code by one ulp; ours is
    # exact (codes are multiples of 1/half_width), so codes agree to float precision.
    torch.testing.assert_close(result.codes, peer_codes, rtol=0, atol=1e-6)
    assert torch.equal(result.indices, peer_indices.long())
    half_width = (ours.levels // 2).float()[:, None, None, None]
    scaled = result.codes[0] * half_width
    assert torch.equal(scaled, scaled.round())
    assert result.indices.shape == (4, 3, 5, 5)
    assert ours.codebook_size == peer.codebook_size


@pytest.mark.parametrize("levels", [[8, 8, 8, 8, 8, 8], [7, 5, 5, 5, 5]], ids=str)
def test_fsq_index_code_index_is_identity_over_the_whole_codebook(levels):
    fsq = FSQ(levels)
    every_index = torch.arange(fsq.codebook_size)
    codes = fsq.indices_to_codes(every_index)
    assert torch.equal(fsq.codes_to_indices(codes), every_index)
    # Each code is reached by quantising a latent (bound∘round maps onto every code).
    requantized = fsq(_preimage(fsq, codes).T[None])             # (1, d, codebook)
    assert torch.equal(requantized.indices[0], every_index)


def _preimage(fsq: FSQ, codes: torch.Tensor) -> torch.Tensor:
    """A latent that quantizes to ``codes`` (inverts the tanh bound at the level centres)."""
    levels = fsq.levels.float()
    half_l = (levels - 1) * (1 + 1e-3) / 2
    offset = torch.where(fsq.levels % 2 == 0, 0.5, 0.0)
    target = codes * (levels // 2) + offset
    return torch.atanh(target / half_l) - torch.atanh(offset / half_l)


def test_fsq_is_straight_through_and_float32_under_autocast():
    fsq = FSQ([8, 5, 5, 5])
    latents = torch.randn(2, 4, 2, 3, 3, requires_grad=True)
    fsq(latents).codes.sum().backward()
    assert latents.grad is not None and (latents.grad > 0).all()   # d bound / dz > 0 everywhere
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = fsq(latents.detach().bfloat16())
    assert under_autocast.codes.dtype == torch.float32
    assert torch.equal(under_autocast.indices, fsq(latents.detach().bfloat16().float()).indices)


def test_fsq_rejects_bad_levels_and_channel_counts():
    with pytest.raises(ValueError, match="quantizer.fsq.levels"):
        FSQ([8, 2])
    with pytest.raises(ValueError, match=r"\(b, 4, \.\.\.\)"):
        FSQ([8, 5, 5, 5])(torch.zeros(1, 6, 2, 2, 2))


def test_lfq_bijection_losses_and_same_result_type():
    lfq = LFQ(bits=10)
    every_index = torch.arange(lfq.codebook_size)
    assert torch.equal(lfq.codes_to_indices(lfq.indices_to_codes(every_index)), every_index)
    latents = torch.randn(2, 10, 2, 3, 3, requires_grad=True)
    result, fsq_result = lfq(latents), FSQ([8, 5, 5, 5])(torch.randn(2, 4, 2, 3, 3))
    for quantized in (result, fsq_result):
        assert isinstance(quantized, Quantized)
        assert quantized.indices.dtype == torch.long and quantized.indices.shape == (2, 2, 3, 3)
    assert set(result.codes.detach().abs().unique().tolist()) == {1.0}
    # Per-token entropy ≤ log 2 per bit, and the factorised codebook entropy bounds it from above.
    assert 0 <= float(result.losses["token_entropy"]) <= 10 * torch.log(torch.tensor(2.0)) + 1e-4
    total = sum(v for k, v in result.losses.items() if k.endswith("_loss"))
    (total + result.codes.sum()).backward()
    assert latents.grad.abs().sum() > 0


def test_lfq_entropy_loss_rewards_using_the_codebook():
    """Confident tokens spread over codes score lower than confident tokens on one code."""
    lfq = LFQ(bits=4, temperature=0.01)
    spread = lfq.indices_to_codes(torch.arange(16)).T.reshape(1, 4, 16)
    collapsed = lfq.indices_to_codes(torch.zeros(16, dtype=torch.long)).T.reshape(1, 4, 16)
    assert lfq(spread).losses["entropy_loss"] < lfq(collapsed).losses["entropy_loss"]


def test_quantizers_are_registered_and_build_from_gin_names():
    assert {"fsq", "lfq"} <= set(registry.names("quantizer"))
    assert registry.build("quantizer.fsq", levels=[3, 3]).codebook_size == 9

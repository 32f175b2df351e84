"""Imported VideoMAE weights: parity with Hugging Face's VideoMAE encoder (a peer implementation).

HF weights are rewritten into the official MCG-NJU checkpoint layout (the one users download),
loaded through ``load_pretrained_encoder`` into a ``VideoViT`` with VideoMAE's positions
(``positions="sincos_1d"``, a fixed table that checkpoints do not store): both encoders must
give the same tokens.
"""
from __future__ import annotations

import pytest
import torch

from lvmae.components.backbones.vit import VideoViT
from lvmae.components.models.videomae_import import convert, is_videomae
from lvmae.experiments.engine.pretrained import load_pretrained_encoder
from lvmae.experiments.engine.training import save_checkpoint

transformers = pytest.importorskip("transformers")


def mcg_nju_layout(hf_state: dict) -> dict:
    """HF ``VideoMAEModel`` state → the official VideoMAE pre-training checkpoint layout."""
    out = {"encoder.patch_embed.proj.weight": hf_state["embeddings.patch_embeddings.projection.weight"],
           "encoder.patch_embed.proj.bias": hf_state["embeddings.patch_embeddings.projection.bias"],
           "encoder.norm.weight": hf_state["layernorm.weight"],
           "encoder.norm.bias": hf_state["layernorm.bias"],
           "decoder.head.weight": torch.zeros(3, 3), "mask_token": torch.zeros(1, 1, 3)}
    layers = {int(k.split(".")[2]) for k in hf_state if k.startswith("encoder.layer.")}
    for i in layers:
        hf, ours = f"encoder.layer.{i}.", f"encoder.blocks.{i}."
        attention = hf + "attention.attention."
        out[ours + "attn.qkv.weight"] = torch.cat([hf_state[attention + n + ".weight"]
                                                   for n in ("query", "key", "value")])
        out[ours + "attn.q_bias"] = hf_state[attention + "query.bias"]
        out[ours + "attn.v_bias"] = hf_state[attention + "value.bias"]
        for theirs, mine in [("attention.output.dense", "attn.proj"), ("layernorm_before", "norm1"),
                             ("layernorm_after", "norm2"), ("intermediate.dense", "mlp.fc1"),
                             ("output.dense", "mlp.fc2")]:
            for p in ("weight", "bias"):
                out[f"{ours}{mine}.{p}"] = hf_state[f"{hf}{theirs}.{p}"]
    return out


def test_imported_videomae_weights_match_the_hugging_face_encoder(tmp_path):
    torch.manual_seed(0)
    config = transformers.VideoMAEConfig(
        image_size=32, patch_size=8, num_channels=3, num_frames=8, tubelet_size=2, hidden_size=24,
        num_hidden_layers=2, num_attention_heads=2, intermediate_size=96, qkv_bias=True,
        use_mean_pooling=False, layer_norm_eps=1e-6, hidden_act="gelu")
    hf = transformers.VideoMAEModel(config).eval()
    for parameter in hf.parameters():               # biases are zero at init: randomise all
        torch.nn.init.normal_(parameter, std=0.2)
    state = mcg_nju_layout(hf.state_dict())
    assert is_videomae(state) and not is_videomae(convert(state))
    path = save_checkpoint(str(tmp_path / "videomae.pth"), {"model": state})
    ours = VideoViT(8, 32, (2, 8, 8), dim=24, depth=2, heads=2, positions="sincos_1d").eval()
    report = load_pretrained_encoder(ours, path)
    assert report.source == "videomae"
    video = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        expected = hf(video.transpose(1, 2)).last_hidden_state       # HF takes (b, T, C, H, W)
        got = ours(video)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()

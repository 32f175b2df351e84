"""Parity with a peer implementation: ``transformers``' VideoMAE (test-only dependency).

A randomly initialised HF VideoMAEForPreTraining and our model.mae, after importing its
weights, must give the same encoder features and decoder reconstructions on the same clip
and mask; exporting our weights back must give the HF model the same outputs again.
"""
from __future__ import annotations

import pytest
import torch

from lvmae import registry
from lvmae.components.backbones.mae_decoder import MAEDecoder
from lvmae.components.backbones.vit import VideoViT
from lvmae.components.masking.decoder_all import AllMaskedDecoding
from lvmae.components.masking.encoder_tube import TubeMasking
from lvmae.components.models.hf_videomae import hf_build_kwargs, mae_from_hf, mae_to_hf
from lvmae.components.models.mae import VideoMAE
from lvmae.components.targets.pixels import PixelTarget

transformers = pytest.importorskip("transformers")
registry.discover()

TOLERANCE = 1e-4


def _hf_model(seed: int = 0):
    config = transformers.VideoMAEConfig(
        image_size=32, patch_size=8, num_channels=3, num_frames=8, tubelet_size=2, hidden_size=64,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, decoder_hidden_size=48,
        decoder_num_hidden_layers=2, decoder_num_attention_heads=3, decoder_intermediate_size=96,
        use_mean_pooling=False, norm_pix_loss=True, attn_implementation="sdpa")
    torch.manual_seed(seed)
    model = transformers.VideoMAEForPreTraining(config).eval()
    with torch.no_grad():      # HF initialises biases and norms to 0/1: make them informative
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or "layernorm" in name or "norm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model, config


def _ours(config) -> VideoMAE:
    kwargs = hf_build_kwargs(config.to_dict())
    return VideoMAE(VideoViT(**kwargs["encoder"]),
                    lambda **k: MAEDecoder(**k, **kwargs["decoder"]),
                    TubeMasking(0.25), AllMaskedDecoding(), PixelTarget("patch_channel")).eval()


def _clip_and_plan(model: VideoMAE, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    video = torch.randn(2, 3, 8, 32, 32, generator=generator)
    plan = model.plan(2, generator)
    return video, plan


def test_hf_weights_give_same_encoder_and_decoder_outputs():
    hf, config = _hf_model()
    ours = _ours(config)
    missing, unexpected = ours.load_state_dict(mae_from_hf(hf.state_dict()), strict=True)
    assert not missing and not unexpected
    video, plan = _clip_and_plan(ours)
    hf_video = video.transpose(1, 2)                       # (b, T, C, H, W)
    hidden_mask = ~plan.enc_keep_mask                      # HF: True = masked
    with torch.no_grad():
        hf_features = hf.videomae(hf_video, bool_masked_pos=hidden_mask).last_hidden_state
        features = ours.encoder(video, plan.enc_keep_idx)
        assert (features - hf_features).abs().max() < TOLERANCE
        hf_out = hf(hf_video, bool_masked_pos=hidden_mask)
        prediction = ours.decoder(features, plan)
    assert prediction.shape == hf_out.logits.shape
    assert (prediction - hf_out.logits).abs().max() < TOLERANCE
    # per-channel norm-pix is invariant to HF's un-normalisation (an affine map per channel)
    target = ours.target({"video": video}, plan, ours.encoder.tubelet)
    loss = ours.target.loss(prediction, target, plan.loss_weight)["loss"]
    assert abs(loss.item() - hf_out.loss.item()) < 1e-3 * hf_out.loss.item()


def test_export_round_trip_reproduces_hf_outputs():
    hf, config = _hf_model(seed=3)
    ours = _ours(config)
    ours.load_state_dict(mae_from_hf(hf.state_dict()))
    with torch.no_grad():                                  # move ours away from HF's weights
        for parameter in ours.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    hf_back, _ = _hf_model(seed=4)
    missing, unexpected = hf_back.load_state_dict(mae_to_hf(ours.state_dict()), strict=False)
    assert not unexpected and all("key.bias" not in k for k in missing)
    video, plan = _clip_and_plan(ours, seed=5)
    with torch.no_grad():
        hf_out = hf_back(video.transpose(1, 2), bool_masked_pos=~plan.enc_keep_mask).logits
        prediction = ours.decoder(ours.encoder(video, plan.enc_keep_idx), plan)
    assert (prediction - hf_out).abs().max() < TOLERANCE


def test_export_refuses_a_projection_bias_hf_cannot_hold():
    _, config = _hf_model()
    ours = _ours(config)
    state = ours.state_dict()
    state["decoder.proj_in.bias"] = torch.ones(1)
    with pytest.raises(ValueError, match="proj_bias"):
        mae_to_hf(state)


def test_a_checkpoint_on_disk_starts_our_model(tmp_path):
    from lvmae.components.models.hf_videomae import load_hf_checkpoint
    hf, config = _hf_model(seed=6)
    bin_path = tmp_path / "pytorch_model.bin"
    torch.save(hf.state_dict(), bin_path)
    paths = [bin_path]
    try:
        from safetensors.torch import save_file
        safe_path = tmp_path / "model.safetensors"
        save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(safe_path))
        paths.append(safe_path)
    except ImportError:
        pass
    for path in paths:
        ours = _ours(config)
        ours.load_state_dict(mae_from_hf(load_hf_checkpoint(str(path))), strict=True)
        for key, value in mae_from_hf(hf.state_dict()).items():
            assert torch.equal(ours.state_dict()[key], value), (path.name, key)


def test_an_unrelated_state_dict_is_refused_by_name():
    with pytest.raises(KeyError, match="not a VideoMAE state dict"):
        mae_from_hf({"weight": torch.zeros(1)})

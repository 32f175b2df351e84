"""The MAGVIT-style tokenizer: frame contract, grid = MAE tubelet grid, windows, rebuild from
config, and the optional GAN / perceptual terms."""
from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from lvmae import registry
from lvmae.components.models.adaptive_tokenizer import AdaptiveTokenizer, rebuild_adaptive_tokenizer
from lvmae.components.models.perceptual_loss import PerceptualLoss
from lvmae.components.models.video_discriminator import (
    VideoDiscriminator,
    discriminator_gan_loss,
    generator_gan_loss,
    r1_penalty,
)
from lvmae.components.scorers.learned import LearnedScorer
from lvmae.components.tokenizers.base import build_from_config
from lvmae.components.tokenizers.fsq import FSQ
from lvmae.components.tokenizers.lfq import LFQ
from lvmae.components.tokenizers.magvit import MagvitTokenizer, stage_strides
from lvmae.components.topk.straight_through import StraightThroughTopK

registry.discover()


def tiny(stride=(2, 4, 4), quantizer=None, channels=3) -> MagvitTokenizer:
    return MagvitTokenizer(in_channels=channels, base_channels=4,
                           channel_multipliers=(1,) * len(stage_strides(stride)), num_res_blocks=1,
                           stride=stride, quantizer=quantizer or FSQ([5, 5, 5]))


def test_default_stride_gives_the_vit_b_tubelet_grid_for_a_16_frame_224_window():
    tokenizer = tiny(stride=(2, 16, 16))
    assert tokenizer.grid(16, 224, 224) == (8, 14, 14)
    with torch.no_grad():
        latents, indices = tokenizer.encode(torch.randn(1, 3, 16, 224, 224))
    assert latents.shape == (1, 3, 8, 14, 14) and indices.shape == (1, 8, 14, 14)


@pytest.mark.parametrize("frames", [2, 4, 8, 16])
def test_frame_contract_t_frames_give_t_over_stride_latent_frames_and_back(frames):
    tokenizer = tiny()
    video = torch.randn(2, 3, frames, 16, 16)
    latents, indices = tokenizer.encode(video)
    assert latents.shape == (2, 3, frames // 2, 4, 4) and indices.dtype == torch.long
    assert tokenizer.decode(latents).shape == video.shape
    assert torch.allclose(tokenizer.decode_indices(indices), tokenizer.decode(latents), atol=1e-5)


@pytest.mark.parametrize("shape,axis", [((1, 3, 15, 16, 16), "T=15"), ((1, 3, 16, 18, 16), "H=18"),
                                        ((1, 1, 16, 16, 16), r"\(b, 3, T, H, W\)")])
def test_broken_frame_contract_names_the_axis(shape, axis):
    with pytest.raises(ValueError, match=axis):
        tiny().encode(torch.randn(*shape))


def test_bad_construction_names_the_parameter():
    with pytest.raises(ValueError, match="power of two"):
        MagvitTokenizer(stride=(3, 16, 16))
    with pytest.raises(ValueError, match="channel_multipliers"):
        MagvitTokenizer(stride=(2, 16, 16), channel_multipliers=(1, 2))
    with pytest.raises(ValueError, match="window_frames"):
        MagvitTokenizer(stride=(2, 16, 16), window_frames=15)


def test_long_clips_are_tokenized_window_by_window_and_concatenated():
    tokenizer = tiny().eval()
    video = torch.randn(1, 3, 48, 16, 16)
    latents, indices = tokenizer.encode_windows(video)
    assert latents.shape[2] == 24 and indices.shape[1] == 24
    second_window = tokenizer.encode(video[:, :, 16:32])
    assert torch.equal(indices[:, 8:16], second_window[1])
    with pytest.raises(ValueError, match="window_frames=16"):
        tokenizer.encode_windows(video[:, :, :40])


@pytest.mark.parametrize("quantizer", [FSQ([8, 5, 5, 5]), LFQ(bits=6)], ids=["fsq", "lfq"])
def test_checkpoint_config_rebuilds_an_identical_tokenizer_and_scorer(quantizer):
    model = AdaptiveTokenizer(tiny(quantizer=quantizer), LearnedScorer(stride=(2, 4, 4), channels=4),
                              StraightThroughTopK(), selected_ratio=0.5)
    rebuilt = rebuild_adaptive_tokenizer(model.config(), model.state_dict())
    video = torch.randn(1, 3, 16, 16, 16)
    assert torch.equal(rebuilt.tokenizer.encode(video)[1], model.tokenizer.encode(video)[1])
    assert torch.equal(rebuilt.scorer(video), model.scorer(video))
    assert type(build_from_config(model.config()["tokenizer"]).quantizer) is type(quantizer)


def test_unselected_latents_are_zeroed_before_quantisation():
    model = AdaptiveTokenizer(tiny(), LearnedScorer(stride=(2, 4, 4), channels=4),
                              StraightThroughTopK(), selected_ratio=0.25)
    output = model(torch.randn(2, 3, 16, 16, 16))
    zero_code = model.tokenizer.quantizer(torch.zeros(1, 3, 1)).indices[0, 0]
    dropped = output.selection < 0.5
    assert dropped.any() and (output.quantized.indices[dropped] == zero_code).all()
    assert set(output.losses) >= {"loss", "recon_loss"}


def test_discriminator_losses_and_r1_penalty():
    discriminator = VideoDiscriminator(in_channels=3, base_channels=4, stages=2)
    real = torch.randn(2, 3, 8, 16, 16, requires_grad=True)
    real_logits = discriminator(real)
    assert real_logits.shape == (2,)
    penalty = r1_penalty(real_logits, real)
    loss = discriminator_gan_loss(real_logits, discriminator(torch.randn(2, 3, 8, 16, 16)))
    (loss + penalty).backward()
    assert penalty > 0 and all(p.grad is not None for p in discriminator.parameters())
    assert generator_gan_loss(torch.tensor([10.0])) < generator_gan_loss(torch.tensor([-10.0]))


class _Features(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, images):
        first = self.conv(images)
        return [first, first.relu().mean(dim=(2, 3))]


def test_perceptual_term_from_a_local_exported_file(tmp_path):
    path = tmp_path / "features.pt2"
    # 2 (recon + original) · 2 clips · 2 frames per clip = 8 images per call.
    torch.export.save(torch.export.export(_Features().eval(), (torch.randn(8, 3, 16, 16),)), str(path))
    perceptual = PerceptualLoss(str(path), frames_per_clip=2)
    video = torch.randn(2, 3, 8, 16, 16)
    recon = video.clone().requires_grad_(True)
    assert perceptual(recon, video).item() == 0.0
    far = perceptual(recon + 1.0, video)
    far.backward()
    assert far > 0 and recon.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in perceptual.parameters())
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        PerceptualLoss(str(tmp_path / "missing.pt"))


def test_training_loop_with_a_discriminator_checkpoints_and_resumes_it(tmp_path):
    from lvmae.components.data.datasets.flicker_clips import FlickerSquare
    from lvmae.experiments.commands.pretrain_tokenizer import pretrain_tokenizer_loop
    from lvmae.experiments.engine.run_folder import request_resume
    from lvmae.experiments.engine.training import load_checkpoint

    def train(steps):
        torch.manual_seed(0)
        model = AdaptiveTokenizer(tiny(channels=1), LearnedScorer(in_channels=1, stride=(2, 4, 4), channels=4),
                                  StraightThroughTopK(), selected_ratio=0.5)
        return pretrain_tokenizer_loop(
            None, 0, model=model, clips=FlickerSquare(frames=8, image_size=16),
            discriminator=VideoDiscriminator(in_channels=1, base_channels=4, stages=2),
            batch_size=2, steps=steps, eval_every=2, eval_clips=2, checkpoint_every=2,
            log_every=1, workdir=str(tmp_path), device="cpu")

    first = train(2)
    assert first["start_step"] == 0
    state = load_checkpoint(first["checkpoint"])
    assert {"discriminator", "disc_optimizer"} <= set(state["tracked"]) and state["step"] == 2
    request_resume(os.path.basename(first["run_folder"]))      # what --resume-run does
    try:
        resumed = train(3)
    finally:
        request_resume(None)
    assert resumed["start_step"] == 2 and resumed["run_folder"] == first["run_folder"]
    assert load_checkpoint(str(tmp_path / "tokenizer" / "last.pt"))["step"] == 3

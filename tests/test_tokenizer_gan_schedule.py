"""The adversarial schedule of tokenizer training: no GAN term and no discriminator update
before ``gan_start_step``; both after it."""
from __future__ import annotations

import pytest
import torch

from lvmae.components.data.datasets.flicker_clips import FlickerSquare
from lvmae.components.models.adaptive_tokenizer import AdaptiveTokenizer
from lvmae.components.models.video_discriminator import VideoDiscriminator
from lvmae.components.scorers.learned import LearnedScorer
from lvmae.components.tokenizers.fsq import FSQ
from lvmae.components.tokenizers.magvit import MagvitTokenizer
from lvmae.components.topk.straight_through import StraightThroughTopK
from lvmae.experiments.commands.pretrain_tokenizer import pretrain_tokenizer_loop


def _train(tmp_path, gan_start_step: int, steps: int = 2) -> bool:
    """True when the discriminator's weights changed during training."""
    torch.manual_seed(0)
    tokenizer = MagvitTokenizer(in_channels=1, base_channels=4, channel_multipliers=(1, 1), num_res_blocks=1,
                                stride=(2, 4, 4), quantizer=FSQ([5, 5, 5]))
    model = AdaptiveTokenizer(tokenizer, LearnedScorer(in_channels=1, stride=(2, 4, 4), channels=4),
                              StraightThroughTopK(), selected_ratio=0.5)
    discriminator = VideoDiscriminator(in_channels=1, base_channels=4, stages=2)
    before = [p.detach().clone() for p in discriminator.parameters()]
    pretrain_tokenizer_loop(None, 0, model=model, clips=FlickerSquare(frames=8, image_size=16),
                            discriminator=discriminator, gan_start_step=gan_start_step,
                            batch_size=2, steps=steps, eval_every=steps, eval_clips=2,
                            log_every=1, workdir=str(tmp_path / f"start{gan_start_step}"), device="cpu")
    return any(not torch.equal(a, b) for a, b in zip(before, discriminator.parameters()))


@pytest.mark.slow      # two short training runs (~70 s on a loaded 2-core machine)
def test_discriminator_waits_for_its_start_step(tmp_path):
    assert not _train(tmp_path, gan_start_step=2)
    assert _train(tmp_path, gan_start_step=1)


def test_negative_start_step_is_refused(tmp_path):
    with pytest.raises(ValueError, match="gan_start_step"):
        _train(tmp_path, gan_start_step=-1)

"""The reconstruction grid: a perfect prediction reconstructs the input exactly where the
decoder worked, the encoder row shows only kept tokens, and the PNG is written."""
from __future__ import annotations

from pathlib import Path

import torch

from lvmae.components.backbones.mae_decoder import MAEDecoder
from lvmae.components.backbones.vit import VideoViT
from lvmae.components.masking.decoder_running_cell import RunningCellDecoderMasking
from lvmae.components.masking.encoder_tube import TubeMasking
from lvmae.components.models.mae import VideoMAE
from lvmae.components.targets.pixels import PixelTarget, patchify
from lvmae.experiments.reporting.reconstruction_grid import _HIDDEN_GREY, reconstruction_rows, save_grid


def test_perfect_prediction_reconstructs_the_input(tmp_path):
    model = VideoMAE(VideoViT(8, 16, (2, 4, 4), 32, 1, 2), lambda **k: MAEDecoder(**k, dim=16, depth=1, heads=2),
                     TubeMasking(0.25), RunningCellDecoderMasking(0.5), PixelTarget("patch"))
    batch = {"video": torch.randn(2, 3, 8, 16, 16)}
    plan = model.plan(2, torch.Generator().manual_seed(0))
    perfect = model.target(batch, plan, model.encoder.tubelet)
    rows = reconstruction_rows(model, batch, plan, perfect)
    assert list(rows) == ["input", "encoder keeps", "decoder targets (loss set)", "reconstruction"]
    tokens = {name: patchify(video[None], model.encoder.tubelet)[0] for name, video in rows.items()}
    shown = torch.cat([plan.enc_keep_idx[0], plan.dec_target_idx[0]])
    assert torch.allclose(tokens["reconstruction"][shown], tokens["input"][shown], atol=1e-4)
    hidden = torch.ones(model.encoder.grid.n, dtype=torch.bool)
    hidden[plan.enc_keep_idx[0]] = False
    assert torch.equal(tokens["encoder keeps"][~hidden], tokens["input"][~hidden])
    assert (tokens["encoder keeps"][hidden] == _HIDDEN_GREY).all()
    path = save_grid(rows, 2, str(tmp_path / "grid.png"))
    assert Path(path).read_bytes()[:4] == b"\x89PNG"

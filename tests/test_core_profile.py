"""``profile``: token and FLOP counts of ViT-B at 16–128 frames, checked against the textbook
formula and against PyTorch's own FLOP counter; the command writes the Figure 1 (right) plot."""
from __future__ import annotations

import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from lvmae import registry
from lvmae.components.backbones.mae_decoder import MAEDecoder
from lvmae.components.backbones.vit import VideoViT
from lvmae.experiments.commands.profile import analytic_row, build_mae
from tests.cli import run_cli

registry.discover()


def _vit_b(**kwargs):
    return VideoViT(dim=768, depth=12, heads=12, **kwargs)


def _decoder_b(**kwargs):
    return MAEDecoder(dim=384, depth=4, heads=6, **kwargs)


def _block_flops(n: int, d: int) -> int:
    return 24 * n * d * d + 4 * n * n * d        # per block: 24·n·d² (linear) + 4·n²·d (attention)


@pytest.mark.parametrize("frames, tokens", [(16, 1568), (32, 3136), (64, 6272), (128, 12544)])
def test_vit_b_token_and_flop_counts(frames, tokens):
    with torch.device("meta"):
        model = build_mae(_vit_b, _decoder_b, frames, 224, (2, 16, 16), 0.1, 0.15)
    row = analytic_row(model, frames, 0.1, 0.15, batch_size=1)
    kept, targets = round(0.1 * tokens), round(0.15 * tokens)
    assert (row.tokens, row.encoder_tokens, row.decoder_targets) == (tokens, kept, targets)
    assert row.decoder_tokens == kept + targets
    patch = 2 * tokens * (3 * 2 * 16 * 16) * 768
    encoder = patch + 12 * _block_flops(kept, 768)
    decoder = 2 * kept * 768 * 384 + 4 * _block_flops(kept + targets, 384) + 2 * targets * 384 * 1536
    assert row.encoder_gflops * 1e9 == pytest.approx(encoder, rel=1e-12)
    assert row.decoder_gflops * 1e9 == pytest.approx(decoder, rel=1e-12)
    assert row.train_tflops * 1e12 == pytest.approx(3 * (encoder + decoder), rel=1e-12)
    # ViT-B encoder + 4×384 decoder: 86 M + 7 M (+ head), as in VideoMAE
    assert 90 < row.params_m < 100


def test_analytic_flops_equal_pytorch_flop_counter():
    model = build_mae(lambda **k: VideoViT(dim=64, depth=2, heads=4, **k),
                      lambda **k: MAEDecoder(dim=48, depth=2, heads=3, **k), 8, 32, (2, 8, 8), 0.25, 0.5)
    # the math backend decomposes attention into matmuls the counter sees
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model({"video": torch.randn(1, 3, 8, 32, 32)}, torch.Generator().manual_seed(0))
    row = analytic_row(model, 8, 0.25, 0.5, batch_size=1)
    assert counter.get_total_flops() == round((row.encoder_gflops + row.decoder_gflops) * 1e9)


@pytest.mark.slow
def test_profile_command_writes_table_and_plot(tmp_path):
    bindings = ["profile_job.encoder = @backbone.vit_tiny", "profile_job.decoder = @decoder.mae",
                "decoder.mae.dim = 32", "decoder.mae.heads = 2", "decoder.mae.depth = 1",
                "profile_job.frames = (4, 8)", "profile_job.image_size = 32", "profile_job.tubelet = (2, 16, 16)",
                "profile_job.decoder_budgets = (0.5,)", "profile_job.measure = 'cpu'",
                "profile_job.measure_steps = 1", "profile_job.plot_frames = 8",
                f"profile_job.workdir = '{tmp_path / 'work'}'"]
    done = run_cli(["profile", *[a for b in bindings for a in ("-b", b)]], tmp_path / "runs")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "work/profile.json").read_text())
    assert len(rows) == 2 and all(r["measured_ms"] > 0 for r in rows)
    assert [r["tokens"] for r in rows] == [8, 16]
    run = json.loads((tmp_path / "runs/1/run.json").read_text())
    assert "figure1_right_8f.png" in run["artifacts"]
    assert (tmp_path / "runs/1/figure1_right_8f.png").read_bytes()[:4] == b"\x89PNG"

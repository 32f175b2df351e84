"""The memory planner: its per-block count equals what autograd saves, its peak lies within
15% of a measured CPU step, its invariants hold, and ``run.py plan`` answers (and refuses bad
options by name)."""
from __future__ import annotations

import itertools
import json

import pytest
import torch

from lvmae.components.backbones.mae_decoder import MAEDecoder
from lvmae.components.backbones.transformer import Block
from lvmae.components.backbones.vit import VideoViT
from lvmae.components.masking.decoder_random import RandomDecoderMasking
from lvmae.components.masking.encoder_tube import TubeMasking
from lvmae.components.models.mae import VideoMAE
from lvmae.components.targets.pixels import PixelTarget
from lvmae.experiments.commands.plan import PlanError, largest, parse_memory
from lvmae.experiments.engine.memory_model import Stack, block_bytes, step_memory, step_shape
from lvmae.experiments.engine.peak_memory import mae_training_step, peak_bytes, training_state
from lvmae.experiments.engine.training import build_optimizer
from tests.cli import run_cli

TOLERANCE = 0.15        # issue 16: predicted ÷ measured within ±15% on the CPU


def _mae(frames: int = 16, image_size: int = 64, checkpointing: bool = False) -> VideoMAE:
    return VideoMAE(VideoViT(frames, image_size, (2, 8, 8), 96, 2, 3, grad_checkpointing=checkpointing),
                    lambda **k: MAEDecoder(**k, dim=48, depth=1, heads=3, grad_checkpointing=checkpointing),
                    TubeMasking(0.25), RandomDecoderMasking(0.25), PixelTarget(True))


def _shape(model: VideoMAE):
    plan = model.plan(1, torch.Generator().manual_seed(0))
    return step_shape(model, plan.enc_keep_idx.shape[1], plan.dec_target_idx.shape[1])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_block_count_equals_what_autograd_saves(precision):
    block, tokens, batch = Block(96, 3), 64, 2
    x = torch.randn(batch, tokens, 96, requires_grad=True)
    casts = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        casts[storage.data_ptr()] = (storage.nbytes(), tensor.shape)
        return tensor

    weights = {p.untyped_storage().data_ptr() for p in block.parameters()}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"), \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        block(x.to(torch.bfloat16) if precision == "bf16" else x)
    # weights (and, under autocast, their bf16 copies, maybe transposed) are state, not activations
    shapes = {tuple(p.shape) for p in block.parameters()} | {tuple(p.shape)[::-1] for p in block.parameters()}
    saved = sum(size for ptr, (size, shape) in casts.items()
                if ptr not in weights and tuple(shape) not in shapes)
    stack = Stack(blocks=1, tokens=tokens, dim=96, hidden=4 * 96, heads=3)
    assert block_bytes(stack, precision, "flash", device_type="cpu") * batch == saved


def test_predicted_peak_is_within_tolerance_of_a_measured_cpu_step():
    torch.manual_seed(0)
    model = _mae()
    shape = _shape(model)
    predicted = step_memory(shape, batch_size=4, precision="fp32", device_type="cpu").peak
    optimizer = build_optimizer(model, 1e-4, 0.05)
    batch = {"video": torch.randn(4, 3, 16, 64, 64)}
    step = mae_training_step(model, optimizer, batch, torch.Generator(), bf16=False)
    step()
    optimizer.zero_grad(set_to_none=True)
    measured = peak_bytes(step, torch.device("cpu"), training_state(model, optimizer) + [batch["video"]])
    assert abs(predicted / measured - 1) <= TOLERANCE, (predicted, measured)


def test_activations_are_linear_in_batch_and_grow_with_frames():
    with torch.device("meta"):
        shapes = [_shape(_mae(frames)) for frames in (8, 16, 32)]
    for shape in shapes:
        one, three = step_memory(shape, 1), step_memory(shape, 3)
        assert three.activations == pytest.approx(3 * one.activations)
        assert three.weights == one.weights and three.optimizer == one.optimizer
        checkpointed = step_memory(shape, 3, checkpointing=True)
        assert checkpointed.activations < three.activations
        assert step_memory(shape, 3, attention="dense").activations > three.activations
        assert step_memory(shape, 3, precision="fp32").activations > three.activations
    # flash attention: activations linear in the clip length; materialised attention: faster
    for short, long in itertools.pairwise(shapes):
        assert step_memory(long, 2).activations == pytest.approx(2 * step_memory(short, 2).activations)
        assert (step_memory(long, 2, attention="dense").activations
                > 2 * step_memory(short, 2, attention="dense").activations)
    peaks = [step_memory(shape, 2).peak for shape in shapes]
    assert peaks == sorted(peaks) and len(set(peaks)) == 3
    flops = [shape.step_flops for shape in shapes]
    assert flops == sorted(flops)


def test_bad_choices_name_the_parameter():
    with torch.device("meta"):
        shape = _shape(_mae())
    with pytest.raises(ValueError, match="precision"):
        step_memory(shape, 1, precision="fp16")
    with pytest.raises(ValueError, match="batch_size"):
        step_memory(shape, 0)


def test_memory_sizes_and_search():
    assert parse_memory("80GiB") == 80 * 2**30
    assert parse_memory("80 GB") == 80 * 10**9
    assert parse_memory("141") == 141 * 2**30
    assert parse_memory("512MiB") == 512 * 2**20
    for bad in ("eighty", "80XB", "-1GiB", "0"):
        with pytest.raises(PlanError, match="--gpu-memory"):
            parse_memory(bad)
    assert largest(lambda v: v <= 37, 1, 1000) == 37
    assert largest(lambda v: v <= 0, 1, 1000) == 0
    assert largest(lambda v: True, 1, 64) == 64


@pytest.mark.slow
def test_plan_command_finds_the_largest_batch_that_fits(tmp_path):
    out = tmp_path / "plan.json"
    done = run_cli(["plan", "-g", "gin/experiments/tiny_cpu.gin", "--gpu-memory", "64MiB",
                    "--frames", "16", "--batch", "4", "--json", str(out)], tmp_path / "runs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "largest batch at 16 frames" in done.stdout
    plan = json.loads(out.read_text())
    usable = plan["usable_gib"]
    for key, checkpointing in (("off", False), ("on", True)):
        batch = plan["largest_batch"][key]
        assert batch >= 1
        from lvmae.experiments.commands.plan import Planner
        planner = Planner(["gin/experiments/tiny_cpu.gin"], [], "bf16", "flash")
        assert planner.point(16, batch, checkpointing).peak_gib <= usable
        assert planner.point(16, batch + 1, checkpointing).peak_gib > usable
    assert plan["largest_batch"]["on"] >= plan["largest_batch"]["off"]
    assert plan["largest_frames"]["on"] >= plan["largest_frames"]["off"] >= 16
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())   # no run recorded



@pytest.mark.parametrize("gin_file, frames", [("gin/experiments/lvmae_b_128f.gin", 128),
                                              ("gin/experiments/vit_b_256f_synthetic.gin", 256)])
def test_plan_reads_the_vit_b_experiments(gin_file, frames):
    from lvmae.experiments.commands.plan import Planner
    planner = Planner([gin_file], [], "bf16", "flash")
    assert planner.frames == frames and planner.batch >= 1 and planner.frame_step == 2
    point = planner.point(frames, planner.batch, False)
    assert point.tokens == frames // 2 * 14 * 14
    assert planner.point(2 * frames, planner.batch, False).peak_gib > point.peak_gib
    assert planner.point(frames, planner.batch, True).peak_gib < point.peak_gib


def test_plan_refuses_bad_options_by_name(capsys):
    from lvmae.experiments.commands.plan import main
    assert main(["-g", "gin/experiments/tiny_cpu.gin", "--gpu-memory", "lots"]) == 2
    assert "--gpu-memory" in capsys.readouterr().err
    assert main(["-g", "gin/experiments/tiny_cpu.gin", "--gpu-memory", "1GiB", "--frames", "15"]) == 2
    assert "--frames 15" in capsys.readouterr().err
    assert main(["-g", "gin/experiments/tiny_cpu.gin", "--gpu-memory", "1GiB", "--headroom", "1.5"]) == 2
    assert "--headroom" in capsys.readouterr().err
    assert main(["-g", "gin/experiments/profile_vit_b.gin", "--gpu-memory", "1GiB"]) == 2
    assert "no pretrain_loop.model" in capsys.readouterr().err

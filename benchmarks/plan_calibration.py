"""The memory planner's model against measured peak memory of real training steps.

For each size: build the MAE (tube encoder masking 10%, random decoder budget 15%, pixel
targets — the paper's counts), run one warm-up step (AdamW's state exists afterwards), then
measure the peak of one more step (``experiments/engine/peak_memory.py``: the CPU
allocator's running total from the profiler on a CPU, ``max_memory_allocated`` on a GPU)
and print predicted ÷ measured (``experiments/engine/memory_model.py``).

  OMP_NUM_THREADS=1 python benchmarks/plan_calibration.py                 # CPU, small sizes, ~1 min
  python benchmarks/plan_calibration.py --sizes gpu --device cuda          # ViT-B, 16–256 frames
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lvmae.components.backbones.mae_decoder import MAEDecoder
from lvmae.components.backbones.vit import VideoViT
from lvmae.components.masking.decoder_random import RandomDecoderMasking
from lvmae.components.masking.encoder_tube import TubeMasking
from lvmae.components.models.mae import VideoMAE
from lvmae.components.targets.pixels import PixelTarget
from lvmae.experiments.engine.memory_model import GIB, step_memory, step_shape
from lvmae.experiments.engine.peak_memory import mae_training_step, peak_bytes, training_state
from lvmae.experiments.engine.training import build_optimizer

KEEP_RATIO, BUDGET = 0.1, 0.15
# name → encoder (dim, depth, heads), decoder (dim, depth, heads), image size, tubelet,
# [(frames, batch, checkpointing), ...]
SIZES = {
    "cpu": ((192, 4, 3), (96, 2, 3), 64, (2, 8, 8),
            [(16, 4, False), (32, 4, False), (64, 2, False), (64, 4, False), (64, 4, True)]),
    "gpu": ((768, 12, 12), (384, 4, 6), 224, (2, 16, 16),
            [(16, 16, False), (64, 8, False), (128, 4, False), (128, 16, False), (128, 16, True),
             (256, 4, False), (256, 8, True)]),
}


def build(encoder, decoder, image_size, tubelet, frames, checkpointing) -> VideoMAE:
    (dim, depth, heads), (ddim, ddepth, dheads) = encoder, decoder
    return VideoMAE(VideoViT(frames, image_size, tubelet, dim, depth, heads, grad_checkpointing=checkpointing),
                    lambda **k: MAEDecoder(**k, dim=ddim, depth=ddepth, heads=dheads,
                                           grad_checkpointing=checkpointing),
                    TubeMasking(KEEP_RATIO), RandomDecoderMasking(BUDGET), PixelTarget(True))


def calibrate(model: VideoMAE, frames: int, image_size: int, batch_size: int, device: torch.device,
              bf16: bool, checkpointing: bool) -> dict:
    """Predicted and measured peak of one training step."""
    model = model.to(device).train()
    optimizer = build_optimizer(model, 1e-4, 0.05)
    generator = torch.Generator(device=device)
    batch = {"video": torch.randn(batch_size, model.encoder.in_channels, frames, image_size, image_size,
                                  device=device)}
    plan = model.plan(1, generator.manual_seed(0))
    shape = step_shape(model, plan.enc_keep_idx.shape[1], plan.dec_target_idx.shape[1])
    predicted = step_memory(shape, batch_size, "bf16" if bf16 else "fp32", "flash", checkpointing, device.type)
    step = mae_training_step(model, optimizer, batch, generator, bf16)
    step()                                                   # AdamW's state exists from here
    optimizer.zero_grad(set_to_none=True)                    # what the step's first line does
    measured = peak_bytes(step, device, training_state(model, optimizer) + [batch["video"]])
    return {"frames": frames, "batch": batch_size, "checkpointing": checkpointing,
            "tokens": shape.grid_tokens, "encoder_tokens": shape.encoder_tokens,
            "decoder_targets": shape.decoder_targets, "predicted_gib": predicted.peak / GIB,
            "measured_gib": measured / GIB, "ratio": predicted.peak / measured,
            "parts_gib": predicted.gib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto: bf16 autocast on a GPU, float32 on the CPU (as pretrain_loop)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    device = torch.device(args.device)
    bf16 = args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda")
    encoder, decoder, image_size, tubelet, cases = SIZES[args.sizes]
    torch.manual_seed(0)
    rows = []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# {name}, torch {torch.__version__}, {'bf16 autocast' if bf16 else 'float32'}, "
          f"encoder {encoder}, decoder {decoder}, {image_size}², tubelet {tubelet}")
    print("| frames | batch | checkpointing | tokens (enc/dec targets) | predicted GiB | measured GiB | predicted ÷ measured |")
    print("|---|---|---|---|---|---|---|")
    for frames, batch_size, checkpointing in cases:
        try:
            row = calibrate(build(encoder, decoder, image_size, tubelet, frames, checkpointing),
                            frames, image_size, batch_size, device, bf16, checkpointing)
        except torch.OutOfMemoryError:
            print(f"| {frames} | {batch_size} | {checkpointing} | OOM | | | |")
            continue
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
        print(f"| {frames} | {batch_size} | {'on' if checkpointing else 'off'} | {row['tokens']} "
              f"({row['encoder_tokens']}/{row['decoder_targets']}) | {row['predicted_gib']:.3f} | "
              f"{row['measured_gib']:.3f} | {row['ratio']:.3f} |", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"device": name, "bf16": bf16, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()

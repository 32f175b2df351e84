"""Our dual-masking MAE vs ``transformers``' VideoMAEForPreTraining: one process, same data.

One training step = forward + backward + AdamW (fused), bf16 autocast on a GPU (float32 on
the CPU), eager unless the case ends in ``+compile`` (``torch.compile`` of the model; the
first steps compile and are not timed). Every encoder sees the same 10% tube mask. Cases:

- ``hf``: VideoMAE v1 with SDPA attention; its decoder runs on every token.
- ``ours-all``: ours decoding every masked token too (the like-for-like check).
- ``ours``: ours with a random 15% decoder budget (``--budget``), pixel targets.
- ``lvmae``: the paper's setting: adaptive decoder masking (top 10% by score + 5% random)
  on precomputed token scores, precomputed tokenizer-latent targets (FSQ, 6 channels) — the
  batch carries ``scores`` and ``latents`` like precomputed shards; no pixels are
  patchified on the hot path.

Reports ms/step, clips/s, peak memory (``max_memory_allocated`` on a GPU; the CPU
allocator's profiled peak on the CPU, measured on one extra step) beside the memory
planner's prediction for our cases, model TFLOP/s and MFU
(matmul FLOPs of the model, 3× forward, against the device's dense bf16 peak), and the
ratios against ``hf``.

  python benchmarks/mae_vs_hf.py --size b --frames 128                   # a GPU: the goal check
  OMP_NUM_THREADS=1 python benchmarks/mae_vs_hf.py --size toy --frames 16 --image-size 64 --batch 2
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lvmae.components.backbones.mae_decoder import MAEDecoder
from lvmae.components.backbones.vit import VideoViT
from lvmae.components.masking.decoder_adaptive import AdaptiveDecoderMasking
from lvmae.components.masking.decoder_all import AllMaskedDecoding
from lvmae.components.masking.decoder_random import RandomDecoderMasking
from lvmae.components.masking.encoder_tube import TubeMasking
from lvmae.components.models.mae import VideoMAE
from lvmae.components.targets.pixels import PixelTarget
from lvmae.components.targets.tokenizer_latents import TokenizerLatentTarget
from lvmae.experiments.commands.profile import time_steps
from lvmae.experiments.engine.memory_model import step_memory, step_shape
from lvmae.experiments.engine.peak_memory import peak_bytes, training_state
from lvmae.experiments.engine.training import build_optimizer

SIZES = {  # encoder (dim, depth, heads), decoder (dim, depth, heads)
    "toy": ((192, 4, 3), (96, 2, 3)),
    "b": ((768, 12, 12), (384, 4, 6)),
    "l": ((1024, 24, 16), (512, 4, 8)),
}
KEEP_RATIO = 0.1
TOP_RATIO, RANDOM_RATIO = 0.10, 0.05          # LVMAE's adaptive budget (15%)
LATENT_DIM = 6                                # FSQ levels [8]*6
TUBELET = (2, 16, 16)
# Dense bf16 tensor-core peak (TFLOP/s) by device name, from the vendors' datasheets.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}
CASES = ("hf", "ours-all", "ours", "lvmae")
COMPILED = "+compile"
GIB = 2**30


def build_ours(size: str, frames: int, image_size: int, decoder_masking, target) -> VideoMAE:
    (dim, depth, heads), (ddim, ddepth, dheads) = SIZES[size]
    return VideoMAE(VideoViT(frames, image_size, TUBELET, dim, depth, heads),
                    lambda **k: MAEDecoder(**k, dim=ddim, depth=ddepth, heads=dheads),
                    TubeMasking(KEEP_RATIO), decoder_masking, target)


def build_hf(size: str, frames: int, image_size: int):
    import transformers
    (dim, depth, heads), (ddim, ddepth, dheads) = SIZES[size]
    config = transformers.VideoMAEConfig(
        image_size=image_size, patch_size=TUBELET[1], num_frames=frames, tubelet_size=TUBELET[0],
        hidden_size=dim, num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=4 * dim,
        decoder_hidden_size=ddim, decoder_num_hidden_layers=ddepth, decoder_num_attention_heads=dheads,
        decoder_intermediate_size=4 * ddim, norm_pix_loss=True, attn_implementation="sdpa")
    return transformers.VideoMAEForPreTraining(config)


def _ours_model(case: str, args) -> VideoMAE:
    if case == "ours-all":
        return build_ours(args.size, args.frames, args.image_size, AllMaskedDecoding(), PixelTarget("patch_channel"))
    if case == "ours":
        return build_ours(args.size, args.frames, args.image_size, RandomDecoderMasking(args.budget),
                          PixelTarget("patch_channel"))
    return build_ours(args.size, args.frames, args.image_size, AdaptiveDecoderMasking(TOP_RATIO, RANDOM_RATIO),
                      TokenizerLatentTarget(LATENT_DIM))


def run_case(case: str, args, device: torch.device, peak_tflops: float | None) -> dict:
    name, compiled = case.removesuffix(COMPILED), case.endswith(COMPILED)
    video = torch.randn(args.batch, 3, args.frames, args.image_size, args.image_size, device=device)
    bf16 = device.type == "cuda"
    with torch.device("meta"):                                # counts and FLOPs of the full decoder
        reference = _ours_model("ours-all", args)
    grid = reference.encoder.grid
    if name == "hf":
        model = build_hf(args.size, args.frames, args.image_size).to(device).train()
        plan = reference.plan(args.batch, torch.Generator().manual_seed(0))
        hidden = (~plan.enc_keep_mask).to(device)
        predicted = None                                      # the planner models our MAE only
        hf_video = video.transpose(1, 2).contiguous()
        inputs = [hf_video, hidden]
        kept, targets = plan.enc_keep_idx.shape[1], grid.n - plan.enc_keep_idx.shape[1]
        flops = reference.flops(kept, targets)

        def forward(module):
            return module(hf_video, bool_masked_pos=hidden).loss
    else:
        model = _ours_model(name, args).to(device).train()
        batch = {"video": video}
        if name == "lvmae":        # what precomputed shards carry (python run.py precompute)
            batch["scores"] = torch.rand(args.batch, grid.t, grid.h, grid.w, device=device)
            batch["latents"] = torch.randn(args.batch, LATENT_DIM, grid.t, grid.h, grid.w, device=device)
        generator = torch.Generator(device=device)
        scores = batch["scores"][:1] if "scores" in batch else None
        plan = model.plan(1, torch.Generator(device=device).manual_seed(0), scores)
        kept, targets = plan.enc_keep_idx.shape[1], plan.dec_target_idx.shape[1]
        flops = model.flops(kept, targets)
        inputs = list(batch.values())
        predicted = step_memory(step_shape(model, kept, targets), args.batch, "bf16" if bf16 else "fp32",
                                device_type=device.type).peak / GIB

        def forward(module):
            return module(batch, generator.manual_seed(0))[0]["loss"]
    optimizer = build_optimizer(model, 1e-4, 0.05)
    module = torch.compile(model) if compiled else model

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = forward(module)
        loss.backward()
        optimizer.step()

    result = {"case": case, "decoder_tokens": kept + targets,
              "predicted_gib": None if predicted is None else round(predicted, 3)}
    try:
        for _ in range(args.compile_warmup if compiled else 0):
            step()
        ms, peak = time_steps(step, args.steps, device)
        if peak is None:                                      # the CPU: one profiled step
            optimizer.zero_grad(set_to_none=True)
            peak = peak_bytes(step, device, training_state(model, optimizer) + inputs) / GIB
        tflops = 3 * flops * args.batch / (ms / 1000) / 1e12
        result |= {"ms_per_step": round(ms, 2), "clips_per_s": round(args.batch * 1000 / ms, 2),
                   "peak_gib": round(peak, 3), "model_tflops": round(tflops, 2),
                   "mfu": None if peak_tflops is None else round(tflops / peak_tflops, 4)}
    except torch.OutOfMemoryError:
        result["note"] = "OOM"
    return result                          # the model and optimizer go with this frame


def _ratio(value, reference) -> str:
    return f"{value / reference:.2f}" if value and reference else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="b")
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--budget", type=float, default=0.15, help="decoder budget of the 'ours' case")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case")
    parser.add_argument("--compile-warmup", type=int, default=3, help="untimed steps of a compiled case")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cases", help=f"comma-separated, from {', '.join(CASES)} (each may end in "
                        f"{COMPILED}); default: all, plus lvmae{COMPILED} on a GPU")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 TFLOP/s for MFU "
                        f"(default: known for {', '.join(PEAK_TFLOPS)})")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    cases = (args.cases.split(",") if args.cases
             else [*CASES, *([f"lvmae{COMPILED}"] if device.type == "cuda" else [])])
    unknown = [c for c in cases if c.removesuffix(COMPILED) not in CASES]
    if unknown:
        parser.error(f"--cases: unknown {unknown}; choose from {', '.join(CASES)} (+{COMPILED})")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak_tflops = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    torch.manual_seed(0)
    results = []
    for case in cases:
        results.append(run_case(case, args, device, peak_tflops))
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch._dynamo.reset()          # pylint: disable=protected-access
    hf = next((r for r in results if r["case"] == "hf"), {})
    print(f"# {name}, torch {torch.__version__}, size {args.size}, {args.frames} frames, "
          f"{args.image_size}², batch {args.batch}, {'bf16 autocast' if device.type == 'cuda' else 'float32'}"
          + (f", MFU against {peak_tflops:g} TFLOP/s" if peak_tflops else ""))
    print("| case | decoder tokens | ms/step | clips/s | peak GiB | planner GiB | model TFLOP/s | MFU | "
          "clips/s ÷ HF | peak ÷ HF |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "-"
        print(f"| {r['case']} | {r['decoder_tokens']} | {r.get('ms_per_step', r.get('note'))} | "
              f"{r.get('clips_per_s', '-')} | {r.get('peak_gib', '-')} | {r.get('predicted_gib') or '-'} | "
              f"{r.get('model_tflops', '-')} | {mfu} | "
              f"{_ratio(r.get('clips_per_s'), hf.get('clips_per_s'))} | "
              f"{_ratio(r.get('peak_gib'), hf.get('peak_gib'))} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"device": name, "args": vars(args), "peak_tflops": peak_tflops, "results": results},
                      handle, indent=1)


if __name__ == "__main__":
    main()

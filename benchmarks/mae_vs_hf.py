"""Our dual-masking MAE vs ``transformers``' VideoMAEForPreTraining, one process, same data.

One training step = forward + backward + AdamW (fused on GPU), bf16 autocast on GPU, eager
mode. Both encoders see the same 10% tube mask; ours decodes the kept tokens plus a
``--budget`` fraction of all tokens (LVMAE: 0.15), HF decodes every masked token (VideoMAE v1);
``ours-all`` decodes every masked token too (the like-for-like check). Reports ms/step,
clips/s and peak memory (GPU), and the ratios against HF.

  python benchmarks/mae_vs_hf.py --size b --frames 128 --batch 4          # a GPU
  python benchmarks/mae_vs_hf.py --size toy --frames 16 --image-size 64   # CPU, minutes
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lvmae.components.backbones.mae_decoder import MAEDecoder  # noqa: E402
from lvmae.components.backbones.vit import VideoViT  # noqa: E402
from lvmae.components.masking.decoder_all import AllMaskedDecoding  # noqa: E402
from lvmae.components.masking.decoder_random import RandomDecoderMasking  # noqa: E402
from lvmae.components.masking.encoder_tube import TubeMasking  # noqa: E402
from lvmae.components.models.mae import VideoMAE  # noqa: E402
from lvmae.components.targets.pixels import PixelTarget  # noqa: E402
from lvmae.experiments.commands.profile import time_steps  # noqa: E402
from lvmae.experiments.engine.training import build_optimizer  # noqa: E402

SIZES = {  # encoder (dim, depth, heads), decoder (dim, depth, heads)
    "toy": ((192, 4, 3), (96, 2, 3)),
    "b": ((768, 12, 12), (384, 4, 6)),
    "l": ((1024, 24, 16), (512, 4, 8)),
}
KEEP_RATIO = 0.1


def build_ours(size: str, frames: int, image_size: int, decoder_masking) -> VideoMAE:
    (dim, depth, heads), (ddim, ddepth, dheads) = SIZES[size]
    return VideoMAE(VideoViT(frames, image_size, (2, 16, 16), dim, depth, heads),
                    lambda **k: MAEDecoder(**k, dim=ddim, depth=ddepth, heads=dheads),
                    TubeMasking(KEEP_RATIO), decoder_masking, PixelTarget(True))


def build_hf(size: str, frames: int, image_size: int):
    import transformers
    (dim, depth, heads), (ddim, ddepth, dheads) = SIZES[size]
    config = transformers.VideoMAEConfig(
        image_size=image_size, patch_size=16, num_frames=frames, tubelet_size=2, hidden_size=dim,
        num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=4 * dim,
        decoder_hidden_size=ddim, decoder_num_hidden_layers=ddepth, decoder_num_attention_heads=dheads,
        decoder_intermediate_size=4 * ddim, norm_pix_loss=True, attn_implementation="sdpa")
    return transformers.VideoMAEForPreTraining(config)


def run_case(name: str, args, device: torch.device) -> dict:
    video = torch.randn(args.batch, 3, args.frames, args.image_size, args.image_size, device=device)
    bf16 = device.type == "cuda"
    if name == "hf":
        model = build_hf(args.size, args.frames, args.image_size).to(device).train()
        ours_for_mask = build_ours(args.size, args.frames, args.image_size, AllMaskedDecoding())
        plan = ours_for_mask.plan(args.batch, torch.Generator(device=device).manual_seed(0))
        hidden = ~plan.enc_keep_mask
        hf_video = video.transpose(1, 2).contiguous()

        def forward():
            return model(hf_video, bool_masked_pos=hidden).loss
        decoder_tokens = args.frames // 2 * (args.image_size // 16) ** 2
    else:
        masking = AllMaskedDecoding() if name == "ours-all" else RandomDecoderMasking(args.budget)
        model = build_ours(args.size, args.frames, args.image_size, masking).to(device).train()
        generator = torch.Generator(device=device)

        def forward():
            return model({"video": video}, generator.manual_seed(0))[0]["loss"]
        plan = model.plan(args.batch, torch.Generator(device=device).manual_seed(0))
        decoder_tokens = plan.enc_keep_idx.shape[1] + plan.dec_target_idx.shape[1]
    optimizer = build_optimizer(model, 1e-4, 0.05)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = forward()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    try:
        ms, peak = time_steps(step, args.steps, device)
        result = {"case": name, "decoder_tokens": decoder_tokens, "ms_per_step": round(ms, 2),
                  "clips_per_s": round(args.batch * 1000 / ms, 2),
                  "peak_gib": None if peak is None else round(peak, 2)}
    except torch.OutOfMemoryError:
        result = {"case": name, "decoder_tokens": decoder_tokens, "ms_per_step": None, "note": "OOM"}
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="b")
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--budget", type=float, default=0.15)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    results = [run_case(name, args, device) for name in ("hf", "ours-all", "ours")]
    hf = results[0]
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"# {name}, torch {torch.__version__}, size {args.size}, {args.frames} frames, "
          f"{args.image_size}², batch {args.batch}, decoder budget {args.budget}")
    print("| case | decoder tokens | ms/step | clips/s | peak GiB | clips/s ÷ HF | peak ÷ HF |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        speed = (f"{r['clips_per_s'] / hf['clips_per_s']:.2f}" if r.get("ms_per_step") and hf.get("ms_per_step") else "-")
        memory = (f"{r['peak_gib'] / hf['peak_gib']:.2f}" if r.get("peak_gib") and hf.get("peak_gib") else "-")
        print(f"| {r['case']} | {r['decoder_tokens']} | {r.get('ms_per_step')} | {r.get('clips_per_s')} | "
              f"{r.get('peak_gib')} | {speed} | {memory} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"device": name, "args": vars(args), "results": results}, handle, indent=1)


if __name__ == "__main__":
    main()

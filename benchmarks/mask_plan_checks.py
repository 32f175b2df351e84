#!/usr/bin/env python
"""What the mask-plan contract checks cost per step, in one run.

    nice -n 10 python benchmarks/mask_plan_checks.py [--batch 8] [--repeats 30]

Draws the paper's plan — tube encoder masking (10%) and adaptive decoder masking (10% + 5%)
on the 128-frame grid at 224² (64×14×14 = 12,544 tokens) — with ``MaskPlan.draw`` (counts,
range, order, uniqueness, overlap and loss-token checks) and without (the strategies called
directly), both including ``loss_weight``, and prints the ratio. On the CPU the checks read
their results on the host (named errors); on an accelerator they are queued asynchronously
and read nothing back. Timings from a shared machine: compare the ratio, not the absolutes.
"""
from __future__ import annotations

import argparse
import time

import torch

from lvmae import registry
from lvmae.components.masking.plan import MaskPlan, TokenGrid

GRID = TokenGrid(64, 14, 14)           # 128 frames at 224², tubelet 2×16×16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    registry.discover()
    encoder = registry.build("masking.encoder.tube", keep_ratio=0.1)
    decoder = registry.build("masking.decoder.adaptive", top_ratio=0.10, random_ratio=0.05)
    scores = torch.rand(args.batch, GRID.t, GRID.h, GRID.w, device=args.device)

    def unchecked(generator: torch.Generator) -> torch.Tensor:
        keep = encoder(GRID, args.batch, generator)
        return MaskPlan(GRID, keep, decoder(GRID, keep, generator, scores), checked=True).loss_weight

    def checked(generator: torch.Generator) -> torch.Tensor:
        return MaskPlan.draw(GRID, encoder, decoder, args.batch, generator, scores).loss_weight

    best = {}
    for _ in range(3):                                   # interleaved rounds, best of each
        for draw in (unchecked, checked):
            generator = torch.Generator(args.device).manual_seed(0)
            draw(generator)
            if args.device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.repeats):
                draw(generator)
            if args.device != "cpu":
                torch.cuda.synchronize()
            elapsed = (time.perf_counter() - start) / args.repeats * 1e3
            best[draw.__name__] = min(best.get(draw.__name__, float("inf")), elapsed)
    print(f"grid {GRID.t}×{GRID.h}×{GRID.w}, batch {args.batch}, {args.device}: "
          f"unchecked {best['unchecked']:.2f} ms, checked {best['checked']:.2f} ms, "
          f"ratio {best['checked'] / best['unchecked']:.2f}")


if __name__ == "__main__":
    main()

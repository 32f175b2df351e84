"""How well do precomputed scores point at the moving object? (a script, not a test)

On the synthetic moving-square shards after ``run.py precompute`` (gin/experiments/lvmae_cpu.gin):
a token is an *object token* when any of its pixels belongs to the square (square colour
channels ≥ 96, background ≤ 63 + noise, so a max-channel threshold separates them). For each
clip, the top ``top_ratio`` of tokens by stored score (the adaptive top part, before the
encoder mask) is compared with the object tokens: precision = object share of the top part,
against chance = object share of all tokens. Reported over all latent frames and without the
last latent frame of each window (the learned scorer's zero-padding artefact, docs/tokenizer.md).

    python benchmarks/precomputed_overlap.py data/lvmae_cpu_precomputed/manifest.yaml
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from einops import reduce

from lvmae.components.data.formats.manifest import load_manifest
from lvmae.components.data.reading.reader import ClipStream

# Square colours are drawn in [96, 256), backgrounds in [0, 64) plus N(0, 8) noise.
_OBJECT_THRESHOLD = 88


def object_tokens(clip: np.ndarray, stride: tuple[int, int, int]) -> np.ndarray:
    """uint8 (T, H, W, C) → bool (t, h, w): tokens holding any square pixel."""
    st, sh, sw = stride
    is_object = torch.from_numpy(clip.max(axis=-1) >= _OBJECT_THRESHOLD).float()
    return reduce(is_object, "(t a) (h b) (w c) -> t h w", "max", a=st, b=sh, c=sw).bool().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--split", default="val")
    parser.add_argument("--top-ratio", type=float, default=0.10)
    parser.add_argument("--window-latent-frames", type=int, default=8)
    args = parser.parse_args()
    manifest = load_manifest(args.manifest)
    t, h, w = manifest.view.grid
    frames = manifest.view.frames
    stride = (frames // t, 0, 0)
    results = {"all frames": [], "without each window's last latent frame": []}
    chance = {name: [] for name in results}
    for sample in ClipStream.from_manifest(manifest, args.split, train=False).raw_samples():
        clip = sample.clip[manifest.view.start + np.arange(frames) * manifest.view.stride]
        stride = (frames // t, clip.shape[1] // h, clip.shape[2] // w)
        objects = object_tokens(clip, stride)
        scores = sample.fields["scores"].astype(np.float32)
        keep_frames = {"all frames": np.ones(t, bool),
                       "without each window's last latent frame":
                           (np.arange(t) % args.window_latent_frames) != args.window_latent_frames - 1}
        for name, frame_mask in keep_frames.items():
            flat_scores, flat_objects = scores[frame_mask].ravel(), objects[frame_mask].ravel()
            top = max(1, round(args.top_ratio * flat_scores.size))
            chosen = np.argsort(-flat_scores, kind="stable")[:top]
            results[name].append(flat_objects[chosen].mean())
            chance[name].append(flat_objects.mean())
    print(f"{args.manifest} [{args.split}], {len(results['all frames'])} clips, stride {stride}, "
          f"top {args.top_ratio:.0%} of tokens by stored score")
    for name, precisions in results.items():
        print(f"  {name}: object precision {np.mean(precisions):.3f} "
              f"(chance {np.mean(chance[name]):.3f})")


if __name__ == "__main__":
    main()

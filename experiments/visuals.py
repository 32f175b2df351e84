"""Images attached to runs as PNG artifacts (Omniboard previews them): the dual-masking plan of
a clip (what the encoder saw, what the decoder had to reconstruct), the decoder's pixel
reconstruction of its targets, and score maps.

Axis legend: C channels, T frames, H/W pixels; t/h/w the token grid; pt/ph/pw the tubelet;
n = t·h·w; q decoder targets; k maps.
"""
from __future__ import annotations

import os
import tempfile

import torch
from einops import rearrange, repeat

MAX_COLUMNS = 8                  # latent time steps shown; longer clips are subsampled
HIDDEN_DIM = 0.25                # brightness of tokens the encoder did not see
TARGET_TINT = (1.0, 0.2, 0.2)    # red overlay on decoder targets


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")   # no display on servers; must precede pyplot's import
    import matplotlib.pyplot as plt
    return plt


def attach_png(run, figure, name: str) -> None:
    """Saves ``figure`` as PNG and adds it to ``run`` as the artifact ``name`` (no-op without a run)."""
    plt = _pyplot()
    try:
        if run is None:
            return
        with tempfile.TemporaryDirectory() as folder:   # observers copy the file when it is added
            path = os.path.join(folder, name)
            figure.savefig(path, dpi=100)
            run.add_artifact(path, name, content_type="image/png")
    finally:
        plt.close(figure)


def heatmap_grid(maps: torch.Tensor, titles: list[str] | None = None):
    """maps (k, h, w) → a figure with one heat map per map."""
    plt = _pyplot()
    count = maps.shape[0]
    figure, axes = plt.subplots(1, count, figsize=(2.2 * count, 2.4), squeeze=False)
    for index, axis in enumerate(axes[0]):
        image = axis.imshow(maps[index].detach().float().cpu().numpy(), cmap="viridis")
        axis.set_title(titles[index] if titles else str(index), fontsize=8)
        axis.axis("off")
        figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    return figure


def _token_mask_pixels(flags: torch.Tensor, grid, size: tuple[int, int]) -> torch.Tensor:
    """flags (n,) bool on the token grid → (t, H, W) float on the pixel grid of one frame per t."""
    cells = rearrange(flags.float(), "(t h w) -> t h w", t=grid.t, h=grid.h, w=grid.w)
    return repeat(cells, "t h w -> t (h ph) (w pw)", ph=size[0] // grid.h, pw=size[1] // grid.w)


def pixel_reconstruction(video: torch.Tensor, plan, prediction: torch.Tensor,
                         tubelet: tuple[int, int, int], norm_pix: bool, eps: float) -> torch.Tensor:
    """video (b, C, T, H, W) with its decoder targets replaced by ``prediction`` (b, q, pt·ph·pw·C)
    of a pixel target; a ``norm_pix`` prediction is brought back to pixels with each true
    patch's mean and std (as in MAE's visualisation). → (b, C, T, H, W)."""
    from components.backbones.mae_decoder import gather_tokens
    from components.targets.pixels import patchify

    pt, ph, pw = tubelet
    tokens = patchify(video.detach().float(), tubelet)
    predicted = prediction.detach().float()
    if norm_pix:
        truth = gather_tokens(tokens, plan.dec_target_idx)
        predicted = predicted * (truth.var(dim=-1, unbiased=True, keepdim=True) + eps).sqrt() \
            + truth.mean(dim=-1, keepdim=True)
    index = plan.dec_target_idx[..., None].expand(-1, -1, tokens.shape[-1])
    tokens = tokens.scatter(1, index, predicted)
    return rearrange(tokens, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)", t=plan.grid.t,
                     h=plan.grid.h, w=plan.grid.w, pt=pt, ph=ph, pw=pw)


def _display_frames(clip: torch.Tensor, grid, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """clip (C, T, H, W) → (t, H, W, 3) in [0, 1]: the first frame of each latent time step."""
    frames_per_token = clip.shape[1] // grid.t
    frames = rearrange(clip[:, ::frames_per_token][:, :grid.t], "c t h w -> t h w c")
    frames = ((frames - low) / (high - low).clamp_min(1e-6)).clamp(0, 1)
    return frames.expand(*frames.shape[:-1], 3) if frames.shape[-1] == 1 else frames


def mask_overview(video: torch.Tensor, plan, clip_index: int = 0, reconstruction: torch.Tensor | None = None):
    """video (b, C, T, H, W), a MaskPlan → figure: rows input / encoder view / decoder targets
    (/ reconstruction (b, C, T, H, W) of the targets when given), one column per latent time
    step (its first frame)."""
    plt = _pyplot()
    grid = plan.grid
    clip = video[clip_index].detach().float().cpu()
    low, high = clip.min(), clip.max()
    frames = _display_frames(clip, grid, low, high)
    size = tuple(frames.shape[1:3])
    kept = _token_mask_pixels(plan.enc_keep_mask[clip_index].cpu(), grid, size)
    target = _token_mask_pixels(plan.dec_target_mask[clip_index].cpu(), grid, size)
    encoder_view = frames * (HIDDEN_DIM + (1 - HIDDEN_DIM) * kept[..., None])
    tint = torch.tensor(TARGET_TINT)
    decoder_view = torch.where(target[..., None] > 0, 0.5 * frames + 0.5 * tint, frames * HIDDEN_DIM)
    columns = torch.linspace(0, grid.t - 1, min(grid.t, MAX_COLUMNS)).round().long().tolist()
    rows = [("input", frames), ("encoder sees", encoder_view), ("decoder targets", decoder_view)]
    if reconstruction is not None:
        rebuilt = _display_frames(reconstruction[clip_index].detach().float().cpu(), grid, low, high)
        rows.append(("reconstruction", torch.where(target[..., None] > 0, rebuilt, frames * HIDDEN_DIM)))
    figure, axes = plt.subplots(len(rows), len(columns), figsize=(1.6 * len(columns), 1.7 * len(rows)),
                                squeeze=False)
    for row, (label, images) in enumerate(rows):
        for column, ti in enumerate(columns):
            axis = axes[row][column]
            axis.imshow(images[ti].clamp(0, 1).numpy())
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(label, fontsize=8)
            if row == 0:
                axis.set_title(f"t={ti}", fontsize=8)
    figure.suptitle(f"keep {plan.enc_keep_idx.shape[1]}/{grid.n} tokens, "
                    f"reconstruct {plan.dec_target_idx.shape[1]}", fontsize=9)
    figure.tight_layout()
    return figure


def attach_training_images(run, batch: dict, plan, prediction: torch.Tensor | None = None,
                           model=None) -> None:
    """The masks of the first clip of ``batch`` — with the decoder's reconstruction when the
    model regresses pixels — and, when the batch has them, its score maps."""
    from components.targets.pixels import PixelTarget

    target = getattr(model, "target", None)
    reconstruction = None
    if prediction is not None and isinstance(target, PixelTarget):
        reconstruction = pixel_reconstruction(batch["video"], plan, prediction, model.encoder.tubelet,
                                              target.norm_pix, target.eps)
    attach_png(run, mask_overview(batch["video"], plan, reconstruction=reconstruction), "masks.png")
    scores = batch.get("scores")
    if scores is not None:
        columns = torch.linspace(0, scores.shape[1] - 1, min(scores.shape[1], MAX_COLUMNS)).round().long()
        attach_png(run, heatmap_grid(scores[0, columns], [f"t={int(t)}" for t in columns]), "scores.png")

"""A PNG people look at: input frames, the tokens the encoder kept, the decoder targets and the
reconstruction, for the first clip of a batch; attached to the Sacred run.

Axis legend: c channels, T frames, H/W pixels, n tokens, q targets, v voxels per token.
"""
from __future__ import annotations

import os

import torch

from lvmae.components.backbones.mae_decoder import gather_tokens
from lvmae.components.data.reading.batch_streams import IMAGENET_MEAN, IMAGENET_STD
from lvmae.components.masking.plan import MaskPlan
from lvmae.components.targets.pixels import PixelTarget, patchify, unpatchify

# Tokens the encoder did not see are drawn in this grey; tokens outside the loss set darker.
_HIDDEN_GREY = 0.5
_OUTSIDE_DARK = 0.15
MAX_COLUMNS = 8


def _to_display(video: torch.Tensor) -> torch.Tensor:
    """Normalised (c, T, H, W) → [0, 1] for display (undoes ImageNet normalisation for RGB)."""
    if video.shape[0] == len(IMAGENET_MEAN):
        mean = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(-1, 1, 1, 1)
        video = video * std + mean
    else:
        video = (video - video.min()) / (video.max() - video.min()).clamp_min(1e-6)
    return video.clamp(0, 1)


@torch.no_grad()
def reconstruction_rows(model, batch: dict, plan: MaskPlan, prediction: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows of the grid for clip 0, each (c, T, H, W) in [0, 1]."""
    video = batch["video"][:1].float().cpu()
    tubelet, grid = model.encoder.tubelet, model.encoder.grid
    channels = video.shape[1]
    patches = patchify(video, tubelet)                                    # (1, n, v·c)
    display = patchify(_to_display(video[0])[None], tubelet)
    keep, targets = plan.enc_keep_idx[:1].cpu(), plan.dec_target_idx[:1].cpu()
    in_loss = plan.loss_weight[:1].cpu().bool()

    def compose(fill: float, tokens: dict[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        canvas = torch.full_like(display, fill)
        for idx, values in tokens.items():
            canvas.scatter_(1, idx[..., None].expand(-1, -1, canvas.shape[-1]), values)
        return unpatchify(canvas, tubelet, (grid.t, grid.h, grid.w), channels)[0]

    rows = {"input": _to_display(video[0]),
            "encoder keeps": compose(_HIDDEN_GREY, {keep: gather_tokens(display, keep)}),
            "decoder targets (loss set)": compose(_OUTSIDE_DARK, {
                targets[in_loss][None]: gather_tokens(display, targets[in_loss][None])})}
    if isinstance(model.target, PixelTarget):
        predicted = model.target.denormalise(prediction[:1].float().cpu(), gather_tokens(patches, targets), channels)
        canvas_tokens = patches.clone()
        canvas_tokens.scatter_(1, targets[..., None].expand(-1, -1, patches.shape[-1]), predicted)
        shown = patchify(_to_display(unpatchify(canvas_tokens, tubelet, (grid.t, grid.h, grid.w), channels)[0])[None], tubelet)
        visible = torch.cat([keep, targets], dim=1)
        rows["reconstruction"] = compose(_HIDDEN_GREY, {visible: gather_tokens(shown, visible)})
    return rows


def save_grid(rows: dict[str, torch.Tensor], tubelet_t: int, path: str, title: str = "") -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = next(iter(rows.values())).shape[1]
    latent = list(range(0, frames, tubelet_t))
    chosen = latent[:: max(1, len(latent) // MAX_COLUMNS)][:MAX_COLUMNS]
    figure, axes = plt.subplots(len(rows), len(chosen), figsize=(1.6 * len(chosen), 1.7 * len(rows)),
                                squeeze=False)
    for r, (name, video) in enumerate(rows.items()):
        for c, frame in enumerate(chosen):
            image = video[:, frame].permute(1, 2, 0).numpy()
            axes[r][c].imshow(image.squeeze() if image.shape[-1] == 1 else image,
                              cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=1)
            axes[r][c].set_xticks([]), axes[r][c].set_yticks([])
            if c == 0:
                axes[r][c].set_ylabel(name, fontsize=7)
            if r == 0:
                axes[r][c].set_title(f"frame {frame}", fontsize=7)
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def attach_reconstruction(run, model, batch: dict, plan: MaskPlan, prediction: torch.Tensor, path: str) -> str:
    """Renders the grid to ``path`` (PNG) and attaches it to the Sacred run (if any)."""
    step = os.path.splitext(os.path.basename(path))[0]
    save_grid(reconstruction_rows(model, batch, plan, prediction), model.encoder.tubelet[0], path, step)
    if run is not None:
        run.add_artifact(path, os.path.basename(path))
    return path

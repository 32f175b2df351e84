"""The preflight: every configured component of a built model called once on the model's
real token grid with a dummy batch of the real shapes, before a run is recorded."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from lvmae import registry
from lvmae.components.kit.checks import CHECKS
from lvmae.components.kit.masking_checks import _decoder_plan, _encoder_plan
from lvmae.components.kit.model_checks import (
    _backbone_video,
    _device,
    _dummy_batch,
    _run_backbone,
    _run_scorer,
    _run_target,
    _run_tokenizer,
    _tokenizer_video,
    check_scorer,
    check_tokenizer,
)

#: Token grid of the checks when none is given: 4 latent frames of 4×4 cells (n = 64), even
from lvmae.components.kit.support import PREFLIGHT_TOKENS, _calling, _generator, _quiet_rng, _tensor
from lvmae.components.masking.plan import MaskPlan, TokenGrid
from lvmae.registry import ContractError


def _repeats(component: Any, what: str, first: torch.Tensor, again: torch.Tensor) -> None:
    """A second call with the same generator state (and input) must give the same ``what``: a
    component that draws from Python's ``random`` or torch's global generator does not. Float
    outputs are compared to a tolerance (a GPU kernel may sum in another order: not a draw)."""
    same = (torch.allclose(first, again, rtol=REPEAT_RTOL, atol=REPEAT_ATOL, equal_nan=True)
            if first.is_floating_point() else torch.equal(first, again))
    if not same:
        raise ContractError(component, f"called twice with the same generator state, it gave different {what}: "
                            "draw every random number from the generator argument (not Python's random, "
                            "NumPy's or torch's global generator), so a seed gives one plan and a resumed run "
                            "draws the masks the uninterrupted one drew")


#: How close two float outputs of the same call must be to count as the same.
REPEAT_RTOL, REPEAT_ATOL = 1e-4, 1e-6
#: Fields of a real batch the preflight uses in place of the dummy batch's.
REAL_FIELDS = ("video", "latents", "indices", "scores")


def _preflight_mae(model: nn.Module, batch_size: int, real: dict | None = None) -> list[str]:
    encoder = model.encoder
    grid, tubelet = encoder.grid, tuple(encoder.tubelet)
    device = _device(model)
    channels = model.target.channels(encoder.in_channels, tubelet)
    batch = _dummy_batch(grid, tubelet, batch_size, encoder.in_channels, channels, device)
    if real is not None and tuple(real["video"].shape[1:]) == tuple(batch["video"].shape[1:]):
        # a batch of the configured pipeline: real pixels, normalised as the run sees them
        batch_size = real["video"].shape[0]
        batch = {**_dummy_batch(grid, tubelet, batch_size, encoder.in_channels, channels, device),
                 **{name: real[name].to(device) for name in REAL_FIELDS if name in real}}
    enc_masking, dec_masking = copy.deepcopy(model.encoder_masking), copy.deepcopy(model.decoder_masking)
    checked = [registry.describe(model.encoder_masking), registry.describe(model.decoder_masking)]
    keep = _encoder_plan(enc_masking, grid, batch_size, _generator(0, device))
    _repeats(model.encoder_masking, "enc_keep_idx", keep, _encoder_plan(
        copy.deepcopy(model.encoder_masking), grid, batch_size, _generator(0, device)))
    scores = None
    if dec_masking.needs_scores:
        scores = batch["scores"]
        if model.scorer is not None and model.score_source != "batch":
            # two copies: the same state (a scorer's own seeded generator too), as the model calls it
            scorer, twin = (copy.deepcopy(model.scorer).eval() for _ in range(2))
            scores = _run_scorer(scorer, batch["video"], grid)
            _repeats(model.scorer, "scores", scores, _run_scorer(twin, batch["video"], grid))
            checked.append(registry.describe(model.scorer))
    targets = _decoder_plan(dec_masking, grid, keep, _generator(1, device), scores)
    _repeats(model.decoder_masking, "dec_target_idx", targets, _decoder_plan(
        copy.deepcopy(model.decoder_masking), grid, keep, _generator(1, device), scores))
    # Backbone and decoder on a prefix of the plan: real grid, real signatures, little work.
    small = MaskPlan(grid, keep[:1, :PREFLIGHT_TOKENS], targets[:1, :PREFLIGHT_TOKENS])
    features = _run_backbone(encoder, batch["video"][:1], small.enc_keep_idx)
    with _calling(model.decoder, "forward(enc_features, plan)"):
        prediction = model.decoder(features, small)
    _tensor(model.decoder, "predictions", prediction, (1, small.dec_target_idx.shape[1], channels),
            floating=True)
    target = copy.deepcopy(model.target)
    _run_target(target, {k: v[:1] for k, v in batch.items()}, small, tubelet, channels, prediction)
    return checked + [registry.describe(encoder), registry.describe(model.decoder), registry.describe(model.target)]


def _preflight_classifier(model: nn.Module, batch_size: int) -> list[str]:
    encoder = model.encoder
    video = _backbone_video(encoder, 1)
    checked = [registry.describe(encoder)]
    if model.token_dropper is not None:
        keep = _encoder_plan(copy.deepcopy(model.token_dropper), encoder.grid, batch_size, _generator(0, video.device))
        _repeats(model.token_dropper, "enc_keep_idx", keep, _encoder_plan(
            copy.deepcopy(model.token_dropper), encoder.grid, batch_size, _generator(0, video.device)))
        checked.append(registry.describe(model.token_dropper))
    keep = torch.arange(min(PREFLIGHT_TOKENS, encoder.grid.n), device=video.device)[None]
    features = _run_backbone(encoder, video, keep)
    for name, head in model.heads.items():
        with _calling(head, f"forward(features {tuple(features.shape)}) (head {name!r})"):
            logits = head(features)
        _tensor(head, f"logits of head {name!r}", logits, (1, None), floating=True)
        checked.append(registry.describe(head))
    return checked


def _preflight_adaptive_tokenizer(model: nn.Module, batch_size: int,
                                  clip: tuple[int, int, int] | None) -> list[str]:
    from lvmae.components.models.adaptive_tokenizer import standardize_per_clip  # pylint: disable=import-outside-toplevel
    tokenizer = copy.deepcopy(model.tokenizer)
    video = _tokenizer_video(tokenizer, *(clip or (None, None, None)), batch_size=1)
    _run_tokenizer(tokenizer, video)
    checked = [registry.describe(model.tokenizer), registry.describe(model.tokenizer.quantizer)]
    if model.scorer is not None:
        st, sh, sw = tokenizer.stride
        grid = TokenGrid(video.shape[2] // st, video.shape[3] // sh, video.shape[4] // sw)
        scores = _run_scorer(copy.deepcopy(model.scorer), video, grid)
        checked.append(registry.describe(model.scorer))
        selector = copy.deepcopy(model.topk)
        k = model.selected_count((grid.t, grid.h, grid.w))
        with _calling(selector, f"select_on_grid(scores {tuple(scores.shape)}, k={k})"):
            selection, again = (copy.deepcopy(model.topk).select_on_grid(
                standardize_per_clip(scores, first=1), k, keep_first_frame=True, generator=_generator(2, video.device))
                for _ in range(2))
        _tensor(selector, "selection", selection, tuple(scores.shape), floating=True)
        _repeats(model.topk, "selections", selection, again)
        if not torch.equal(selection.sum(dim=(1, 2, 3)), torch.full_like(selection[:, 0, 0, 0], k + grid.cells)):
            raise ContractError(selector, f"the selection must keep latent frame 0 and exactly k={k} other tokens")
        checked.append(registry.describe(model.topk))
    return checked


def preflight_components(*components: Any, batch_size: int = 2,
                         clip: tuple[int, int, int] | None = None, batch: dict | None = None) -> list[str]:
    """Calls every configured component once on the real shapes, before any work is recorded.

    Args:
      components: built objects — a ``model.mae`` (its masking strategies, scorer, backbone,
        decoder and target on the encoder's token grid), a ``model.classifier`` (backbone,
        token dropper, heads), a ``model.adaptive_tokenizer`` (tokenizer, quantizer, scorer,
        top-k on one window), or a single component of a kind the kit checks. ``None`` and
        objects of other kinds (a perceptual-loss network, a discriminator) are skipped.
      batch_size: clips in the dummy batch of the masking strategies (the backbone, decoder and
        tokenizer run on one clip and ``PREFLIGHT_TOKENS`` tokens).
      clip: (T, H, W) of the experiment's clips, for components that are not built for one
        size (tokenizers, lone scorers); default: one tokenizer window of 2×2 tokens, and
        the kit's grid for a scorer. A ``model.mae``/``model.classifier`` uses its encoder's.
      batch: a real batch of the configured data pipeline (``video`` and any precomputed
        fields): a ``model.mae``'s components run on it instead of the dummy batch when its clips
        have the model's shape. The dummy batch's video is normalised as real frames are.

    Returns the components checked, described as ``'kind.name' (module.Class)``.
    Raises ``ContractError`` naming the first component that breaks its contract.
    """
    from lvmae.components.models.adaptive_tokenizer import AdaptiveTokenizer  # pylint: disable=import-outside-toplevel
    from lvmae.components.models.classifier import VideoClassifier  # pylint: disable=import-outside-toplevel
    from lvmae.components.models.mae import VideoMAE  # pylint: disable=import-outside-toplevel
    registry.discover()
    checked: list[str] = []
    for component in components:
        if component is None:
            continue
        with _quiet_rng():
            if isinstance(component, VideoMAE):
                checked += _preflight_mae(component, batch_size, batch)
            elif isinstance(component, VideoClassifier):
                checked += _preflight_classifier(component, batch_size)
            elif isinstance(component, AdaptiveTokenizer):
                checked += _preflight_adaptive_tokenizer(component, batch_size, clip)
            else:
                entry = registry.entry_of(component)
                if entry is None or entry.kind not in CHECKS:
                    continue          # a kind without a call contract (a loss network, a head)
                if clip is not None and entry.kind == "tokenizer":
                    check_tokenizer(component, *clip)
                elif clip is not None and entry.kind == "scorer":
                    st, sh, sw = component.stride
                    check_scorer(component, TokenGrid(clip[0] // st, clip[1] // sh, clip[2] // sw), batch_size=1)
                else:
                    CHECKS[entry.kind](component)
                checked.append(registry.describe(component))
    return checked

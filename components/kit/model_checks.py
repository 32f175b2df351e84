"""Kit checks of the network-side kinds: scorer, target, quantizer, tokenizer, backbone,
head, decoder, top-k selector, and of datasets."""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lvmae import registry

#: Token grid of the checks when none is given: 4 latent frames of 4×4 cells (n = 64), even
from lvmae.components.kit.support import (
    DEFAULT_BATCH,
    DEFAULT_GRID,
    PREFLIGHT_TOKENS,
    _calling,
    _contract,
    _generator,
    _int_attribute,
    _quiet_rng,
    _resolve,
    _tensor,
    _video,
)
from lvmae.components.masking.plan import MaskPlan, TokenGrid
from lvmae.registry import ContractError


def _scorer_video(scorer: nn.Module, grid: TokenGrid, batch_size: int,
                  channels: int | None = None) -> torch.Tensor:
    st, sh, sw = scorer.stride
    channels = channels or int(getattr(scorer, "in_channels", 3))
    shape = (batch_size, channels, grid.t * st, grid.h * sh, grid.w * sw)
    return _video(shape, _generator(3)).to(_device(scorer))


def _run_scorer(scorer: nn.Module, video: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    with _calling(scorer, f"forward(video {tuple(video.shape)})"):
        scores = scorer(video)
    return _tensor(scorer, f"scores for video {tuple(video.shape)}", scores,
                   (video.shape[0], grid.t, grid.h, grid.w), floating=True)


def check_scorer(scorer: nn.Module | str, grid: TokenGrid = DEFAULT_GRID,
                 batch_size: int = DEFAULT_BATCH) -> None:
    """A scorer: ``stride`` (3 positive ints), ``first_frame`` a known choice, and scores
    (b, t, h, w) finite floats on the grid of its stride."""
    from lvmae.components.scorers.base import FirstFrame, check_choice  # pylint: disable=import-outside-toplevel
    scorer = _resolve(scorer, "scorer")
    _contract(scorer, "scorer")
    _int_attribute(scorer, "stride", 3)
    with _calling(scorer, "first_frame"):
        check_choice(scorer.first_frame, FirstFrame, "first_frame")
    scorer = copy.deepcopy(scorer)
    with _quiet_rng():
        _run_scorer(scorer, _scorer_video(scorer, grid, batch_size), grid)


def _dummy_batch(grid: TokenGrid, tubelet: tuple[int, int, int], batch_size: int, in_channels: int,
                 latent_dim: int, device: torch.device | str = "cpu") -> dict:
    """A batch of the real shapes: video, and the precomputed fields shards may carry
    (latents with ``latent_dim`` channels, token ids, scores)."""
    st, sh, sw = tubelet
    gen = _generator(5)
    batch = {
        "video": _video((batch_size, in_channels, grid.t * st, grid.h * sh, grid.w * sw), gen),
        "latents": torch.randn(batch_size, latent_dim, grid.t, grid.h, grid.w, generator=gen),
        "indices": torch.randint(2, (batch_size, grid.t, grid.h, grid.w), generator=gen),
        "scores": torch.rand(batch_size, grid.t, grid.h, grid.w, generator=gen),
        "label": torch.zeros(batch_size, dtype=torch.long),
    }
    return {key: value.to(device) for key, value in batch.items()}


def _run_target(target: nn.Module, batch: dict, plan: MaskPlan, tubelet: tuple[int, int, int],
                channels: int, prediction: torch.Tensor | None = None) -> None:
    batch_size, queries = plan.dec_target_idx.shape
    with _calling(target, "forward(batch, plan, tubelet)"):
        goal = target(batch, plan, tubelet)
    _tensor(target, "the target", goal, (batch_size, queries) + (None,) * max(0, goal.dim() - 2)
            if isinstance(goal, torch.Tensor) and goal.dim() >= 2 else (batch_size, queries, None))
    if prediction is None:
        prediction = torch.randn(batch_size, queries, channels, generator=_generator(6)).to(goal.device)
    prediction = prediction.detach().float().requires_grad_(True)
    with torch.enable_grad():
        with _calling(target, "per_token_loss(prediction (b, q, c), target)"):
            per_token = target.per_token_loss(prediction, goal)
        _tensor(target, "per_token_loss(...)", per_token, (batch_size, queries), floating=True)
        with _calling(target, "loss(prediction, target, plan.loss_weight)"):
            terms = target.loss(prediction, goal, plan.loss_weight)
        if not isinstance(terms, dict) or "loss" not in terms:
            raise ContractError(target, f"loss(...) must return a dict with 'loss', got {terms!r}")
        loss = _tensor(target, "loss(...)['loss']", terms["loss"], (), floating=True)
        loss.backward()
    if prediction.grad is None or not torch.isfinite(prediction.grad).all():
        raise ContractError(target, "the loss sends no finite gradient to the prediction")


def check_target(target: nn.Module | str, grid: TokenGrid = DEFAULT_GRID,
                 tubelet: tuple[int, int, int] = (2, 4, 4), in_channels: int = 3,
                 batch_size: int = DEFAULT_BATCH) -> None:
    """A target: ``channels`` a positive int, ``forward`` → (b, q, ...) at the plan's
    targets, ``per_token_loss`` → (b, q) finite, ``loss`` a dict whose ``loss`` is a scalar
    with a gradient. The dummy batch holds ``video`` and the precomputed fields
    ``latents`` (``channels`` wide), ``indices`` and ``scores``."""
    target = _resolve(target, "target")
    _contract(target, "target")
    with _calling(target, f"channels({in_channels}, {tuple(tubelet)})"):
        channels = target.channels(in_channels, tuple(tubelet))
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ContractError(target, f"channels(...) must return a positive int, got {channels!r}")
    target = copy.deepcopy(target)
    with _quiet_rng():
        plan = MaskPlan.draw(grid, registry.build("masking.encoder.tube", keep_ratio=0.25),
                             registry.build("masking.decoder.random", budget=0.25), batch_size,
                             _generator(0))
        batch = _dummy_batch(grid, tuple(tubelet), batch_size, in_channels, channels)
        _run_target(target, batch, plan, tuple(tubelet), channels)


def check_quantizer(quantizer: nn.Module | str, grid: TokenGrid = DEFAULT_GRID,
                    batch_size: int = 2) -> None:
    """A quantizer: ``dim`` and ``codebook_size`` positive ints; forward(latents (b, d, t, h, w))
    → Quantized(codes of the same shape, indices (b, t, h, w) long in [0, codebook_size));
    ``indices_to_codes`` inverts ``codes_to_indices``; gradients pass to the latents."""
    from lvmae.components.tokenizers.quantizer import Quantized  # pylint: disable=import-outside-toplevel
    quantizer = _resolve(quantizer, "quantizer")
    _contract(quantizer, "quantizer")
    dim = _int_attribute(quantizer, "dim")
    size = _int_attribute(quantizer, "codebook_size")
    quantizer = copy.deepcopy(quantizer)
    with _quiet_rng(), torch.enable_grad():
        latents = torch.randn(batch_size, dim, grid.t, grid.h, grid.w, generator=_generator(8))
        latents.requires_grad_(True)
        with _calling(quantizer, f"forward(latents {tuple(latents.shape)})"):
            out = quantizer(latents)
        if not isinstance(out, Quantized):
            raise ContractError(quantizer, f"forward must return a Quantized, got {type(out).__name__}")
        codes = _tensor(quantizer, "Quantized.codes", out.codes, tuple(latents.shape), floating=True)
        indices = _tensor(quantizer, "Quantized.indices", out.indices,
                          (batch_size, grid.t, grid.h, grid.w), floating=False)
        if int(indices.min()) < 0 or int(indices.max()) >= size:
            raise ContractError(quantizer, f"Quantized.indices outside [0, codebook_size={size})")
        codes.sum().backward()
        if latents.grad is None:
            raise ContractError(quantizer, "no gradient reaches the latents (straight-through expected)")
    with _quiet_rng():
        channel_last = codes.detach().movedim(1, -1)
        with _calling(quantizer, "codes_to_indices(codes (..., d))"):
            back = quantizer.codes_to_indices(channel_last)
        if not torch.equal(back.long(), indices.long()):
            raise ContractError(quantizer, "codes_to_indices(codes) differs from Quantized.indices")
        with _calling(quantizer, "indices_to_codes(indices)"):
            again = quantizer.indices_to_codes(indices)
        if tuple(again.shape) != tuple(channel_last.shape) or not torch.allclose(again.float(), channel_last.float()):
            raise ContractError(quantizer, "indices_to_codes(indices) does not give back the codes")


def _tokenizer_video(tokenizer: nn.Module, frames: int | None, height: int | None,
                     width: int | None, batch_size: int) -> torch.Tensor:
    _, sh, sw = tokenizer.stride
    shape = (batch_size, tokenizer.in_channels, frames or tokenizer.window_frames,
             height or 2 * sh, width or 2 * sw)
    return torch.rand(shape, generator=_generator(9)).to(_device(tokenizer))


def _run_tokenizer(tokenizer: nn.Module, video: torch.Tensor) -> None:
    st, sh, sw = tokenizer.stride
    b, _, frames, height, width = video.shape
    grid = (frames // st, height // sh, width // sw)
    d = tokenizer.latent_dim
    with _calling(tokenizer, f"encode(video {tuple(video.shape)})"):
        latents, indices = tokenizer.encode(video)
    _tensor(tokenizer, "encode(...) latents", latents, (b, d) + grid, floating=True)
    _tensor(tokenizer, "encode(...) indices", indices, (b,) + grid, floating=False)
    with _calling(tokenizer, f"decode(latents {tuple(latents.shape)})"):
        recon = tokenizer.decode(latents)
    _tensor(tokenizer, "decode(...)", recon, tuple(video.shape), floating=True)


def check_tokenizer(tokenizer: nn.Module | str, frames: int | None = None, height: int | None = None,
                    width: int | None = None, batch_size: int = 1) -> None:
    """A tokenizer: ``stride`` (3 ints), ``window_frames``, ``in_channels`` and a quantizer;
    encode(video (b, C, T, H, W)) → latents (b, d, T/st, H/sh, W/sw) and indices
    (b, T/st, H/sh, W/sw) (non-causal frame contract); decode(latents) → the video's shape.
    Default clip: one window of 2×2 tokens."""
    tokenizer = _resolve(tokenizer, "tokenizer")
    _contract(tokenizer, "tokenizer")
    _int_attribute(tokenizer, "stride", 3)
    _int_attribute(tokenizer, "window_frames")
    _int_attribute(tokenizer, "in_channels")
    if getattr(tokenizer, "quantizer", None) is None:
        raise ContractError(tokenizer, "has no quantizer")
    tokenizer = copy.deepcopy(tokenizer)
    with _quiet_rng():
        _run_tokenizer(tokenizer, _tokenizer_video(tokenizer, frames, height, width, batch_size))


def _device(module: Any) -> torch.device:
    if isinstance(module, nn.Module):
        for tensor in module.parameters():
            return tensor.device
        for tensor in module.buffers():
            return tensor.device
    return torch.device("cpu")


def _run_backbone(backbone: nn.Module, video: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    with _calling(backbone, f"forward(video {tuple(video.shape)}, enc_keep_idx {tuple(keep.shape)})"):
        features = backbone(video, keep)
    return _tensor(backbone, "features", features, (video.shape[0], keep.shape[1], backbone.dim),
                   floating=True)


def _backbone_video(backbone: nn.Module, batch_size: int) -> torch.Tensor:
    grid, (st, sh, sw) = backbone.grid, backbone.tubelet
    shape = (batch_size, int(getattr(backbone, "in_channels", 3)), grid.t * st, grid.h * sh, grid.w * sw)
    return _video(shape, _generator(4)).to(_device(backbone))


def check_backbone(backbone: nn.Module | Callable[..., nn.Module] | str, batch_size: int = 2,
                   tokens: int = PREFLIGHT_TOKENS) -> None:
    """A backbone: an nn.Module with ``grid`` (TokenGrid), ``tubelet``, ``dim`` and
    forward(video (b, C, T, H, W), enc_keep_idx (b, k)) → features (b, k, dim), differentiable.
    A registry name is built with its defaults (pass a built module for other sizes)."""
    backbone = _resolve(backbone, "backbone")
    if not isinstance(backbone, nn.Module):
        raise ContractError(backbone, f"must build an nn.Module, got {type(backbone).__name__}")
    if not isinstance(getattr(backbone, "grid", None), TokenGrid):
        raise ContractError(backbone, "attribute grid must be a TokenGrid (the token grid it is built for)")
    _int_attribute(backbone, "tubelet", 3)
    _int_attribute(backbone, "dim")
    video = _backbone_video(backbone, batch_size)
    keep = torch.stack([torch.randperm(backbone.grid.n, generator=_generator(row))[:tokens].sort().values
                        for row in range(batch_size)]).to(video.device)
    with _quiet_rng(), torch.enable_grad():
        features = _run_backbone(backbone, video, keep)
        features.float().sum().backward()
    if not any(p.grad is not None for p in backbone.parameters()):
        raise ContractError(backbone, "no gradient reaches its parameters")
    backbone.zero_grad(set_to_none=True)


def _built(component: Any, kind: str, **arguments: Any) -> nn.Module:
    """A registry name or a factory (gin binds heads and decoders without parentheses: the
    model calls them with these arguments) is built with ``arguments``; a module is kept."""
    if isinstance(component, str):
        registry.discover()
        entry = registry.get(component)
        if entry.kind != kind:
            raise ValueError(f"{component!r} is a {entry.kind} component, not a {kind}")
        component = entry.obj
    if not isinstance(component, nn.Module) and callable(component):
        with _calling(component, f"building with {arguments}"):
            component = component(**arguments)
    if not isinstance(component, nn.Module):
        raise ContractError(component, f"must be (or build) an nn.Module, got {type(component).__name__}")
    return component


def check_head(head: nn.Module | Callable[..., nn.Module] | str, dim: int = 32, num_classes: int = 5,
               tokens: int = PREFLIGHT_TOKENS, batch_size: int = 2) -> None:
    """A classification head: built as ``head(dim=..., num_classes=...)`` (a factory or a
    name) or given built; forward(features (b, n, dim)) → logits (b, num_classes), finite,
    differentiable. Give ``dim``/``num_classes`` of a built head."""
    head = _built(head, "head", dim=dim, num_classes=num_classes)
    _contract(head, "head")
    with _quiet_rng(), torch.enable_grad():
        features = torch.randn(batch_size, tokens, dim, generator=_generator(12)).requires_grad_(True)
        with _calling(head, f"forward(features {tuple(features.shape)})"):
            logits = head(features)
        _tensor(head, "logits", logits, (batch_size, num_classes), floating=True)
        logits.sum().backward()
    if features.grad is None:
        raise ContractError(head, "no gradient reaches the features")


def check_decoder(decoder: nn.Module | Callable[..., nn.Module] | str, encoder_dim: int = 32,
                  out_dim: int = 12, grid: TokenGrid = DEFAULT_GRID, batch_size: int = 2) -> None:
    """An MAE decoder: built as ``decoder(encoder_dim=..., out_dim=..., grid=...)`` (a
    factory or a name, as ``model.mae`` builds it) or given built; forward(enc_features
    (b, k, encoder_dim), plan) → predictions (b, q, out_dim) at the plan's targets,
    differentiable. Give the dimensions of a built decoder."""
    decoder = _built(decoder, "decoder", encoder_dim=encoder_dim, out_dim=out_dim, grid=grid)
    _contract(decoder, "decoder")
    with _quiet_rng(), torch.enable_grad():
        plan = MaskPlan.draw(grid, registry.build("masking.encoder.tube", keep_ratio=0.25),
                             registry.build("masking.decoder.random", budget=0.25), batch_size, _generator(0))
        features = torch.randn(batch_size, plan.enc_keep_idx.shape[1], encoder_dim,
                               generator=_generator(13)).requires_grad_(True)
        with _calling(decoder, f"forward(enc_features {tuple(features.shape)}, plan)"):
            prediction = decoder(features, plan)
        _tensor(decoder, "predictions", prediction, (batch_size, plan.dec_target_idx.shape[1], out_dim),
                floating=True)
        prediction.sum().backward()
    if features.grad is None:
        raise ContractError(decoder, "no gradient reaches the encoder features")


def check_topk(selector: nn.Module | str, batch_size: int = 2, candidates: int = 16, k: int = 5) -> None:
    """A top-k selector: forward(scores (b, m), k) → (b, m) with exactly k ones per row, and a
    gradient to the scores."""
    selector = _resolve(selector, "topk")
    _contract(selector, "topk")
    selector = copy.deepcopy(selector)
    with _quiet_rng(), torch.enable_grad():
        scores = torch.randn(batch_size, candidates, generator=_generator(10)).requires_grad_(True)
        with _calling(selector, f"forward(scores {tuple(scores.shape)}, k={k})"):
            selection = selector(scores, k, _generator(11))
        _tensor(selector, "selection", selection, (batch_size, candidates), floating=True)
        if not torch.equal(selection.detach().sum(dim=1), torch.full((batch_size,), float(k))):
            raise ContractError(selector, f"the selection must have exactly k={k} ones per row")
        (selection * torch.arange(candidates, dtype=selection.dtype)).sum().backward()
    if scores.grad is None:
        raise ContractError(selector, "no gradient reaches the scores")


def check_dataset(dataset: Any) -> None:
    """A dataset: ``prepare()`` returns a Manifest whose splits list shard files that exist
    (for a generated dataset this writes its shards: build it with a small size)."""
    from lvmae.components.data.formats.manifest import Manifest  # pylint: disable=import-outside-toplevel
    dataset = _resolve(dataset, "dataset")
    _contract(dataset, "dataset")
    with _calling(dataset, "prepare()"):
        manifest = dataset.prepare()
    if not isinstance(manifest, Manifest):
        raise ContractError(dataset, f"prepare() must return a Manifest, got {type(manifest).__name__}")
    if not manifest.splits:
        raise ContractError(dataset, "the manifest has no splits")

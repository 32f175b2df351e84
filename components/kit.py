"""The contract kit: one-line checks that a component honours its kind's contract, and the
preflight that calls every configured component once on an experiment's real shapes.

For plugin authors, in their own pytest::

    from lvmae.components.kit import check_decoder_masking
    def test_contract():
        check_decoder_masking(MyMasking())          # or the registry name, "masking.decoder.mine"

Each ``check_<kind>`` builds nothing heavy, runs the component on small inputs of the shapes
the framework uses and raises ``ContractError`` naming the component (registered name and
module) and what is wrong. ``check_component(name)`` picks the check by the registry kind.

``preflight_components(model, ...)`` is what ``run.py`` runs before a run is recorded: for a
built ``model.mae`` / ``model.classifier`` / ``model.adaptive_tokenizer`` (or any single
component) it calls every configured component once on the model's real token grid with a
dummy batch of the real shapes. It leaves no trace: components with state of their own
(strategies, scorers, targets, tokenizers) run on copies, the global RNG is restored, and no
gradient is recorded.

Axis legend: b batch, C channels, T/H/W pixels, t/h/w token grid, n = t·h·w, k kept by the
encoder, q decoder targets, c target width, d latent/code width, m candidates.
"""
from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from lvmae import registry
from lvmae.components.masking.base import DecoderMasking, EncoderMasking
from lvmae.components.masking.contract import check_index_tensor, check_targets_not_kept, full_checks
from lvmae.components.masking.plan import MaskPlan, TokenGrid
from lvmae.registry import ContractError

#: Token grid of the checks when none is given: 4 latent frames of 4×4 cells (n = 64), even
#: sides (running-cell patterns need them).
DEFAULT_GRID = TokenGrid(4, 4, 4)
#: Clips per check batch: > 1 so per-clip rows and batch-size mix-ups show.
DEFAULT_BATCH = 3
#: Tokens the preflight runs the backbone and decoder on (a prefix of the real plan): enough
#: to exercise signatures and output shapes without a full forward at 128 frames.
PREFLIGHT_TOKENS = 8


# ---------------------------------------------------------------------------------------------
# helpers

def _resolve(component: Any, kind: str) -> Any:
    """A registry name is built with its gin defaults; anything else is returned as is."""
    registry.discover()           # the reference strategies the checks compose with
    if isinstance(component, str):
        entry = registry.get(component)
        if entry.kind != kind:
            raise ValueError(f"{component!r} is a {entry.kind} component, not a {kind}")
        return entry.obj()
    return component


def _contract(component: Any, kind: str) -> None:
    """The kind's registration contract, also for an instance that never registered."""
    problem = registry.get_kind(kind).contract
    problem = problem(type(component)) if problem else None
    if problem:
        raise ContractError(component, problem)


@contextlib.contextmanager
def _calling(component: Any, call: str) -> Iterator[None]:
    """Turns any exception raised inside a component call into a ContractError naming it."""
    try:
        yield
    except ContractError:
        raise
    except Exception as error:  # the plugin's own exception, whatever it is
        raise ContractError(component, f"{call} raised {type(error).__name__}: {error}") from error


@contextlib.contextmanager
def _quiet_rng() -> Iterator[None]:
    """Restores the global CPU (and CUDA) RNG afterwards: a preflight changes no seed stream."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices), torch.no_grad(), full_checks():
        yield


def _generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device).manual_seed(seed)


def _tensor(component: Any, what: str, value: Any, shape: tuple[int, ...] | None = None,
            floating: bool | None = None) -> torch.Tensor:
    """Checks an output's type, shape (None entries match anything) and dtype family."""
    if not isinstance(value, torch.Tensor):
        raise ContractError(component, f"{what} must be a torch.Tensor, got {type(value).__name__}")
    if shape is not None and (value.dim() != len(shape) or any(
            want is not None and got != want for got, want in zip(value.shape, shape))):
        legend = tuple("·" if s is None else s for s in shape)
        raise ContractError(component, f"{what} must have shape {legend}, got {tuple(value.shape)}")
    if floating is True and not value.is_floating_point():
        raise ContractError(component, f"{what} must be floating point, got {value.dtype}")
    if floating is False and value.is_floating_point():
        raise ContractError(component, f"{what} must be an integer tensor, got {value.dtype}")
    if value.is_floating_point() and not torch.isfinite(value).all():
        raise ContractError(component, f"{what} has non-finite values")
    return value


def _int_attribute(component: Any, name: str, length: int | None = None) -> Any:
    value = getattr(component, name, None)
    values = value if length else (value,)
    try:
        ok = (len(values) == (length or 1)
              and all(int(v) == v and int(v) >= 1 for v in values))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        want = f"{length} positive integers" if length else "a positive integer"
        raise ContractError(component, f"attribute {name} must be {want}, got {value!r}")
    return tuple(int(v) for v in values) if length else int(value)


# ---------------------------------------------------------------------------------------------
# masking

def _encoder_plan(strategy: EncoderMasking, grid: TokenGrid, batch_size: int,
                  generator: torch.Generator) -> torch.Tensor:
    with _calling(strategy, f"count({grid})"):
        count = strategy.count(grid)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ContractError(strategy, f"count({grid}) must return a positive int, got {count!r}")
    with _calling(strategy, f"__call__({grid}, batch_size={batch_size}, generator)"):
        keep = strategy(grid, batch_size, generator)
    check_index_tensor(strategy, "enc_keep_idx", keep, batch_size, count, grid.n, ascending=True)
    return keep


def check_encoder_masking(strategy: EncoderMasking | str, grid: TokenGrid = DEFAULT_GRID,
                          batch_size: int = DEFAULT_BATCH) -> None:
    """An encoder masking strategy: its declared count, (b, k) long sorted unique indices in
    range for batch sizes 1 and ``batch_size``, and the same indices for the same seed."""
    strategy = _resolve(strategy, "masking.encoder")
    _contract(strategy, "masking.encoder")
    with _quiet_rng():
        _encoder_plan(strategy, grid, 1, _generator(0))
        first = _encoder_plan(strategy, grid, batch_size, _generator(0))
        again = _encoder_plan(strategy, grid, batch_size, _generator(0))
    if not torch.equal(first, again):
        raise ContractError(strategy, "the same generator seed gave different indices: draw every "
                            "random number from the generator argument")


def _reference_encoders() -> list[EncoderMasking]:
    """Built-in encoder strategies a decoder strategy must compose with."""
    return [registry.build("masking.encoder.tube", keep_ratio=0.25),
            registry.build("masking.encoder.random", keep_ratio=0.1)]


def _decoder_plan(strategy: DecoderMasking, grid: TokenGrid, keep: torch.Tensor,
                  generator: torch.Generator, scores: torch.Tensor | None) -> torch.Tensor:
    batch_size, kept = keep.shape
    with _calling(strategy, f"count({grid}, kept={kept})"):
        count = strategy.count(grid, kept)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ContractError(strategy, f"count({grid}, kept={kept}) must return a positive int, got {count!r}")
    shown = "scores (b, t, h, w)" if scores is not None else "scores=None"
    try:
        targets = strategy(grid, keep, generator, scores)
    except Exception as error:
        hint = ""
        if scores is None and not strategy.needs_scores and "NoneType" in str(error):
            hint = (" — a strategy that reads scores must declare needs_scores = True (it is called "
                    "with scores=None otherwise)")
        raise ContractError(strategy, f"__call__({grid}, enc_keep_idx, generator, {shown}) raised "
                            f"{type(error).__name__}: {error}{hint}") from error
    check_index_tensor(strategy, "dec_target_idx", targets, batch_size, count, grid.n, ascending=False)
    check_targets_not_kept(strategy, grid.n, keep, targets, strategy.decodes_kept_tokens)
    return targets


def _scores(grid: TokenGrid, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.rand(batch_size, grid.t, grid.h, grid.w, generator=_generator(7), device="cpu").to(device)


def check_decoder_masking(strategy: DecoderMasking | str, grid: TokenGrid = DEFAULT_GRID,
                          batch_size: int = DEFAULT_BATCH,
                          encoders: list[EncoderMasking] | None = None) -> None:
    """A decoder masking strategy, after each reference encoder strategy (tube and random by
    default): declared count, (b, q) long unique in-range indices, targets among the
    encoder-masked tokens (or ``decodes_kept_tokens``), a loss token, seeded results, and a
    call with ``scores=None`` unless it declares ``needs_scores``."""
    strategy = _resolve(strategy, "masking.decoder")
    _contract(strategy, "masking.decoder")
    with _quiet_rng():
        for encoder in encoders or _reference_encoders():
            for size in (1, batch_size):
                keep = _encoder_plan(encoder, grid, size, _generator(0))
                scores = _scores(grid, size) if strategy.needs_scores else None
                first = _decoder_plan(strategy, grid, keep, _generator(1), scores)
                again = _decoder_plan(strategy, grid, keep, _generator(1), scores)
                if not torch.equal(first, again):
                    raise ContractError(strategy, "the same generator seed gave different targets: draw "
                                        "every random number from the generator argument")


# ---------------------------------------------------------------------------------------------
# scorer, target, quantizer, tokenizer, backbone, top-k, dataset

def _scorer_video(scorer: nn.Module, grid: TokenGrid, batch_size: int,
                  channels: int | None = None) -> torch.Tensor:
    st, sh, sw = scorer.stride
    channels = channels or int(getattr(scorer, "in_channels", 3))
    shape = (batch_size, channels, grid.t * st, grid.h * sh, grid.w * sw)
    return torch.rand(shape, generator=_generator(3)).to(_device(scorer))


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
        "video": torch.rand(batch_size, in_channels, grid.t * st, grid.h * sh, grid.w * sw, generator=gen),
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
    return torch.rand(shape, generator=_generator(4)).to(_device(backbone))


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
    from lvmae.components.data.manifest import Manifest  # pylint: disable=import-outside-toplevel
    dataset = _resolve(dataset, "dataset")
    _contract(dataset, "dataset")
    with _calling(dataset, "prepare()"):
        manifest = dataset.prepare()
    if not isinstance(manifest, Manifest):
        raise ContractError(dataset, f"prepare() must return a Manifest, got {type(manifest).__name__}")
    if not manifest.splits:
        raise ContractError(dataset, "the manifest has no splits")


CHECKS: dict[str, Callable[..., None]] = {
    "masking.encoder": check_encoder_masking,
    "masking.decoder": check_decoder_masking,
    "scorer": check_scorer,
    "target": check_target,
    "quantizer": check_quantizer,
    "tokenizer": check_tokenizer,
    "backbone": check_backbone,
    "topk": check_topk,
    "dataset": check_dataset,
    "head": check_head,
    "decoder": check_decoder,
}
#: Kinds that gin binds as factories (no parentheses) and a model calls with its own sizes:
#: ``check_component`` hands their factory to the check, which builds it.
FACTORY_KINDS = ("head", "decoder")


def check_component(name: str, **kwargs: Any) -> None:
    """Runs the kit's check for a registered component's kind, building it by name with
    ``kwargs`` (gin bindings apply to the others)."""
    entry = registry.get(name)
    if entry.kind not in CHECKS:
        raise ValueError(f"the kit has no check for kind {entry.kind!r}; kinds: {', '.join(CHECKS)}")
    if entry.kind in FACTORY_KINDS:
        CHECKS[entry.kind](functools.partial(entry.obj, **kwargs))
    else:
        CHECKS[entry.kind](entry.obj(**kwargs))


# ---------------------------------------------------------------------------------------------
# preflight

def _preflight_mae(model: nn.Module, batch_size: int) -> list[str]:
    encoder = model.encoder
    grid, tubelet = encoder.grid, tuple(encoder.tubelet)
    device = _device(model)
    channels = model.target.channels(encoder.in_channels, tubelet)
    batch = _dummy_batch(grid, tubelet, batch_size, encoder.in_channels, channels, device)
    enc_masking, dec_masking = copy.deepcopy(model.encoder_masking), copy.deepcopy(model.decoder_masking)
    checked = [registry.describe(model.encoder_masking), registry.describe(model.decoder_masking)]
    keep = _encoder_plan(enc_masking, grid, batch_size, _generator(0, device))
    scores = None
    if dec_masking.needs_scores:
        scores = batch["scores"]
        if model.scorer is not None and model.score_source != "batch":
            scorer = copy.deepcopy(model.scorer)
            scores = _run_scorer(scorer, batch["video"], grid)
            checked.append(registry.describe(model.scorer))
    targets = _decoder_plan(dec_masking, grid, keep, _generator(1, device), scores)
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
        _encoder_plan(copy.deepcopy(model.token_dropper), encoder.grid, batch_size, _generator(0, video.device))
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
            selection = selector.select_on_grid(standardize_per_clip(scores, first=1), k,
                                                keep_first_frame=True, generator=_generator(2, video.device))
        _tensor(selector, "selection", selection, tuple(scores.shape), floating=True)
        if not torch.equal(selection.sum(dim=(1, 2, 3)), torch.full_like(selection[:, 0, 0, 0], k + grid.cells)):
            raise ContractError(selector, f"the selection must keep latent frame 0 and exactly k={k} other tokens")
        checked.append(registry.describe(model.topk))
    return checked


def preflight_components(*components: Any, batch_size: int = 2,
                         clip: tuple[int, int, int] | None = None) -> list[str]:
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
                checked += _preflight_mae(component, batch_size)
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


__all__ = [
    "CHECKS", "DEFAULT_BATCH", "DEFAULT_GRID", "FACTORY_KINDS", "PREFLIGHT_TOKENS", "check_backbone",
    "check_component", "check_dataset", "check_decoder", "check_decoder_masking", "check_encoder_masking",
    "check_head", "check_quantizer", "check_scorer", "check_target", "check_tokenizer", "check_topk",
    "preflight_components",
]

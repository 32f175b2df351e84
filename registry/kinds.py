"""The kinds of component lvmae knows, and the contract each kind checks at registration.

A kind is a dotted namespace (``masking.encoder``); a component's registry name and its gin
name are ``<kind>.<name>`` (``masking.encoder.tube``). A kind may declare a base class that
every component of the kind must subclass (classes) or a plain callable (factories), checked
once, when the component registers — not when a run has already started.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Kind:
    """One namespace of components.

    Attributes:
      name: dotted kind name, e.g. ``masking.decoder``.
      description: one line shown by ``python run.py list``.
      contract: returns an error message when ``obj`` does not satisfy the kind, else None.
    """

    name: str
    description: str
    contract: Callable[[object], str | None] | None = None


_KINDS: dict[str, Kind] = {}


def define_kind(name: str, description: str,
                contract: Callable[[object], str | None] | None = None) -> Kind:
    """Declares a kind; re-declaring the same name with another contract is an error."""
    if not name or any(not part.isidentifier() for part in name.split(".")):
        raise ValueError(f"kind name {name!r} must be dotted snake_case identifiers")
    existing = _KINDS.get(name)
    if existing is not None:
        if existing.contract is contract:
            return existing
        raise ValueError(f"kind {name!r} is already defined")
    kind = Kind(name, description, contract)
    _KINDS[name] = kind
    return kind


def set_contract(name: str, contract: Callable[[object], str | None]) -> None:
    """Attaches a contract to an existing kind (the base classes live in components/)."""
    _KINDS[name] = dataclasses.replace(get_kind(name), contract=contract)


def subclass_of(base: type, **methods: tuple[str, ...]) -> Callable[[object], str | None]:
    """Contract: a class subclassing ``base`` that implements every abstract method and whose
    ``methods`` accept the positional arguments the framework passes (``name=("grid", ...)``,
    without ``self``), or a callable factory (its product is checked by the contract kit).

    Checked when the component registers, i.e. when its module is imported or a gin file's
    ``import`` line runs — before any run is created."""

    def check(obj: object) -> str | None:
        if not isinstance(obj, type):
            return None if callable(obj) else "must be a class or a callable factory"
        if not issubclass(obj, base):
            return f"must subclass {base.__module__}.{base.__qualname__}"
        missing = sorted(getattr(obj, "__abstractmethods__", ()))
        if missing:
            return f"does not implement {', '.join(m + '()' for m in missing)} of {base.__qualname__}"
        for name, arguments in methods.items():
            problem = signature_problem(getattr(obj, name, None), arguments)
            if problem:
                return f"{name}() {problem}; {base.__qualname__}.{name} is called as {name}({', '.join(arguments)})"
        return None

    return check


def has_methods(**methods: tuple[str, ...]) -> Callable[[object], str | None]:
    """Contract for kinds without a base class: a class whose ``methods`` accept the
    positional arguments the framework passes (a factory is checked when built)."""

    def check(obj: object) -> str | None:
        if not isinstance(obj, type):
            return None if callable(obj) else "must be a class or a callable factory"
        for name, arguments in methods.items():
            problem = signature_problem(getattr(obj, name, None), arguments)
            if problem:
                return f"{name}() {problem}; it is called as {name}({', '.join(arguments)})"
        return None

    return check


def signature_problem(method: object, arguments: tuple[str, ...]) -> str | None:
    """Why ``method`` (an unbound method) cannot be called with ``self`` and ``arguments``
    positionally, or None when it can."""
    if not callable(method):
        return "is missing"
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):
        return None                            # a builtin: nothing to inspect
    try:
        signature.bind(None, *arguments)
    except TypeError as error:
        return f"has the signature {signature} ({error})"
    return None


def get_kind(name: str) -> Kind:
    if name not in _KINDS:
        raise KeyError(f"unknown kind {name!r}; kinds: {', '.join(sorted(_KINDS))}")
    return _KINDS[name]


def all_kinds() -> dict[str, Kind]:
    return dict(sorted(_KINDS.items()))


def split_full_name(full_name: str) -> tuple[str, str]:
    """``masking.decoder.random`` → (``masking.decoder``, ``random``), longest kind first."""
    parts = full_name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        kind = ".".join(parts[:cut])
        if kind in _KINDS:
            return kind, ".".join(parts[cut:])
    raise KeyError(full_name)


for _name, _desc in [
    ("backbone", "video encoders (ViT with tubelet embedding)"),
    ("decoder", "MAE decoders run on kept tokens plus [MASK] queries"),
    ("head", "pooling + classification heads for fine-tuning"),
    ("model", "assembled trainable models (MAE, classifier)"),
    ("tokenizer", "video tokenizers: latents and token ids on the token grid"),
    ("quantizer", "latent quantizers (FSQ, LFQ)"),
    ("scorer", "per-token importance scores on the token grid"),
    ("topk", "differentiable top-k selectors"),
    ("masking.encoder", "which tokens the encoder sees (enc_keep_idx)"),
    ("masking.decoder", "which tokens the decoder reconstructs (dec_target_idx)"),
    ("target", "reconstruction targets and their per-token losses"),
    ("dataset", "datasets: shard manifests and synthetic generators"),
    ("clips", "in-process procedural clip generators (tokenizer training and tests, no shards)"),
    ("video_decoder", "decode chosen frames of an encoded clip (the reader's decoder)"),
]:
    define_kind(_name, _desc)
set_contract("clips", has_methods(batch=("batch_size", "generator")))

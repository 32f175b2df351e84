"""The registry: one decorator that registers a component *and* makes it gin-configurable.

    @register("masking.encoder.tube")
    class TubeMasking(EncoderMasking): ...

registers ``tube`` under the kind ``masking.encoder`` and exposes it to gin under the same
string, so a gin file says ``pretrain.encoder_masking = @masking.encoder.tube()`` and
``masking.encoder.tube.keep_ratio = 0.1``. Duplicate names raise (fvcore/big_vision
behaviour, not timm's warning); unknown names raise with the closest matches.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import gin
import gin.config as gin_config

from lvmae.registry import kinds as _kinds

T = TypeVar("T")


class RegistryError(LookupError):
    """A component name that is duplicated, unknown, or breaks its kind's contract."""


class ContractError(ValueError):
    """A built component broke its kind's contract (bad parameter, output or signature).

    The message starts with the component's registered name and module (``describe``)."""

    def __init__(self, component: Any, problem: str):
        self.component = describe(component)
        super().__init__(f"{self.component}: {problem}")


@dataclasses.dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    obj: Any          # the gin-wrapped class or function
    module: str       # where it was defined (for `list` and error messages)

    @property
    def full_name(self) -> str:
        return f"{self.kind}.{self.name}"

    def parameters(self) -> dict[str, str]:
        """Configurable parameters and their defaults, as shown by ``run.py list``."""
        target = self.obj.__init__ if isinstance(self.obj, type) else self.obj
        try:
            signature = inspect.signature(target)
        except (TypeError, ValueError):
            return {}
        shown = {}
        for param in signature.parameters.values():
            if param.name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            shown[param.name] = "<required>" if param.default is param.empty else repr(param.default)
        return shown


_ENTRIES: dict[str, dict[str, Entry]] = {}
_BY_CLASS: dict[type, Entry] = {}     # registered classes → their entry (names in messages)


def entry_of(component: Any) -> Entry | None:
    """The entry a component (instance or class) was registered as; a subclass that never
    registered reports its nearest registered base class. None when nothing matches."""
    cls = component if isinstance(component, type) else type(component)
    for klass in getattr(cls, "__mro__", (cls,)):
        if klass in _BY_CLASS:
            return _BY_CLASS[klass]
    return None


def describe(component: Any) -> str:
    """``'masking.decoder.foo' (my_pkg.foo.Foo)`` — how errors name a component (an instance,
    a class or a registered factory): its registered name and where it is defined."""
    if inspect.isfunction(component):
        entry = next((e for e in entries() if e.obj is component), None)
        where = f"{component.__module__}.{component.__qualname__}"
    else:
        cls = component if isinstance(component, type) else type(component)
        entry = entry_of(cls)
        where = f"{cls.__module__}.{cls.__qualname__}"
        if entry is not None and entry.obj is not cls:
            return f"{where} (a subclass of {entry.full_name!r})"
    if entry is None:
        return f"unregistered component {where}"
    return f"{entry.full_name!r} ({where})"


def register(full_name: str, *, denylist: tuple[str, ...] = ()) -> Callable[[T], T]:
    """Registers a class or factory as ``<kind>.<name>`` in the registry and in gin.

    Args:
      full_name: e.g. ``masking.decoder.random``; the kind prefix must be a defined kind.
      denylist: parameters gin must not bind (e.g. tensors passed at call time).
    """
    try:
        kind, name = _kinds.split_full_name(full_name)
    except KeyError:
        raise RegistryError(
            f"cannot register {full_name!r}: it must start with a kind "
            f"({', '.join(_kinds.all_kinds())})") from None
    if not all(part.isidentifier() and part == part.lower() for part in name.split(".")):
        raise RegistryError(f"cannot register {full_name!r}: names are snake_case")

    def decorate(obj: T) -> T:
        if name in _ENTRIES.get(kind, {}):
            previous = _ENTRIES[kind][name]
            raise RegistryError(
                f"duplicate component {full_name!r}: already registered by {previous.module}")
        contract = _kinds.get_kind(kind).contract
        problem = (contract(obj) if contract else None) or _swallows_bindings(obj)
        if problem:
            raise RegistryError(f"{full_name!r} ({getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}) {problem}")
        module, _, short = full_name.rpartition(".")
        wrapped = gin.configurable(short, module=module, denylist=list(denylist))(obj)
        entry = Entry(kind, name, wrapped, getattr(obj, "__module__", "?"))
        _ENTRIES.setdefault(kind, {})[name] = entry
        if isinstance(wrapped, type):
            _BY_CLASS[wrapped] = entry
        return wrapped

    return decorate


# Where a constructor inherited from these packages is not the component's own (``object``,
# ``nn.Module`` take ``*args, **kwargs`` and bind nothing).
_FOREIGN_INIT_PACKAGES = ("builtins", "torch")


def _swallows_bindings(obj: Any) -> str | None:
    """Why a component's own ``__init__`` (or a factory) must not take ``**kwargs``: gin binds
    parameters by name, so a misspelt binding (``budgte = 0.5``) would land there silently and
    the run would train with the default. None when it names every parameter."""
    target, where = obj, "its signature"
    if isinstance(obj, type):
        owner = next((klass for klass in obj.__mro__ if "__init__" in vars(klass)), object)
        if owner.__module__.split(".")[0] in _FOREIGN_INIT_PACKAGES:
            return None
        target, where = vars(owner)["__init__"], "__init__"
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    swallowed = [p.name for p in parameters if p.kind is p.VAR_KEYWORD]
    if not swallowed:
        return None
    return (f"{where} takes **{swallowed[0]}: gin would pass any binding to it, a misspelt one "
            f"(e.g. budgte = 0.5) too, and the component would run with its default. Name every "
            f"parameter gin may bind")


def unregister(full_name: str) -> None:
    """Removes a component from the registry and from gin (tests and plugin reloads)."""
    kind, name = _kinds.split_full_name(full_name)
    entry = _ENTRIES.get(kind, {}).pop(name, None)
    if entry is not None and isinstance(entry.obj, type):
        _BY_CLASS.pop(entry.obj, None)
    if full_name in gin_config._REGISTRY:  # pylint: disable=protected-access
        gin_config._REGISTRY.pop(full_name)  # pylint: disable=protected-access


@contextlib.contextmanager
def temporary() -> Iterator[None]:
    """Everything registered inside the block is unregistered when it exits (tests)."""
    before = {kind: set(entries) for kind, entries in _ENTRIES.items()}
    try:
        yield
    finally:
        for kind, entries in list(_ENTRIES.items()):
            for name in list(entries):
                if name not in before.get(kind, set()):
                    unregister(f"{kind}.{name}")


def suggest(name: str, candidates: list[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)


def names(kind: str) -> list[str]:
    """Registered names of a kind (discovery must have run; see ``registry.discover``)."""
    _kinds.get_kind(kind)
    return sorted(_ENTRIES.get(kind, {}))


def entries(kind: str | None = None) -> list[Entry]:
    kinds = [kind] if kind else list(_kinds.all_kinds())
    return [e for k in kinds for _, e in sorted(_ENTRIES.get(k, {}).items())]


def unknown_name_message(full_name: str) -> str:
    """The message for a name nobody registered: closest matches and the kind's names."""
    all_names = [e.full_name for e in entries()]
    lines = [f"unknown component {full_name!r}."]
    close = suggest(full_name, all_names)
    if close:
        lines.append(f"Did you mean: {', '.join(close)}?")
    try:
        kind, _ = _kinds.split_full_name(full_name)
        lines.append(f"Registered {kind} components: {', '.join(names(kind)) or '(none)'}")
    except KeyError:
        lines.append(f"Kinds: {', '.join(_kinds.all_kinds())}")
    from lvmae.registry.discovery import failed_plugins  # pylint: disable=import-outside-toplevel
    lines += [f"Note: {failure}" for failure in failed_plugins().values()]
    return "\n".join(lines)


def get(full_name: str) -> Entry:
    """Looks a component up by ``<kind>.<name>``; unknown names raise with suggestions."""
    try:
        kind, name = _kinds.split_full_name(full_name)
        return _ENTRIES[kind][name]
    except KeyError:
        raise RegistryError(unknown_name_message(full_name)) from None


def build(full_name: str, **kwargs: Any) -> Any:
    """Builds a component; gin bindings apply to parameters not passed here. A required
    parameter that neither gives raises TypeError naming the registered name and how to bind it."""
    entry = get(full_name)
    try:
        return entry.obj(**kwargs)
    except TypeError as error:
        missing = _unbound_required(entry, kwargs)
        if not missing:
            raise
        raise TypeError(f"{describe(entry.obj)} needs {', '.join(missing)}: nothing binds "
                        f"{'it' if len(missing) == 1 else 'them'} — add {entry.full_name}.{missing[0]} = ... to a "
                        f"gin file (or -b), or pass {missing[0]}=... ({str(error).splitlines()[0]})") from None


def _unbound_required(entry: Entry, given: dict[str, Any]) -> list[str]:
    """Required parameters of ``entry`` that neither ``given`` nor a gin binding supplies."""
    bound = gin_config._CONFIG.get(("", entry.full_name), {})  # pylint: disable=protected-access
    required = [name for name, default in entry.parameters().items() if default == "<required>"]
    return [name for name in required if name not in given and name not in bound]

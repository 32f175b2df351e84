"""gin ↔ Sacred: parse gin files and bindings with clear errors, and turn the resolved
bindings into a nested plain dict (gin selectors contain dots, which MongoDB keys cannot).
"""
from __future__ import annotations

import importlib
import importlib.util  # gin's `include` handling uses importlib.util without importing it
import os
import re
from typing import Any

import gin
import gin.config as gin_config

from lvmae import registry
from lvmae.experiments.engine import gin_helpers


def gin_applies(function):
    """Marks an experiment function as gin-configurable under ``experiments.<name>``."""
    return gin.configurable(function.__name__, module="experiments")(function)


class GinConfigError(ValueError):
    """A gin file, binding or component name that cannot be used; the message names it."""


def _configurable_names() -> list[str]:
    return [selector for selector, _ in gin_config._REGISTRY.items()]  # pylint: disable=protected-access


def _explain(error: Exception, source: str) -> str:
    """Rewrites gin's message, adding the closest names for unknown configurables."""
    text = str(error)
    unknown = re.search(r"No configurable matching (?:reference )?'@?([\w.]+)", text)
    if unknown:
        name = unknown.group(1)
        kinds = registry.all_kinds()
        if any(name.startswith(kind + ".") for kind in kinds):
            hint = registry.unknown_name_message(name)
        else:
            close = registry.suggest(name, _configurable_names())
            hint = f"unknown configurable {name!r}." + (f"\nDid you mean: {', '.join(close)}?" if close else "")
        return f"{source}: {hint}\n(gin said: {text.splitlines()[0]})"
    param = re.search(r"Configurable '([\w.]+)' doesn't have a parameter named '(\w+)'", text)
    if param:
        configurable = gin_config._REGISTRY.get_match(param.group(1))  # pylint: disable=protected-access
        allowed = []
        if configurable is not None:
            allowed = list(registry.Entry("", "", configurable.wrapped, "").parameters())
        close = registry.suggest(param.group(2), allowed)
        return (f"{source}: {param.group(1)!r} has no parameter {param.group(2)!r}."
                + (f" Did you mean: {', '.join(close)}?" if close else "")
                + (f"\nIts parameters: {', '.join(allowed)}" if allowed else ""))
    return f"{source}: {text}"


# The folder that holds ``gin/``: the repository, or the installed ``lvmae`` package. gin
# ``include 'gin/...'`` lines and ``-g gin/...`` resolve against it from any working folder.
GIN_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def resolve_gin_file(path: str) -> str:
    """``path`` as given if it exists, else relative to :data:`GIN_ROOT` (the gin files lvmae
    ships); raises GinConfigError naming the path and where it was looked for."""
    if os.path.isfile(path):
        return path
    shipped = os.path.join(GIN_ROOT, path)
    if not os.path.isabs(path) and os.path.isfile(shipped):
        return shipped
    raise GinConfigError(f"gin file not found: {path!r} (from gin_files / -g; looked in "
                         f"{os.getcwd()!r} and in lvmae's own {GIN_ROOT!r})")


def _register_experiment_functions() -> None:
    """Imports the command modules, whose gin functions (``pretrain_loop``, ``finetune_loop``,
    ...) every experiment gin file binds. By name: commands import the engine, not back."""
    importlib.import_module("lvmae.experiments.commands").load_all()


def parse(gin_files: list[str], gin_bindings: list[str]) -> None:
    """Clears gin and applies ``gin_files`` then ``gin_bindings``; raises GinConfigError."""
    registry.discover()
    _register_experiment_functions()
    gin.clear_config()
    if GIN_ROOT not in gin_config._LOCATION_PREFIXES:  # pylint: disable=protected-access
        gin.add_config_file_search_path(GIN_ROOT)
    gin_files = [resolve_gin_file(path) for path in gin_files]
    for path in gin_files:
        try:
            gin.parse_config_file(path)
        except Exception as error:  # gin raises ValueError, SyntaxError, ImportError, ...
            raise GinConfigError(_explain(error, f"in gin file {path!r}")) from error
    for binding in gin_bindings:
        try:
            gin.parse_config(binding)
        except Exception as error:
            raise GinConfigError(_explain(error, f"in gin binding {binding!r} (from gin_bindings / -b)")) from error


# Macros derived by these helpers are recorded with their value (``outputs/lvmae_b_128f``), not
# their gin spelling (``@workdir/path.join()``): they are pure functions of other bindings.
_DERIVED = gin_helpers.SELECTORS


def _plain(value: Any) -> Any:
    if (isinstance(value, gin_config.ConfigurableReference) and value.evaluate
            and value.configurable.selector in _DERIVED):
        try:
            value = value.scoped_configurable_fn()
        except Exception:  # noqa: BLE001  (a broken derivation is reported by the command itself)
            return str(value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)   # configurable references and macros keep their gin spelling


def _insert(tree: dict, path: list[str], value: Any, full: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise GinConfigError(f"gin binding {full!r} collides with a parameter of the same name")
        node = child
    node[path[-1]] = value


def resolved_bindings() -> dict:
    """The current gin bindings as ``{"bindings": {kind: {name: {param: value}}}, "macros": …}``.

    A selector ``masking.decoder.random`` with parameter ``budget`` becomes
    ``bindings.masking.decoder.random.budget``; scoped bindings go under ``scopes.<scope>``.
    """
    bindings: dict = {}
    macros: dict = {}
    for (scope, selector), params in gin_config._CONFIG.items():  # pylint: disable=protected-access
        for param, value in params.items():
            if selector == "gin.macro":
                macros[scope.replace(".", "_")] = _plain(value)
                continue
            path = selector.split(".") + [param]
            if scope:
                path = ["scopes", *scope.replace(".", "/").split("/")] + path
            _insert(bindings, path, _plain(value), f"{scope + '/' if scope else ''}{selector}.{param}")
    return {"bindings": bindings, "macros": macros}


def operative_config() -> str:
    """gin's operative config with *full* selectors (``masking.encoder.tube.keep_ratio``, not
    gin's shortest unambiguous ``tube.keep_ratio``), so the file still parses unambiguously
    after more components are registered."""
    registry_map = gin_config._REGISTRY  # pylint: disable=protected-access
    shortest = registry_map.minimal_selector
    registry_map.minimal_selector = lambda selector: selector
    try:
        return gin.operative_config_str()
    finally:
        registry_map.minimal_selector = shortest

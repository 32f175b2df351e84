"""gin ↔ Sacred: parse gin files and bindings with clear errors, and turn the resolved
bindings into a nested plain dict (gin selectors contain dots, which MongoDB keys cannot).
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util  # gin's `include` handling uses importlib.util without importing it
import io
import os
import re
import tokenize
from typing import Any

import gin
import gin.config as gin_config
from gin import resource_reader

from lvmae import registry
from lvmae.experiments.engine import gin_helpers


def gin_applies(function):
    """Marks an experiment function as gin-configurable under ``experiments.<name>``."""
    return gin.configurable(function.__name__, module="experiments")(function)


class GinConfigError(ValueError):
    """A gin file, binding or component name that cannot be used; the message names it."""


def _configurable_names() -> list[str]:
    return [selector for selector, _ in gin_config._REGISTRY.items()]  # pylint: disable=protected-access


def _explain(error: Exception, source: str, top_file: str | None = None, binding: str | None = None) -> str:
    """Rewrites gin's message: the closest names for unknown configurables, the real place of
    a syntax error with its line, the nearest shipped file for a missing include."""
    syntax = _syntax(error, top_file, binding)
    if syntax:
        return f"{source}: {syntax}"
    text = str(error)
    missing = re.match(r"Unable to open file: (.+?)\. Searched config paths", text)
    if missing:
        return f"{source}: {_not_found(missing.group(1), 'an include line')}"
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


def missing_arguments(error: BaseException) -> str | None:
    """For a TypeError gin raised because a configurable's required parameters got no value,
    the component's registered name, the parameters and the binding to add; None otherwise."""
    text = str(error)
    missing = re.search(r"No values supplied by Gin or caller for arguments: \[(.*?)\]", text)
    called = re.search(r"In call to configurable '[\w.]+' \(<(?:class|function) '([\w.<>]+)'", text)
    if not isinstance(error, TypeError) or missing is None or called is None:
        return None
    names = [name.strip(" '\"") for name in missing.group(1).split(",") if name.strip()]
    entry = next((e for e in registry.entries()
                  if f"{getattr(e.obj, '__module__', '')}.{getattr(e.obj, '__qualname__', '')}" == called.group(1)), None)
    if entry is None or not names:
        return None
    return (f"{registry.describe(entry.obj)} needs {', '.join(names)}: nothing binds "
            f"{'it' if len(names) == 1 else 'them'} — add {entry.full_name}.{names[0]} = ... to a gin file (or -b)")


# The folder that holds ``gin/``: the repository, or the installed ``lvmae`` package. gin
# ``include 'gin/...'`` lines and ``-g gin/...`` resolve against it from any working folder.
GIN_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _package_file_exists(config_path: str) -> bool:
    """gin's package-resource existence check (``pkg/sub/file.gin`` inside an importable
    package) without its logging: gin logs ``ERROR Path not found`` for every path that is no
    package, i.e. for each ``include 'gin/...'`` tried in the working folder before
    :data:`GIN_ROOT`, although the include then resolves."""
    try:
        return os.path.isfile(resource_reader._parse_config_path(config_path))  # pylint: disable=protected-access
    except (ImportError, ValueError):
        return False


def _quiet_package_reader() -> None:
    readers = gin_config._FILE_READERS  # pylint: disable=protected-access
    for index, (reader, exists) in enumerate(readers):
        if exists is resource_reader.system_path_file_exists:
            readers[index] = (reader, _package_file_exists)


_quiet_package_reader()


def shipped_gin_files() -> list[str]:
    """Every gin file lvmae ships, as ``gin/...`` paths relative to :data:`GIN_ROOT`."""
    found = []
    for folder, _, names in os.walk(os.path.join(GIN_ROOT, "gin")):
        found += [os.path.relpath(os.path.join(folder, name), GIN_ROOT) for name in names if name.endswith(".gin")]
    return sorted(found)


def _not_found(path: str, origin: str) -> str:
    """``gin file not found`` naming where it was looked for (each folder once) and the
    nearest shipped file."""
    if os.path.isabs(path):
        places = f"{path!r} does not exist"
    else:
        folders = dict.fromkeys(os.path.realpath(folder) for folder in (os.getcwd(), GIN_ROOT, *registry.plugin_folders()))
        places = "looked in " + ", ".join(repr(folder) for folder in folders)
    close = difflib.get_close_matches(path.removeprefix("./"), shipped_gin_files(), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; no shipped file is close (they are under {GIN_ROOT}/gin)"
    return f"gin file not found: {path!r} ({origin}; {places}){hint}"


def resolve_gin_file(path: str) -> str:
    """``path`` as given if it exists, else relative to :data:`GIN_ROOT` (the gin files lvmae
    ships), else relative to an installed plugin package's ``gin`` folder or the package itself
    (``registry.plugin_folders``: a package ships ``my_plugins/gin/masking.gin``, users pass
    ``-g masking.gin``); raises GinConfigError naming the path, where it was looked for and the
    nearest shipped file."""
    if os.path.isfile(path):
        return path
    if not os.path.isabs(path):
        for folder in (GIN_ROOT, *registry.plugin_folders()):     # lvmae's gin files, then plugin packages'
            if os.path.isfile(os.path.join(folder, path)):
                return os.path.join(folder, path)
    raise GinConfigError(_not_found(path, "from gin_files / -g"))


def _open_brackets(text: str, stop: tuple[int, int]) -> list[tuple[str, int, int]]:
    """Brackets still open at ``stop`` (line, column; 1-based line, 0-based column) in gin
    ``text``, innermost last, as (bracket, line, column). Strings and comments are skipped
    by Python's tokenizer, which gin's parser uses too."""
    stack: list[tuple[str, int, int]] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.start >= stop:
                break
            if token.type == tokenize.OP and token.string in "([{":
                stack.append((token.string, *token.start))
            elif token.type == tokenize.OP and token.string in ")]}" and stack:
                stack.pop()
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return stack


def _quote(text: str, line: int, column: int) -> str:
    lines = text.splitlines()
    shown = lines[line - 1] if 0 < line <= len(lines) else ""
    return f"\n    {shown}\n    {' ' * column}^"


def _read_gin(path: str) -> str | None:
    for candidate in (path, os.path.join(GIN_ROOT, path)):
        try:
            with open(candidate, encoding="utf-8") as handle:
                return handle.read()
        except OSError:
            continue
    return None


def _name(path: str) -> str:
    return path if path == "the binding" else repr(path)


def _original(error: BaseException) -> BaseException:
    """gin re-raises an error inside an include as a proxy without ``args`` (its message gains
    the include's place); the original is the proxy's ``__context__``."""
    while not error.args and error.__context__ is not None:
        error = error.__context__
    return error


def _syntax(error: Exception, top_file: str | None, binding: str | None = None) -> str | None:
    """A gin syntax error at its real place, the line quoted: an unclosed bracket where it
    was opened (gin reports the line after it, where the parse stopped), anything else where
    gin stopped. None when ``error`` is no syntax error."""
    if isinstance(error, tokenize.TokenError):        # the file ended inside brackets
        includes = re.findall(r"\binclude\s+['\"]([^'\"]+)['\"]", str(error))
        path = includes[0] if includes else top_file     # the innermost include comes first
        original = _original(error)
        message = str(original.args[0]) if original.args else "unexpected end of file"
        stop = (10**9, 0)
    elif isinstance(error, SyntaxError) and error.lineno:
        path, message, stop = error.filename, error.msg, (error.lineno, max(error.offset or 0, 0))
    else:
        return None
    text = binding if binding is not None else _read_gin(path) if path else None
    if text is None:
        return None
    if binding is not None:
        path = "the binding"
    unclosed = _open_brackets(text, stop)
    if unclosed and (unclosed[-1][1] < stop[0]):
        bracket, line, column = unclosed[-1]
        where = (f"the end of {'the binding' if binding is not None else 'the file'}" if stop[0] == 10**9
                 else f"line {stop[0]}")
        return (f"gin syntax error in {_name(path)}, line {line}, column {column + 1}: {bracket!r} is never "
                f"closed (gin stopped at {where}: {message}){_quote(text, line, column)}")
    if stop[0] == 10**9:
        return None
    return (f"gin syntax error in {_name(path)}, line {stop[0]}, column {stop[1] + 1}: {message}"
            f"{_quote(text, *stop)}")


def _register_experiment_functions() -> None:
    """Imports the command modules, whose gin functions (``pretrain_loop``, ``finetune_loop``,
    ...) every experiment gin file binds. By name: commands import the engine, not back."""
    importlib.import_module("lvmae.experiments.commands").load_all()


def parse(gin_files: list[str], gin_bindings: list[str]) -> None:
    """Clears gin and applies ``gin_files`` then ``gin_bindings``; raises GinConfigError."""
    registry.discover()
    _register_experiment_functions()
    gin.clear_config()
    for folder in (GIN_ROOT, *registry.plugin_folders()):     # `include` lines resolve there too
        if folder not in gin_config._LOCATION_PREFIXES:  # pylint: disable=protected-access
            gin.add_config_file_search_path(folder)
    gin_files = [resolve_gin_file(path) for path in gin_files]
    for path in gin_files:
        try:
            gin.parse_config_file(path)
        except Exception as error:  # gin raises ValueError, SyntaxError, ImportError, ...
            raise GinConfigError(_explain(error, f"in gin file {path!r}", path)) from error
    for binding in gin_bindings:
        try:
            gin.parse_config(binding)
        except Exception as error:
            raise GinConfigError(_explain(error, f"in gin binding {binding!r} (from gin_bindings / -b)",
                                          binding=binding)) from error


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

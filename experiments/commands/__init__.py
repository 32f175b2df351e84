"""The commands users type (``python run.py COMMAND``): the one Sacred experiment
(``experiment.py``) and one module per command, each registering itself with ``@ex.command``.
Commands build on the training engine (``experiments/engine``) and on tracking
(``experiments/tracking``); nothing below imports from here.

Command modules load lazily: ``run.py`` imports only the module of the command it runs
(``command_index`` finds it by reading the sources, without importing them), so a command or
an error answers without importing every other command's dependencies. ``ex`` (this
package's attribute) imports every command module first.
"""
from __future__ import annotations

import ast
import functools
import importlib
import os
from dataclasses import dataclass

_FOLDER = os.path.dirname(os.path.abspath(__file__))
_NOT_COMMANDS = {"__init__", "experiment", "cli"}


@dataclass(frozen=True)
class CommandInfo:
    name: str
    module: str        # the module that registers it (``lvmae.experiments.commands.<file>``)
    summary: str       # the first line of its docstring


def _is_command_decorator(node: ast.expr) -> bool:
    """``@ex.command`` or ``@ex.command(...)``."""
    target = node.func if isinstance(node, ast.Call) else node
    return isinstance(target, ast.Attribute) and target.attr == "command"


@functools.cache
def command_index() -> dict[str, CommandInfo]:
    """Every ``@ex.command`` of this package, read from the sources (nothing is imported)."""
    index = {}
    for filename in sorted(os.listdir(_FOLDER)):
        stem, extension = os.path.splitext(filename)
        if extension != ".py" or stem in _NOT_COMMANDS:
            continue
        with open(os.path.join(_FOLDER, filename), encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and any(map(_is_command_decorator, node.decorator_list)):
                summary = (ast.get_docstring(node) or "").strip().splitlines()
                index[node.name] = CommandInfo(node.name, f"{__name__}.{stem}", summary[0] if summary else "")
    return index


def load(command: str | None):
    """The experiment with ``command`` registered (only its module imported); every command
    module when ``command`` is not one of this package's (Sacred then names what is wrong)."""
    info = command_index().get(command) if command else None
    if info is None:
        return load_all()
    importlib.import_module(info.module)
    from lvmae.experiments.commands.experiment import ex
    return ex


def load_all():
    for info in command_index().values():
        importlib.import_module(info.module)
    from lvmae.experiments.commands.experiment import ex
    return ex


def __getattr__(name: str):
    if name == "ex":
        return load_all()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CommandInfo", "command_index", "ex", "load", "load_all"]

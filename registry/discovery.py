"""Finding components: everything under ``components/`` and third-party plugins.

mmengine-style auto-import makes "unknown component because its module was never
imported" impossible for our own components. Third-party packages declare

    [project.entry-points."lvmae.plugins"]
    my_masking = "my_pkg.my_masking"

and are imported here too; a gin file can also ``import my_pkg.my_masking`` directly.

A declared plugin that fails to import does not stop lvmae: it is named in one paragraph on
stderr (once per process) and in the message of any component name nobody registered (the
components it would have registered), so only commands that use it fail.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import pkgutil
import sys
import warnings

ENTRY_POINT_GROUP = "lvmae.plugins"
# The folder of a plugin package that holds its gin files (beside the folder itself).
PLUGIN_GIN_FOLDER = "gin"
_DONE = False
_FAILED: dict[str, str] = {}          # entry point name → why it failed to import (one paragraph)


class PluginImportError(ImportError):
    """A plugin declared through the entry-point group failed to import."""


def failed_plugins() -> dict[str, str]:
    """Entry points of ``lvmae.plugins`` that failed to import: name → one-paragraph reason."""
    return dict(_FAILED)


def _failure(entry_point, group: str, error: BaseException) -> str:
    distribution = getattr(getattr(entry_point, "dist", None), "name", None)
    reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
    uninstall = f"pip uninstall {distribution}" if distribution else "uninstall it"
    return (f"plugin {entry_point.name!r} = {entry_point.value!r} (entry-point group {group!r}"
            + (f", distribution {distribution!r}" if distribution else "") + f") failed to import: "
            f"{type(error).__name__}: {reason}. Its components are not registered; commands that do not "
            f"use them run as usual. Fix the plugin or {uninstall}")


def plugin_folders(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """The ``gin`` subfolders of the installed plugin packages (each declared module's top-level
    package) and the package folders, where ``-g NAME`` also looks; found without importing them."""
    folders = []
    for entry_point in importlib.metadata.entry_points(group=group):
        top = entry_point.value.split(":")[0].split(".")[0].strip()
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        for root in spec.submodule_search_locations or []:     # a package (a lone module ships no gin files)
            folders += [os.path.join(root, PLUGIN_GIN_FOLDER), root]
    return [folder for folder in dict.fromkeys(folders) if os.path.isdir(folder)]


def import_components(package: str = "lvmae.components") -> list[str]:
    """Imports every module of ``package`` recursively; returns the module names."""
    root = importlib.import_module(package)
    imported = []
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        importlib.import_module(info.name)
        imported.append(info.name)
    return imported


def load_entry_points(group: str = ENTRY_POINT_GROUP, strict: bool = False) -> list[str]:
    """Imports the plugins that installed distributions declare in ``group``; returns the
    modules imported. One that fails is named on stderr (once) and in
    :func:`failed_plugins`, or, with ``strict``, raises PluginImportError."""
    loaded = []
    for entry_point in importlib.metadata.entry_points(group=group):
        try:
            entry_point.load()
        except Exception as error:  # a broken plugin names itself; the others still load
            message = _failure(entry_point, group, error)
            if strict:
                raise PluginImportError(message) from error
            if _FAILED.get(entry_point.name) != message:
                print(f"lvmae: {message}", file=sys.stderr)
            _FAILED[entry_point.name] = message
            continue
        _FAILED.pop(entry_point.name, None)
        loaded.append(entry_point.value)
    return loaded


def discover(force: bool = False) -> None:
    """Imports our components and the installed plugins (once per process)."""
    global _DONE
    if _DONE and not force:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import_components()
    load_entry_points()
    _DONE = True

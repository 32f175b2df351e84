"""Finding components: everything under ``components/`` and third-party plugins.

mmengine-style auto-import makes "unknown component because its module was never
imported" impossible for our own components. Third-party packages declare

    [project.entry-points."lvmae.plugins"]
    my_masking = "my_pkg.my_masking"

and are imported here too; a gin file can also ``import my_pkg.my_masking`` directly.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import warnings

ENTRY_POINT_GROUP = "lvmae.plugins"
_DONE = False


class PluginImportError(ImportError):
    """A plugin declared through the entry-point group failed to import."""


def import_components(package: str = "lvmae.components") -> list[str]:
    """Imports every module of ``package`` recursively; returns the module names."""
    root = importlib.import_module(package)
    imported = []
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        importlib.import_module(info.name)
        imported.append(info.name)
    return imported


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Imports the plugins that installed distributions declare in ``group``."""
    loaded = []
    for entry_point in importlib.metadata.entry_points(group=group):
        try:
            entry_point.load()
        except Exception as error:  # a broken plugin names itself
            raise PluginImportError(
                f"plugin {entry_point.name!r} = {entry_point.value!r} "
                f"(entry-point group {group!r}) failed to import: {error}") from error
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

"""``python run.py list [-g FILE]...``: every kind, component name, configurable parameter and
where each component comes from.

Components of lvmae and of installed plugin packages (entry-point group ``lvmae.plugins``)
are always listed. A plugin loaded by a gin file's ``import`` line is listed when that file
is given: ``python run.py list -g my_experiment.gin``.
"""
from __future__ import annotations

import importlib.metadata
import sys

from lvmae import registry
from lvmae.experiments import program
from lvmae.experiments.commands.experiment import ex

HEADER = ("Components by kind: name(parameter=default, ...)  [module — origin]\n"
          "Plugins loaded by a gin file's `import` line appear with that file: "
          f"{program.name()} list -g FILE")


def _entry_point_packages() -> dict[str, str]:
    """module prefix → 'package DIST (entry point NAME)' for the installed plugins."""
    found = {}
    for entry_point in importlib.metadata.entry_points(group=registry.ENTRY_POINT_GROUP):
        dist = getattr(entry_point, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else "?"
        module = entry_point.value.split(":")[0]
        found[module] = f"installed plugin package {dist_name} (entry point {entry_point.name!r})"
    return found


def origin(module: str, plugins: dict[str, str] | None = None) -> str:
    """Where a component's module comes from: lvmae itself, an installed plugin package, an
    installed distribution, or a file imported from the path (a gin ``import`` line)."""
    if module == "lvmae" or module.startswith("lvmae."):
        return "lvmae"
    plugins = _entry_point_packages() if plugins is None else plugins
    for prefix, text in plugins.items():
        if module == prefix or module.startswith(prefix + "."):
            return text
    top = module.split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top)
    if dists:
        return f"installed package {dists[0]}"
    path = getattr(sys.modules.get(module), "__file__", None)
    return f"file {path} (gin import line or PYTHONPATH)" if path else "imported module"


def component_table() -> str:
    registry.discover()
    plugins = _entry_point_packages()
    lines = [HEADER, ""]
    for kind_name, kind in registry.all_kinds().items():
        lines.append(f"{kind_name}  — {kind.description}")
        entries = registry.entries(kind_name)
        if not entries:
            lines.append("    (none registered)")
        for entry in entries:
            params = ", ".join(f"{k}={v}" for k, v in entry.parameters().items())
            lines.append(f"    {entry.full_name}({params})    [{entry.module} — {origin(entry.module, plugins)}]")
    return "\n".join(lines)


@ex.command(unobserved=True)
def list():  # pylint: disable=redefined-builtin
    """Lists every component: kind, name, parameters, origin; -g FILE adds its import-line plugins.

    Origin is lvmae, an installed plugin package (entry point ``lvmae.plugins``) or a file;
    a plugin that only a gin file's ``import`` line loads is listed with ``-g FILE``."""
    print(component_table())

"""``python run.py list``: every kind, component name and configurable parameter."""
from __future__ import annotations

from lvmae import registry
from lvmae.experiments.commands.experiment import ex


def component_table() -> str:
    registry.discover()
    lines = []
    for kind_name, kind in registry.all_kinds().items():
        lines.append(f"{kind_name}  — {kind.description}")
        entries = registry.entries(kind_name)
        if not entries:
            lines.append("    (none registered)")
        for entry in entries:
            params = ", ".join(f"{k}={v}" for k, v in entry.parameters().items())
            lines.append(f"    {entry.full_name}({params})    [{entry.module}]")
    return "\n".join(lines)


@ex.command(unobserved=True)
def list():  # pylint: disable=redefined-builtin
    """Lists every registered component kind, name and configurable parameter."""
    print(component_table())

"""lvmae registry: ``@register("kind.name")`` registers a component and makes it gin-configurable."""
from lvmae.registry.core import (ContractError, Entry, RegistryError, build, describe, entry_of, entries, get, names, register, suggest,
                           temporary, unknown_name_message, unregister)
from lvmae.registry.discovery import ENTRY_POINT_GROUP, PluginImportError, discover, load_entry_points
from lvmae.registry.kinds import Kind, all_kinds, define_kind, get_kind, set_contract, subclass_of

__all__ = [
    "ContractError", "describe", "entry_of", "Entry", "RegistryError", "build", "entries", "get", "names", "register", "suggest",
    "temporary", "unknown_name_message", "unregister", "ENTRY_POINT_GROUP", "PluginImportError",
    "discover", "load_entry_points", "Kind", "all_kinds", "define_kind", "get_kind",
    "set_contract", "subclass_of",
]

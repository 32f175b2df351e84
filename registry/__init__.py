"""lvmae registry: ``@register("kind.name")`` registers a component and makes it gin-configurable."""
from lvmae.registry.core import (
    ContractError,
    Entry,
    RegistryError,
    build,
    describe,
    entries,
    entry_of,
    get,
    names,
    register,
    suggest,
    temporary,
    unknown_name_message,
    unregister,
)
from lvmae.registry.discovery import (
    ENTRY_POINT_GROUP,
    PluginImportError,
    discover,
    failed_plugins,
    load_entry_points,
    plugin_folders,
)
from lvmae.registry.kinds import (
    Kind,
    all_kinds,
    define_kind,
    get_kind,
    has_methods,
    set_contract,
    subclass_of,
)

__all__ = [
    "ENTRY_POINT_GROUP", "ContractError", "Entry", "Kind", "PluginImportError", "RegistryError",
    "all_kinds", "build", "define_kind", "describe", "discover", "entries", "entry_of", "failed_plugins", "get",
    "get_kind", "has_methods", "load_entry_points", "names", "plugin_folders", "register", "set_contract",
    "subclass_of", "suggest", "temporary", "unknown_name_message", "unregister",
]

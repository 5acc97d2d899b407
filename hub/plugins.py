"""Loading plugins and collecting what they register.

Built-ins come from an explicit list (:data:`BUILTINS`) and are registered exactly
like third-party plugins, which come through the entry-point group ``leadhub``.
Two environment variables decide what loads, checked at start-up:

* ``LEADHUB_PLUGINS`` — a comma-separated allow-list of plugin names (built-in
  module names or entry-point names); when set, nothing else loads.
* ``LEADHUB_DISABLE_PLUGINS`` — a comma-separated block-list, applied after it.

``pm.check_pending()`` runs after loading, so a misspelt hook in a plugin fails
at start-up instead of being silently ignored.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from hub import hookspecs
from hub.errors import PluginError

__all__ = ["BUILTINS", "PluginInfo", "Registry", "get_plugin_manager", "registry", "list_plugins", "reset"]

#: Built-in plugins, registered in this order.
BUILTINS: tuple[str, ...] = (
    "connectors.hubspot",
    "connectors.dynamics",
    "connectors.salesforce",
    "connectors.pipedrive",
    "connectors.monday",
    "rules",
)


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    version: str
    origin: str  # "built-in" or "entry point (dist-name)"
    hooks: tuple[str, ...]


def _names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None or not raw.strip():
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _wanted(name: str) -> bool:
    allow, block = _names("LEADHUB_PLUGINS"), _names("LEADHUB_DISABLE_PLUGINS") or set()
    return (allow is None or name in allow) and name not in block


def _build() -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    from hub import __version__

    for modname in BUILTINS:
        if not _wanted(modname):
            continue
        try:
            module = importlib.import_module(modname)
        except Exception as exc:
            raise PluginError(f"built-in plugin {modname!r} failed to import: {exc}") from exc
        pm.register(module, name=modname)
        infos[modname] = PluginInfo(modname, __version__, "built-in", ())
    for ep in metadata.entry_points(group=hookspecs.PROJECT):
        if not _wanted(ep.name) or pm.has_plugin(ep.name):
            continue
        try:
            plugin: ModuleType | Any = ep.load()
        except Exception as exc:
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        pm.register(plugin, name=ep.name)
        infos[ep.name] = PluginInfo(ep.name, version, f"entry point ({dist})", ())
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements an unknown hook: {exc}") from exc
    for name in list(infos):
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(pm.get_plugin(name)) or ()))
        infos[name] = PluginInfo(infos[name].name, infos[name].version, infos[name].origin, hooks)
    return pm, infos


class Registry:
    """What the plugins registered: connectors and rules by name."""

    def __init__(self, pm: pluggy.PluginManager, infos: dict[str, PluginInfo]):
        self.pm = pm
        self.plugins = infos
        self.connectors: dict[str, type] = {}
        self.rules: dict[str, type] = {}
        pm.hook.hub_register_connectors(register=self._adder(self.connectors, "connector"))
        pm.hook.hub_register_rules(register=self._adder(self.rules, "rule"))

    @staticmethod
    def _adder(table: dict[str, type], kind: str):
        def register(cls: type) -> None:
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"{kind} class {cls!r} has no 'name'")
            if name in table and table[name] is not cls:
                raise PluginError(f"two plugins register a {kind} named {name!r}: "
                                  f"{table[name].__module__} and {cls.__module__}")
            table[name] = cls
        return register


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry (plugins load once)."""
    return Registry(*_build())


def get_plugin_manager() -> pluggy.PluginManager:
    return registry().pm


def list_plugins() -> list[PluginInfo]:
    return list(registry().plugins.values())


def reset() -> None:
    """Forget loaded plugins (tests that change the environment call this)."""
    registry.cache_clear()

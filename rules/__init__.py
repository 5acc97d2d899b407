"""Built-in rules, one module per rule, registered through ``hub_register_rules`` like any plugin.

Each module in :data:`RULE_MODULES` exposes ``RULES``, a tuple of :class:`hub.engine.Rule`
classes. A module not written yet is skipped; any other import error is a plugin error.
Orders (lower runs first): dedup 10, scoring 20, routing 30, stale 40, governance 50, sla 60 —
duplicates are resolved before anyone routes, a lead scored into MQL is routed in the same run,
and governance and the SLA clocks see the status the earlier rules left.

The plugin also implements ``hub_after_push``: after each connection's push, the merges the dedup
rule requested there are carried out in that CRM where it can merge (:mod:`rules.dedup.remote`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from hub.hookspecs import hookimpl

__all__ = ["RULE_MODULES", "builtin_rules", "hub_after_push", "hub_register_rules"]

RULE_MODULES: tuple[str, ...] = (
    "rules.dedup",
    "rules.scoring",
    "rules.routing",
    "rules.stale",
    "rules.governance",
    "rules.sla",
)


def builtin_rules() -> list[type]:
    """The rule classes of every built-in rule module present."""
    classes: list[type] = []
    for name in RULE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        classes.extend(getattr(module, "RULES", ()))
    return classes


@hookimpl
def hub_register_rules(register: Callable[[type], None]) -> None:
    for cls in builtin_rules():
        register(cls)


@hookimpl
def hub_after_push(connection: str, connector: Any, store: Any, run: dict[str, Any]) -> None:
    """Carry out the CRM merges the dedup rule requested in ``connection`` (:mod:`rules.dedup.remote`)."""
    from rules.dedup.remote import after_push

    after_push(connection, connector, store, run)

"""The plugin surface of LeadHub: every hook a plugin may implement, one docstring each.

Hooks *register* things or *observe* events; the registered objects do the work.
Built-in connectors and rules use exactly these hooks, so a third-party plugin
(an installed package with an entry point in the group ``leadhub``) can do
anything a built-in can::

    # my_plugin.py                      # pyproject.toml
    from hub.hookspecs import hookimpl  # [project.entry-points.leadhub]
                                        # acme = "my_plugin"
    @hookimpl
    def hub_register_connectors(register):
        register(AcmeConnector)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from hub.connector import Connector

__all__ = ["hookspec", "hookimpl", "PROJECT"]

PROJECT = "leadhub"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def hub_register_connectors(register: Callable[[type[Connector]], None]) -> None:
    """Register connector classes: call ``register(ConnectorClass)`` once per class.

    The class's ``name`` is what a connection's ``connector:`` key refers to. Two
    plugins registering the same name is an error at start-up.
    """


@hookspec
def hub_register_rules(register: Callable[[type[Any]], None]) -> None:
    """Register rule classes: call ``register(RuleClass)`` once per class.

    A rule's ``name`` is the key of its section under ``rules:`` in the process file.
    """


@hookspec
def hub_register_commands(cli: Any) -> None:
    """Add commands to the ``leadhub`` command line; ``cli`` is the root ``typer.Typer``."""


@hookspec
def hub_lead_changed(lead: Any, change: dict[str, Any]) -> None:
    """Observe a canonical change to a lead (after it is committed to the store).

    ``change`` has ``fields`` (name → (old, new)), ``connection`` (where it came
    from, or ``None`` for the hub itself) and ``by`` (a rule name or a user).
    Use it for notifications and exports; it must not block for long.
    """


@hookspec
def hub_before_sync(connection: str, run: dict[str, Any]) -> None:
    """Called before a sync run of ``connection`` starts; ``run`` has its id and start time."""


@hookspec
def hub_after_sync(connection: str, run: dict[str, Any], outcome: dict[str, Any]) -> None:
    """Called after a sync run of ``connection``, with its counts and error (if any)."""

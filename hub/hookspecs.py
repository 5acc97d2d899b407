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
    from hub.store import Store

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


@hookspec
def hub_after_push(connection: str, connector: Connector, store: Store, run: dict[str, Any]) -> None:
    """Called after ``connection``'s push in a sync cycle, with the live connector, so a plugin can
    send the CRM work it queued itself (the dedup rule's merges, for one).

    ``run`` has the sync run's id. It is not called when the cycle was stopped, when the push
    itself failed (the CRM unreachable, credentials refused), nor for a connection that does not
    write. Use ``connector`` (its rate budgets and retries apply) and
    ``store`` (open your own transactions); a :class:`hub.errors.ConnectorError` raised here is
    recorded as the run's error and stops no other connection, but it does stop the plugins
    after yours for this connection: settle what you can and raise only what a person must see.
    """

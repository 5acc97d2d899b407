"""A running hub: config + plugins + store + live connections, assembled once.

This is the library behind every CLI command and the scheduler: validate the
whole config before any I/O, then open the store, migrate it, and build one
connector per enabled connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.config import HubConfig, load_config
from hub.conflicts import Resolver
from hub.errors import ConfigError, ConnectorError
from hub.plugins import Registry, registry
from hub.process import Process, default_process, load_process
from hub.store import Store
from hub.sync import BackfillOutcome, Connection, PlannedWrite, Syncer, SyncOutcome

if TYPE_CHECKING:
    from datetime import datetime
    from threading import Event

    from hub.engine import Engine, EngineOutcome

__all__ = ["Hub"]


class Hub:
    """Everything one hub needs, built from a config file (or a config object)."""

    def __init__(self, config: HubConfig, *, base: Path | None = None, plugins: Registry | None = None):
        self.config = config
        self.plugins = plugins or registry()
        self.base = base or Path.cwd()
        self.process_path: Path | None = None  # None: the built-in process
        if config.process:
            path = Path(config.process)
            self.process_path = path if path.is_absolute() else self.base / path
            self.process: Process = load_process(self.process_path)
        else:
            self.process = default_process()
        self.store = Store(config.database)
        self._connections: dict[str, Connection] = {}
        self._engine: Engine | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> Hub:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: no such config file (pass --config or set LEADHUB_CONFIG)")
        reg = registry()
        return cls(load_config(path, reg.connectors), base=path.parent, plugins=reg)

    def open(self) -> Hub:
        self.store.migrate()
        return self

    def connection(self, name: str) -> Connection:
        if name not in self._connections:
            cc = self.config.connections[name]
            cls = self.plugins.connectors[cc.connector]
            self._connections[name] = Connection(name, cls(cc.settings, connection=name), cc.role or "",
                                                 cc.direction, cc.statuses)
        return self._connections[name]

    def connection_names(self, only: Iterable[str] | None = None) -> list[str]:
        names = [n for n, c in self.config.connections.items() if c.enabled]
        if only:
            wanted = list(only)
            unknown = [n for n in wanted if n not in self.config.connections]
            if unknown:
                raise ConfigError(f"unknown connection(s) {', '.join(unknown)}; configured: "
                                  f"{', '.join(self.config.connections) or 'none'}")
            names = [n for n in names if n in wanted]
        return names

    def syncer(self) -> Syncer:
        """A syncer over every configured connection's fields, with the config's conflict rules."""
        conns, _ = self._live(None)
        syncer = Syncer(self.store, transitions=self.process.transitions, required=self.process.required,
                        hook=self.plugins.pm.hook, resolver=Resolver(self.config.conflict_rules),
                        writable=[c.name for c in conns if c.writes])
        syncer.learn(conns)  # every connection's fields, asked for lazily (some cost a call)
        return syncer

    def _live(self, only: Iterable[str] | None) -> tuple[list[Connection], list[SyncOutcome]]:
        conns, failed = [], []
        for name in self.connection_names(only):
            try:
                conns.append(self.connection(name))
            except ConnectorError as exc:
                failed.append(SyncOutcome(name, error=str(exc)))
        return conns, failed

    def sync(self, only: Iterable[str] | None = None, *, push: bool = True,
             progress: Callable[[str, str, int], None] | None = None, stop: Event | None = None,
             record: list[PlannedWrite] | None = None) -> list[SyncOutcome]:
        """One cycle: pull every (selected) connection, then push; one failing CRM never stops the others.

        ``stop``: set it to end the cycle after the current page or batch (committed).
        ``record``: a list that receives every write the CRMs confirmed.
        """
        conns, failed = self._live(only)
        outcomes = self.syncer().cycle(conns, push=push, progress=progress, stop=stop, record=record)
        order = self.connection_names(only)
        return sorted(outcomes + failed, key=lambda o: order.index(o.connection))

    def plan(self, only: Iterable[str] | None = None) -> tuple[list[PlannedWrite], list[SyncOutcome]]:
        """The dry run of :meth:`sync`: the writes it would make, each with its reason; nothing is kept."""
        conns, failed = self._live(only)
        plans, outcomes = self.syncer().plan(conns)
        return plans, outcomes + failed

    def backfill(self, fields: Iterable[str] | None = None, *, dry_run: bool = False) -> BackfillOutcome:
        """Apply the current conflict rules to every lead held by several CRMs, and queue the writes."""
        return self.syncer().backfill(fields, dry_run=dry_run)

    def rules_engine(self) -> Engine:
        """The rule engine over this hub's store, process and registered rules (configs validated)."""
        if self._engine is None:
            from importlib import resources

            from hub.engine import Engine

            source = self.process_path or resources.files("hub") / "default_process.yaml"
            carried = {}
            for name in self.connection_names():
                try:
                    carried[name] = self.connection(name).connector.mapped_fields
                except (ConnectorError, KeyError):
                    pass  # unknown fields then go to this connection's outbox and are ignored on push
            self._engine = Engine.build(self.store, self.process, self.plugins.rules, source=str(source),
                                        carried=carried, hook=self.plugins.pm.hook)
        return self._engine

    def run_rules(self, now: datetime | None = None, lead_ids: Iterable[str] | None = None, *,
                  dry_run: bool = False, all_leads: bool = False) -> EngineOutcome:
        """Evaluate the rules over leads that changed or fell due (or ``lead_ids``) and apply their actions."""
        return self.rules_engine().run(now, lead_ids, dry_run=dry_run, all_leads=all_leads)

    def close(self) -> None:
        for conn in self._connections.values():
            conn.connector.close()
        self.store.dispose()

    def __enter__(self) -> Hub:
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

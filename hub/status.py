"""What a hub looks like right now: one row per connection, plus what waits for people.

``leadhub status`` prints it; a scheduler or a health check reads :func:`hub_status`.
Per connection: the last run (when, how it ended, its error), lag since the last
successful run, API calls used by the runs of the last 24 hours against the
vendor's daily budget, pending and failed outbox rows. Then the open governance
violations (leads whose status lacks required fields), unresolved conflicts, and
rejected records still being retried.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from hub.model import utcnow
from hub.store import Conflict, OutboxRow, Run

__all__ = ["ConnectionStatus", "HubStatus", "hub_status"]


@dataclass
class ConnectionStatus:
    connection: str
    connector: str
    last_run: datetime | None = None
    last_status: str | None = None
    last_error: str | None = None
    lag_seconds: float | None = None  # since the last run that ended ok
    calls_24h: int = 0
    daily_budget: int | None = None
    pending: int = 0
    failed: int = 0


@dataclass
class HubStatus:
    connections: list[ConnectionStatus] = field(default_factory=list)
    violations: int = 0
    conflicts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def hub_status(hub: Any, *, now: datetime | None = None) -> HubStatus:
    """The status of every configured connection of ``hub`` (a :class:`hub.runtime.Hub`)."""
    now = now or utcnow()
    out = HubStatus()
    with Session(hub.store.engine) as s:
        for name, cc in hub.config.connections.items():
            row = ConnectionStatus(name, cc.connector)
            connector = hub.plugins.connectors.get(cc.connector)
            row.daily_budget = connector.limits.daily if connector else None
            last = s.execute(sa.select(Run).where(Run.connection == name).order_by(Run.id.desc())
                             .limit(1)).scalars().first()
            if last is not None:
                row.last_run, row.last_status, row.last_error = last.started_at, last.status, last.error
            ok = s.execute(sa.select(sa.func.max(Run.finished_at)).where(
                Run.connection == name, Run.status == "ok")).scalar_one()
            if ok is not None:
                row.lag_seconds = round((now - ok).total_seconds(), 1)
            row.calls_24h = s.execute(sa.select(sa.func.coalesce(sa.func.sum(Run.api_calls), 0)).where(
                Run.connection == name, Run.started_at >= now - timedelta(days=1))).scalar_one()
            states = dict(s.execute(sa.select(OutboxRow.state, sa.func.count()).where(
                OutboxRow.connection == name, OutboxRow.state.in_(("pending", "failed")))
                .group_by(OutboxRow.state)).all())
            row.pending, row.failed = states.get("pending", 0), states.get("failed", 0)
            out.connections.append(row)
        out.conflicts = s.execute(sa.select(sa.func.count()).select_from(Conflict).where(
            Conflict.resolved_at.is_(None))).scalar_one()
    try:
        from rules.governance import open_violations

        out.violations = len(open_violations(hub.store))
    except ImportError:  # governance rule not installed
        out.violations = 0
    return out

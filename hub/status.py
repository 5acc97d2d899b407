"""What a hub looks like right now: one row per connection, plus what waits for people.

``leadhub status`` prints it; a scheduler or a health check reads :func:`hub_status`.
Per connection: the last run (when, how it ended, its error), lag since the last
successful run, API calls used by the runs of the last 24 hours against the
vendor's daily budget, pending and failed outbox rows; the dedup rule's CRM merge
requests by state (``dedup_merge_requests``: requested, done, failed, unsupported,
skipped — :mod:`rules.dedup.remote`) with the newest failure's words; and the rule
tasks that CRM holds: open tasks pushed there, open tasks whose push it refused
(``push_error``) with the newest refusal, tasks closed in the hub that its next push
still has to close there (:func:`hub.tasks_push.unclosed`), and of those the ones whose
close it refused (``close_error``) with the newest refusal. Then the open governance violations
(leads whose status lacks required fields), unresolved conflicts, and the open rule
tasks, with those whose lead has no live record in any task-capable connection
(``unlinked``: :mod:`hub.tasks_push` leaves them open, untouched, until the lead
has one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from hub.actions import Task
from hub.model import utcnow
from hub.store import Conflict, Link, OutboxRow, Run
from hub.tasks_push import unclosed

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
    #: CRM merge requests by state, every state listed (empty: the dedup rule is not installed)
    merges: dict[str, int] = field(default_factory=dict)
    merge_failure: str | None = None  # the message of the newest ``failed`` merge request
    tasks_pushed: int = 0  # open rule tasks that are tasks in this CRM
    tasks_failed: int = 0  # open rule tasks this CRM refused (``push_error``; retried every run)
    task_error: str | None = None  # the newest of those refusals, verbatim
    #: closed in the hub, pushed here (or sent, the answer lost) and not yet closed here: the next push's
    #: work, refused ones included
    tasks_to_close: int = 0
    tasks_close_failed: int = 0  # of those, the ones whose close (or lookup) this CRM refused (``close_error``)
    task_close_error: str | None = None  # the newest of those refusals, verbatim


@dataclass
class HubStatus:
    connections: list[ConnectionStatus] = field(default_factory=list)
    violations: int = 0
    conflicts: int = 0
    tasks_open: int = 0  # open rule tasks, pushed or not
    tasks_unlinked: int = 0  # open, unpushed, and their lead has no live record where they could go

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
            _merges(s, row)
            _tasks(s, row)
            row.tasks_to_close = unclosed(hub.store, name)
            out.connections.append(row)
        out.conflicts = s.execute(sa.select(sa.func.count()).select_from(Conflict).where(
            Conflict.resolved_at.is_(None))).scalar_one()
        out.tasks_open = s.execute(sa.select(sa.func.count()).select_from(Task).where(
            Task.state == "open")).scalar_one()
        out.tasks_unlinked = _unlinked(s, _task_capable(hub))
    try:
        from rules.governance import open_violations

        out.violations = len(open_violations(hub.store))
    except ImportError:  # governance rule not installed
        out.violations = 0
    return out


def _merges(s: Session, row: ConnectionStatus) -> None:
    try:
        from rules.dedup.remote import FAILED, STATES
        from rules.dedup.tables import MergeRequest
    except ImportError:  # dedup rule not installed
        return
    where = MergeRequest.connection == row.connection
    counts = dict(s.execute(sa.select(MergeRequest.state, sa.func.count()).where(where)
                            .group_by(MergeRequest.state)).all())
    row.merges = {state: counts.pop(state, 0) for state in STATES} | counts  # a state from elsewhere too
    row.merge_failure = s.execute(sa.select(MergeRequest.message).where(where, MergeRequest.state == FAILED)
                                  .order_by(MergeRequest.updated_at.desc().nulls_last(), MergeRequest.id.desc())
                                  .limit(1)).scalars().first()


def _tasks(s: Session, row: ConnectionStatus) -> None:
    mine = (Task.state == "open", Task.connection == row.connection)
    row.tasks_pushed = s.execute(sa.select(sa.func.count()).select_from(Task).where(
        *mine, Task.remote_id.is_not(None))).scalar_one()
    refused = (*mine, Task.remote_id.is_(None), Task.push_error.is_not(None))
    row.tasks_failed = s.execute(sa.select(sa.func.count()).select_from(Task).where(*refused)).scalar_one()
    row.task_error = s.execute(sa.select(Task.push_error).where(*refused).order_by(Task.id.desc())
                               .limit(1)).scalars().first()  # no push time is kept for a refusal: newest task
    unclosed_refused = (Task.connection == row.connection, Task.state.in_(("done", "dismissed")),
                        Task.remote_closed_at.is_(None), Task.close_error.is_not(None))
    row.tasks_close_failed = s.execute(sa.select(sa.func.count()).select_from(Task).where(
        *unclosed_refused)).scalar_one()
    row.task_close_error = s.execute(sa.select(Task.close_error).where(*unclosed_refused).order_by(
        Task.closed_at.desc().nulls_last(), Task.id.desc()).limit(1)).scalars().first()  # newest closed in the hub


def _task_capable(hub: Any) -> list[str]:
    """Enabled connections that write and whose connector creates tasks (where tasks can go)."""
    out = []
    for name, cc in hub.config.connections.items():
        connector = hub.plugins.connectors.get(cc.connector)
        if cc.enabled and cc.writes and connector is not None and getattr(connector, "can_write_tasks", False):
            out.append(name)
    return out


def _unlinked(s: Session, capable: list[str]) -> int:
    """Open, unpushed tasks with nowhere to go, as :func:`hub.tasks_push.route_task` decides: a task
    taken by a connection needs a live record there, any other one in a task-capable connection."""
    live = sa.select(Link.id).where(Link.lead_id == Task.lead_id, Link.deleted_at.is_(None))
    return s.execute(sa.select(sa.func.count()).select_from(Task).where(
        Task.state == "open", Task.remote_id.is_(None),
        sa.or_(sa.and_(Task.connection.is_(None), ~live.where(Link.connection.in_(capable)).exists()),
               sa.and_(Task.connection.is_not(None), ~live.where(Link.connection == Task.connection).exists()))
    )).scalar_one()

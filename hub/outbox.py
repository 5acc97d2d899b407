"""The outbox: every write the hub owes a CRM, until it is done.

A write is queued in the same transaction as the change that caused it, so a
crash can lose neither. One open row exists per (connection, lead): a second
change before the push merges into it (latest values win). A row stays open
(``pending``, or ``failed`` after a rejection) until the CRM confirms it, and is
retried on every later run; an admin may ``dismiss`` it. Because every write
carries the hub's lead id and creates are upserts keyed by it, pushing the same
row twice (after a crash between the CRM's answer and our commit) never
duplicates a record.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from hub.model import utcnow
from hub.store import OutboxRow

__all__ = ["OPEN_STATES", "enqueue", "open_rows", "mark_done", "mark_failed", "dismiss", "pending_count"]

OPEN_STATES = ("pending", "failed")


def enqueue(s: Session, *, connection: str, object: str, lead_id: str, fields: dict[str, Any],
            remote_id: str | None = None) -> OutboxRow:
    """Queue (or merge into the open row) a write of ``fields`` for one lead."""
    row = s.exec(sa.select(OutboxRow).where(
        OutboxRow.connection == connection, OutboxRow.lead_id == lead_id,
        OutboxRow.state.in_(OPEN_STATES))).scalars().first()
    now = utcnow()
    if row is None:
        row = OutboxRow(connection=connection, object=object, lead_id=lead_id, remote_id=remote_id,
                        fields=dict(fields), created_at=now, updated_at=now)
    else:
        row.fields = {**row.fields, **fields}
        row.remote_id = row.remote_id or remote_id
        row.state, row.updated_at = "pending", now
    s.add(row)
    return row


def open_rows(s: Session, connection: str, limit: int | None = None, after_id: int = 0) -> list[OutboxRow]:
    """Open rows in queue order; ``after_id`` pages through them so a run tries each once."""
    q = sa.select(OutboxRow).where(OutboxRow.connection == connection, OutboxRow.id > after_id,
                                   OutboxRow.state.in_(OPEN_STATES)).order_by(OutboxRow.id)
    if limit:
        q = q.limit(limit)
    return list(s.exec(q).scalars())


def mark_done(row: OutboxRow) -> None:
    row.state, row.updated_at, row.last_error = "done", utcnow(), None
    row.attempts += 1


def mark_failed(row: OutboxRow, error: str) -> None:
    row.state, row.updated_at, row.last_error = "failed", utcnow(), error
    row.attempts += 1


def dismiss(s: Session, row_id: int, reason: str) -> None:
    row = s.get(OutboxRow, row_id)
    if row is not None and row.state in OPEN_STATES:
        row.state, row.last_error, row.updated_at = "dismissed", reason, utcnow()


def pending_count(s: Session, connection: str | None = None) -> int:
    q = sa.select(sa.func.count()).select_from(OutboxRow).where(OutboxRow.state.in_(OPEN_STATES))
    if connection:
        q = q.where(OutboxRow.connection == connection)
    return s.exec(q).one()[0]

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

__all__ = ["OPEN_STATES", "enqueue", "enqueue_many", "open_rows", "mark_done", "mark_failed", "dismiss",
           "pending_count"]

OPEN_STATES = ("pending", "failed")


def enqueue(s: Session, *, connection: str, object: str, lead_id: str, fields: dict[str, Any],
            remote_id: str | None = None, reasons: dict[str, str] | None = None) -> OutboxRow:
    """Queue (or merge into the open row) a write of ``fields`` for one lead; ``reasons``: field → why."""
    row = s.exec(sa.select(OutboxRow).where(
        OutboxRow.connection == connection, OutboxRow.lead_id == lead_id,
        OutboxRow.state.in_(OPEN_STATES))).scalars().first()
    now = utcnow()
    if row is None:
        row = OutboxRow(connection=connection, object=object, lead_id=lead_id, remote_id=remote_id,
                        fields=dict(fields), reasons=dict(reasons or {}), created_at=now, updated_at=now)
    else:
        _merge(row, fields, remote_id, reasons, now)
    s.add(row)
    return row


def _merge(row: OutboxRow, fields: dict[str, Any], remote_id: str | None, reasons: dict[str, str] | None,
           now: Any) -> None:
    row.fields = {**row.fields, **fields}
    row.reasons = {**(row.reasons or {}), **(reasons or {})}
    row.remote_id = row.remote_id or remote_id
    row.state, row.updated_at = "pending", now


def enqueue_many(s: Session, items: list[dict[str, Any]]) -> int:
    """:func:`enqueue` for many writes at once (keys as its arguments): one query per connection and 500 leads."""
    if not items:
        return 0
    now = utcnow()
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for it in items:  # several writes for one lead in one page: one row
        key = (it["connection"], it["lead_id"])
        if key in merged:
            m = merged[key]
            m["fields"], m["reasons"] = {**m["fields"], **it["fields"]}, {**m["reasons"], **it["reasons"]}
            m["remote_id"] = m["remote_id"] or it.get("remote_id")
        else:
            merged[key] = {**it, "fields": dict(it["fields"]), "reasons": dict(it.get("reasons") or {})}
    by_conn: dict[str, list[dict[str, Any]]] = {}
    for (conn, _), it in merged.items():
        by_conn.setdefault(conn, []).append(it)
    new: list[dict[str, Any]] = []
    for conn, group in by_conn.items():
        for start in range(0, len(group), 500):
            chunk = group[start:start + 500]
            open_ = {r.lead_id: r for r in s.exec(sa.select(OutboxRow).where(
                OutboxRow.connection == conn, OutboxRow.state.in_(OPEN_STATES),
                OutboxRow.lead_id.in_([it["lead_id"] for it in chunk]))).scalars()}
            for it in chunk:
                row = open_.get(it["lead_id"])
                if row is not None:
                    _merge(row, it["fields"], it.get("remote_id"), it["reasons"], now)
                else:
                    new.append(dict(connection=conn, object=it["object"], lead_id=it["lead_id"],
                                    remote_id=it.get("remote_id"), fields=it["fields"], reasons=it["reasons"],
                                    state="pending", attempts=0, created_at=now, updated_at=now))
    if new:
        s.execute(sa.insert(OutboxRow.__table__), new)
    return len(merged)


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

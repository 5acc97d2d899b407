"""A hub store's side of the connectors' task tests: a lead linked to a CRM record, the rules' task on
it, closing that task in the hub (as a rule meeting an SLA, or a person dismissing it, does), and a
push that dies before the hub books the CRM's answer."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Session

from hub.actions import Task
from hub.connector import Connector
from hub.model import Lead, utcnow
from hub.store import LeadRow, Link, Store, row_values
from hub.tasks_push import push_tasks

DUE = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def linked_task(store: Store, connection: str, obj: str, remote_id: str, owner: str | None = None,
                title: str = "SLA breached: call back") -> int:
    """A lead linked to ``remote_id`` in ``connection`` with one open task; returns the task's id."""
    row = Lead(last_name="Lovelace", owner=owner, status="SAL")
    with store.session() as s:
        s.add(LeadRow(**row_values(row)))
        s.flush()
        s.add(Link(lead_id=row.id, connection=connection, object=obj, remote_id=remote_id))
        t = Task(lead_id=row.id, rule="sla", kind="breach", title=title, due_at=DUE, created_at=DUE)
        s.add(t)
        s.flush()
        return t.id


def close(store: Store, *ids: int, state: str = "done") -> None:
    with store.session() as s:
        s.exec(sa.update(Task).where(Task.id.in_(ids)).values(state=state, closed_at=utcnow()))


def task(store: Store, tid: int) -> Task:
    with Session(store.engine) as s:
        return s.get(Task, tid)


class Crash(Exception):
    """The process dies in the middle of a push."""


def push_and_crash(store: Store, connection: str, connector: Connector) -> None:
    """Push the open tasks; the CRM makes them and answers, and the process dies before the hub books
    the answer: claimed (``push_attempts`` counted) with no ``remote_id``."""
    real = connector.write_tasks

    def answered_then_crashed(ops):
        real(ops)
        raise Crash

    connector.write_tasks = answered_then_crashed  # type: ignore[method-assign]
    try:
        push_tasks(store, connection, connector)
    except Crash:
        pass
    else:
        raise AssertionError("the push did not reach write_tasks")
    finally:
        del connector.write_tasks


def claimed(store: Store, tid: int, connection: str) -> None:
    """Claimed for ``connection`` and its attempt counted, and the process died before sending it."""
    with store.session() as s:
        s.exec(sa.update(Task).where(Task.id == tid).values(connection=connection, push_attempts=1))

"""Tasks the rules create (SLA breaches, escalations, governance reviews…) become tasks in a CRM.

The rule engine stores tasks in ``tasks`` (:class:`hub.actions.Task`); this module sends each open
one into ONE connection — the CRM where the lead's owner works — as a real task on the lead's
record, owned by the assignee, with its due date::

    outcome = push_tasks(store, "sales", connector, prefer=["sales", "marketing"], run_id=run_id)

Which connection: a task already taken by a connection (``tasks.connection``) stays with it;
otherwise it goes to the first connection in ``prefer`` (task-capable connections, sales roles
first: the caller orders them) where the lead has a live link (``links``, not deleted). Without
``prefer``, only the connection being pushed is considered. A task whose lead has no live link in
any of them stays open, untouched, and is reported in :attr:`TaskPushOutcome.unlinked`.

Books, per task: the connection that took it, ``push_attempts``, then ``remote_id`` and
``pushed_at`` once the CRM created it, or ``push_error`` (the CRM's words) if it refused. A refused
task is retried on every later run and never blocks the others: a batch the CRM refuses whole is
split until the bad task stands alone (as :meth:`hub.connector.Connector.write` does for leads).

No duplicates: the task is claimed and its attempt counted in a committed transaction *before* it
is sent, so after a crash between the CRM's answer and the hub's commit, the next run sends it with
``maybe_exists=True`` and the connector finds the task it made (by upsert key or by the
``leadhub-task:<id>`` marker in its body) instead of creating a second one.

Only open tasks are pushed, once: a task closed in the hub before it was pushed is never pushed.
Unless it was sent and its answer lost: a task claimed and sent (``push_attempts`` > 0, no
``remote_id``: the process died before the CRM's answer was booked) that the hub then closes may be
open in the CRM. The next push of its connection looks for it there, with the lookup of a re-sent
create (:meth:`hub.connector.Connector.find_tasks`, in the CRM's batches), and never creates it:
found, it is booked as pushed (``remote_id``, ``pushed_at``) and closed like any other; not found,
the CRM never made it, so there is nothing to close: ``remote_closed_at`` set, ``close_error``
saying why, never looked at again (counted in :attr:`TaskPushOutcome.gone`). A lookup the CRM
refuses is booked in ``close_error`` and retried every run.

Closing: a pushed task (``remote_id`` set) that the hub then closes (``done`` or ``dismissed``) is
closed in its CRM by the next push of its connection, in the CRM's batches
(:meth:`hub.connector.Connector.close_tasks`): HubSpot ``hs_task_status`` ``COMPLETED``, Salesforce
``Status`` ``Completed``, Dynamics ``statecode`` 1 Completed (2 Canceled when dismissed), Pipedrive
``done: true``. Books: ``remote_closed_at`` once the CRM closed it; ``close_error`` (the CRM's words)
while it refuses, retried every run. A task the CRM no longer has (deleted there) counts as closed:
``remote_closed_at`` set, ``close_error`` saying why, never sent again. Closing is idempotent on
every CRM, so nothing is claimed first: after a crash between the CRM's answer and the hub's commit,
the next run just closes it again. With nothing to close (or create) the push makes no call at all.

The function needs nothing from :mod:`hub.sync`; it opens its own transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from hub.actions import Task
from hub.connector import REJECTING, Connector, TaskClose, TaskOp, TaskResult
from hub.errors import AuthError, ConnectorError, RateLimitError, TransientError
from hub.model import utcnow
from hub.store import LeadRow, Link, RecordIssue, Store

__all__ = ["TaskPushOutcome", "preference", "push_tasks", "route_task", "unclosed", "unpushed"]

_CLOSED = ("done", "dismissed")


@dataclass
class TaskPushOutcome:
    """What one push did for one connection."""

    connection: str
    pushed: int = 0  # created in the CRM (or found there, made by an earlier push)
    closed: int = 0  # closed in the hub, now closed in the CRM too
    gone: int = 0  # closed in the hub, not in the CRM (deleted there meanwhile, or never made by a push whose
    # answer was lost): counted as closed, never sent again
    failed: int = 0  # creates, lookups or closes refused or unanswered this run; retried next run
    elsewhere: int = 0  # open tasks that belong to another connection
    unlinked: list[int] = field(default_factory=list)  # task ids whose lead has no link in a task-capable CRM
    errors: list[str] = field(default_factory=list)  # the CRM's words: "task <id>: …", "task <id> close: …",
    # "task <id> lookup: …"
    error: str | None = None  # what stopped the push early (auth, rate limit, an unreachable CRM)
    api_calls: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def preference(connections: Iterable[Any]) -> list[str]:
    """The ``prefer`` order for :func:`push_tasks`: connections that can write and whose connector
    can write tasks, role ``sales`` first, then the others as given. ``connections``: objects with
    ``name``, ``role``, ``connector`` and, optionally, ``writes`` (a :class:`hub.sync.Connection`)."""
    able = [c for c in connections if getattr(c, "writes", True) and c.connector.can_write_tasks]
    return [c.name for c in sorted(able, key=lambda c: c.role != "sales")]


def route_task(task: Task, links: dict[str, Link], order: Sequence[str]) -> str | None:
    """The connection a task goes to: the one that took it, else the first in ``order`` where its
    lead has a live link (``links``: connection -> link); ``None`` if it has no such link."""
    if task.connection:
        return task.connection if task.connection in links else None
    return next((c for c in order if c in links), None)


def push_tasks(store: Store, conn_name: str, connector: Connector, *, prefer: Sequence[str] | None = None,
               run_id: int | None = None, limit: int | None = None) -> TaskPushOutcome:
    """Send the open, unpushed tasks that belong to ``conn_name`` into its CRM, then close there the
    pushed ones the hub has closed since (after looking for those whose push's answer was lost), in
    the connector's batch size. ``prefer``: task-capable connections in order of preference (see the
    module docstring); ``run_id``: the sync run, for the ``record_issues`` of refused tasks;
    ``limit``: at most this many tasks created, as many looked for, and as many closed, this run.
    Never raises for the CRM's answers: see :class:`TaskPushOutcome`."""
    out = TaskPushOutcome(conn_name)
    if not connector.can_write_tasks:
        return out
    order = list(prefer) if prefer else [conn_name]
    if conn_name not in order:
        return out
    calls_before = connector.meter.calls
    with Session(store.engine) as s:  # neither to create nor to close: no call, not even for the owner map
        to_create = s.exec(sa.select(Task.id).where(Task.state == "open", Task.remote_id.is_(None), sa.or_(
            Task.connection.is_(None), Task.connection == conn_name)).limit(1)).first() is not None
        to_close = s.exec(sa.select(Task.id).where(*_unclosed(conn_name)).limit(1)).first() is not None
        to_find = s.exec(sa.select(Task.id).where(*_orphaned(conn_name)).limit(1)).first() is not None
    if to_create and not _create(store, conn_name, connector, order, out, run_id, limit):
        return _done(out, connector, calls_before)  # stopped (auth, rate limit, the CRM unreachable)
    if to_find:
        found = _find(store, conn_name, connector, out, run_id, limit)
        if found is None:
            return _done(out, connector, calls_before)  # stopped, as above
        to_close = to_close or found > 0
    if to_close:
        _close(store, conn_name, connector, out, run_id, limit)
    return _done(out, connector, calls_before)


def _create(store: Store, conn_name: str, connector: Connector, order: list[str], out: TaskPushOutcome,
            run_id: int | None, limit: int | None) -> bool:
    """The creating half of :func:`push_tasks`; False if an error stopped it (``out.error``)."""
    try:
        connector._owners  # noqa: B018 -- the owner map (an API call), read before any task is claimed
    except ConnectorError as exc:
        out.error = str(exc)
        return False
    size = max(connector.limits.batch_size, 1)
    last_id, sent = 0, 0
    while limit is None or sent < limit:
        chunk = size * 5 if limit is None else min(size * 5, limit - sent)
        ops, last_id = _claim(store, conn_name, connector, order, out, last_id, chunk)
        if last_id is None:
            break
        if not _in_batches(ops, size, connector.write_tasks, out,
                           lambda results, batch: _record(store, conn_name, results, batch, out, run_id)):
            return False
        sent += len(ops)
    return True


def _done(out: TaskPushOutcome, connector: Connector, calls_before: int) -> TaskPushOutcome:
    out.api_calls = connector.meter.calls - calls_before
    return out


def _claim(store: Store, conn_name: str, connector: Connector, order: list[str], out: TaskPushOutcome,
           after_id: int, chunk: int) -> tuple[list[TaskOp], int | None]:
    """The next ``chunk`` candidate tasks after ``after_id``: those routed here are claimed (their
    connection set, their attempt counted) and committed before anything is sent. Returns their
    ops and the last task id looked at (``None``: no tasks left)."""
    with store.session() as s:
        tasks = list(s.exec(sa.select(Task).where(
            Task.state == "open", Task.remote_id.is_(None), Task.id > after_id,
            sa.or_(Task.connection.is_(None), Task.connection == conn_name))
            .order_by(Task.id).limit(chunk)).scalars())
        if not tasks:
            return [], None
        lead_ids = sorted({t.lead_id for t in tasks})
        links: dict[str, dict[str, Link]] = {}
        for ln in s.exec(sa.select(Link).where(Link.lead_id.in_(lead_ids), Link.connection.in_(order),
                                               Link.deleted_at.is_(None))).scalars():
            mine = links.setdefault(ln.lead_id, {})
            if ln.connection not in mine or ln.object == connector.lead_object:
                mine[ln.connection] = ln
        owners = dict(s.exec(sa.select(LeadRow.id, LeadRow.owner).where(LeadRow.id.in_(lead_ids))).all())
        ops = []
        for task in tasks:
            where = route_task(task, links.get(task.lead_id, {}), order)
            if where is None:
                out.unlinked.append(task.id)
                continue
            if where != conn_name:
                out.elsewhere += 1
                continue
            maybe_exists = task.push_attempts > 0  # sent before, and no answer recorded: it may be there
            task.connection, task.push_attempts = conn_name, task.push_attempts + 1
            s.add(task)
            email = task.assignee or owners.get(task.lead_id)
            ops.append(TaskOp(task.id, links[task.lead_id][conn_name].remote_id, connector.remote_owner(email),
                              task.title, task.due_at, task.kind, note=f"LeadHub {task.kind} ({task.rule})",
                              maybe_exists=maybe_exists))
        return ops, tasks[-1].id


def _in_batches(ops: list[Any], size: int, send: Callable[[list[Any]], list[TaskResult]], out: TaskPushOutcome,
                book: Callable[[list[TaskResult], list[Any]], None]) -> bool:
    """Send ``ops`` in batches of ``size`` and ``book`` each batch's answers. An error that stops the
    push (auth, a rate limit, the CRM unreachable) books its batch as unanswered, to retry next run,
    and returns False."""
    for start in range(0, len(ops), size):
        batch = ops[start:start + size]
        try:
            results = _send(send, batch)
        except ConnectorError as exc:
            out.error = str(exc)
            book([TaskResult(op.task_id, False, None, str(exc), True) for op in batch], batch)
            return False
        book(results, batch)
    return True


def _send(write: Callable[[list[Any]], list[TaskResult]], batch: list[Any]) -> list[TaskResult]:
    """One batch (``write``: the connector's ``write_tasks`` or ``close_tasks``); if the CRM refuses it
    whole (a 4xx about its content), split it until the bad task stands alone, so one invalid task
    never blocks the rest."""
    try:
        return write(batch)
    except ConnectorError as exc:
        if isinstance(exc, (AuthError, RateLimitError, TransientError)) or exc.status not in REJECTING:
            raise
        if len(batch) == 1:
            return [TaskResult(batch[0].task_id, False, None, exc.vendor_message or str(exc))]
        mid = len(batch) // 2
        return _send(write, batch[:mid]) + _send(write, batch[mid:])


def _book(store: Store, conn_name: str, results: list[TaskResult], task_ids: list[int], out: TaskPushOutcome,
          run_id: int | None, *, settle: Callable[[Task, TaskResult, datetime], bool], error_field: str,
          what: str, issue: str, remote_ids: dict[int, str | None] | None = None) -> None:
    """Book the CRM's answers for ``task_ids`` in one transaction. ``settle`` books a good answer (and
    says so); any other answer — or none — puts the CRM's words in ``error_field``, counts as failed
    (retried next run), and a refusal that will not change becomes a record issue of kind ``issue``."""
    by_id = {r.task_id: r for r in results}
    now = utcnow()
    with store.session() as s:
        rows = {t.id: t for t in s.exec(sa.select(Task).where(Task.id.in_(task_ids))).scalars()}
        for tid in task_ids:
            task, res = rows.get(tid), by_id.get(tid)
            if task is None:
                continue
            if res is None or not settle(task, res, now):
                message = (res.error if res is not None else None) or "the CRM gave no answer for this task"
                setattr(task, error_field, message)
                out.failed += 1
                out.errors.append(f"task {tid}{what}: {message}")
                if res is not None and not res.retryable:
                    s.add(RecordIssue(run_id=run_id, connection=conn_name, remote_id=(remote_ids or {}).get(tid),
                                      lead_id=task.lead_id, kind=issue, message=message, at=now))
            s.add(task)


def _record(store: Store, conn_name: str, results: list[TaskResult], batch: list[TaskOp], out: TaskPushOutcome,
            run_id: int | None) -> None:
    """Book creates: made (or found), the task is pushed; else ``push_error``."""
    def settle(task: Task, res: TaskResult, now: datetime) -> bool:
        if not (res.ok and res.remote_id):
            return False
        task.remote_id, task.pushed_at, task.push_error = res.remote_id, now, None
        out.pushed += 1
        return True

    _book(store, conn_name, results, [op.task_id for op in batch], out, run_id, settle=settle,
          error_field="push_error", what="", issue="task_rejected",
          remote_ids={op.task_id: op.lead_remote_id for op in batch})


# -- closing ----------------------------------------------------------------------------------------
def _unclosed(conn_name: str) -> tuple[Any, ...]:
    """Where a task is in ``conn_name``'s CRM, closed in the hub, and not (yet) closed there."""
    return (Task.connection == conn_name, Task.remote_closed_at.is_(None), Task.state.in_(_CLOSED),
            Task.remote_id.is_not(None))


def _orphaned(conn_name: str) -> tuple[Any, ...]:
    """Where a task was sent to ``conn_name``'s CRM and the answer lost (no ``remote_id``), then closed in
    the hub, and not yet looked for: it may be open in the CRM."""
    return (Task.connection == conn_name, Task.remote_closed_at.is_(None), Task.state.in_(_CLOSED),
            Task.remote_id.is_(None), Task.push_attempts > 0)


def _find(store: Store, conn_name: str, connector: Connector, out: TaskPushOutcome, run_id: int | None,
          limit: int | None) -> int | None:
    """Look in the CRM for the tasks :func:`_orphaned` selects (:meth:`Connector.find_tasks`, in its batch
    size) and book the answers: found, pushed (:func:`_close` then closes it); not found, nothing to
    close. Creates nothing. How many were found; ``None`` if an error stopped it (``out.error``)."""
    size = max(connector.limits.batch_size, 1)
    last_id, seen, found = 0, 0, 0
    while limit is None or seen < limit:
        chunk = size * 5 if limit is None else min(size * 5, limit - seen)
        with Session(store.engine) as s:
            rows = s.exec(sa.select(Task).where(*_orphaned(conn_name), Task.id > last_id)
                          .order_by(Task.id).limit(chunk)).scalars().all()
            # the record it was sent to: as _claim chose it, but a deleted one too (the task may outlive it)
            links: dict[str, Link] = {}
            for ln in s.exec(sa.select(Link).where(Link.lead_id.in_({t.lead_id for t in rows}),
                                                   Link.connection == conn_name)
                             .order_by(Link.deleted_at.is_(None), Link.object == connector.lead_object)).scalars():
                links[ln.lead_id] = ln  # the last wins: live first, then the lead object
        if not rows:
            return found
        last_id = rows[-1].id
        seen += len(rows)
        ops = [TaskOp(t.id, links[t.lead_id].remote_id, None, t.title, t.due_at, t.kind,
                      note=f"LeadHub {t.kind} ({t.rule})", maybe_exists=True) for t in rows if t.lead_id in links]
        unlinked = [t.id for t in rows if t.lead_id not in links]
        if unlinked:  # the hub no longer knows the lead's record there: nowhere to look
            _record_finds(store, conn_name, [TaskResult(tid, True) for tid in unlinked], unlinked, out, run_id,
                          missing="the lead has no record in this CRM any more: the task was not looked for")
        def book(results: list[TaskResult], batch: list[TaskOp]) -> None:
            nonlocal found
            found += _record_finds(store, conn_name, results, [op.task_id for op in batch], out, run_id)

        if not _in_batches(ops, size, lambda b: _found(connector.find_tasks(b), b), out, book):
            return None
    return found


def _found(hits: dict[int, str], batch: list[TaskOp]) -> list[TaskResult]:
    """:meth:`Connector.find_tasks`'s answer as results: ok for each op, ``remote_id`` when found."""
    return [TaskResult(op.task_id, True, hits.get(op.task_id)) for op in batch]


def _record_finds(store: Store, conn_name: str, results: list[TaskResult], task_ids: list[int],
                  out: TaskPushOutcome, run_id: int | None,
                  missing: str = "not in the CRM: the push whose answer was lost did not make it; nothing to close"
                  ) -> int:
    """Book lookups: found, the task is pushed; not found, nothing to close; refused, ``close_error``.
    Returns how many were found."""
    found = 0

    def settle(task: Task, res: TaskResult, now: datetime) -> bool:
        nonlocal found
        if task.remote_id is not None:  # booked meanwhile: nothing to do here
            return True
        if not res.ok:
            return False
        if res.remote_id:
            task.remote_id, task.pushed_at, task.push_error, task.close_error = res.remote_id, now, None, None
            out.pushed += 1
            found += 1
        else:
            task.remote_closed_at, task.close_error = now, missing
            out.gone += 1
        return True

    _book(store, conn_name, results, task_ids, out, run_id, settle=settle, error_field="close_error",
          what=" lookup", issue="task_close_rejected")
    return found


def _close(store: Store, conn_name: str, connector: Connector, out: TaskPushOutcome, run_id: int | None,
           limit: int | None) -> None:
    """The closing half of :func:`push_tasks`. Nothing is claimed: closing twice is harmless."""
    size = max(connector.limits.batch_size, 1)
    last_id, sent = 0, 0
    while limit is None or sent < limit:
        chunk = size * 5 if limit is None else min(size * 5, limit - sent)
        with Session(store.engine) as s:
            rows = s.exec(sa.select(Task.id, Task.remote_id, Task.state).where(*_unclosed(conn_name), Task.id > last_id)
                          .order_by(Task.id).limit(chunk)).all()
        if not rows:
            return
        last_id = rows[-1][0]
        ops = [TaskClose(tid, rid, state == "dismissed") for tid, rid, state in rows]
        if not _in_batches(ops, size, connector.close_tasks, out,
                           lambda results, batch: _record_closes(store, conn_name, results, batch, out, run_id)):
            return
        sent += len(ops)


def _record_closes(store: Store, conn_name: str, results: list[TaskResult], batch: list[TaskClose],
                   out: TaskPushOutcome, run_id: int | None) -> None:
    """Book closes: closed, or deleted in the CRM (nothing left to close there); else ``close_error``."""
    def settle(task: Task, res: TaskResult, now: datetime) -> bool:
        if res.ok:
            task.remote_closed_at, task.close_error = now, None
            out.closed += 1
        elif res.gone:
            task.remote_closed_at = now
            task.close_error = res.error or "the CRM no longer has this task"
            out.gone += 1
        return res.ok or res.gone

    _book(store, conn_name, results, [op.task_id for op in batch], out, run_id, settle=settle,
          error_field="close_error", what=" close", issue="task_close_rejected",
          remote_ids={op.task_id: op.remote_id for op in batch})


def unclosed(store: Store, connection: str | None = None) -> int:
    """Tasks closed in the hub and still open in the CRM they were pushed to, or maybe there (sent, the
    answer lost: the next push looks for them) — what the next pushes owe (for status-like reports)."""
    with Session(store.engine) as s:
        q = sa.select(sa.func.count()).select_from(Task).where(
            Task.remote_closed_at.is_(None), Task.state.in_(_CLOSED),
            sa.or_(Task.remote_id.is_not(None), Task.push_attempts > 0))
        if connection is not None:
            q = q.where(Task.connection == connection)
        return s.exec(q).one()[0]


def unpushed(store: Store, connection: str | None = None) -> int:
    """Open tasks not yet in a CRM (for ``leadhub status``-like reports)."""
    with Session(store.engine) as s:
        q = sa.select(sa.func.count()).select_from(Task).where(Task.state == "open", Task.remote_id.is_(None))
        if connection is not None:
            q = q.where(Task.connection == connection)
        return s.exec(q).one()[0]

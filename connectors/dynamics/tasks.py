"""Dynamics 365 tasks: the hub's tasks as ``task`` activities regarding the lead, by ``UpsertMultiple``.

The ``task`` table supports CreateMultiple, UpdateMultiple and UpsertMultiple (Dataverse table
reference, "Task"), and Dataverse lets a client choose a new row's primary key. So each hub task
gets a fixed ``activityid`` — a UUID5 of the lead's id and the ``leadhub-task:<id>`` marker — and a
batch is one ``POST tasks/Microsoft.Dynamics.CRM.UpsertMultiple``: a task sent twice is the same
row, never two. A target carries ``subject``, ``description`` (with the marker), ``scheduledend``
(the due time), ``prioritycode`` (2 High for breaches and escalations, else 1 Normal),
``regardingobjectid_lead_task@odata.bind`` (``/leads(id)``: the task's single-valued navigation
property to a lead; the bare ``regardingobjectid_lead`` names custom activity tables' property) and
``ownerid@odata.bind`` (``/systemusers(id)``; none: the application user owns it).

Closed tasks are read-only, so a task that may already exist (:attr:`hub.connector.TaskOp.maybe_exists`)
is looked up by its id first and left alone if found: a user who completed it keeps it completed.
That look, alone, is :meth:`DynamicsTasks.find_tasks`: one query of the batch's ids.
Like the lead writes, the batch is all or nothing (standard tables): a refused one fails with the
first error and the core splits it until the bad task stands alone.

Closing (:meth:`DynamicsTasks.close_tasks`): one ``POST tasks/Microsoft.Dynamics.CRM.UpdateMultiple``
per batch setting ``statecode``/``statuscode`` (the Web API's SetState: PATCH of those two columns) —
1 Completed / 5 Completed for a task done in the hub, 2 Canceled / 6 Canceled for one dismissed
(``TaskState``: 0 Open, 1 Completed, 2 Canceled). All or nothing again: if Dataverse refuses the
batch (a task deleted there: "task With Id = … Does Not Exist"), one query of the batch's ids tells
the deleted tasks (gone: nothing to close) and those a user already closed (left as they are) from
the open ones, which are sent again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from hub.connector import REJECTING, TaskClose, TaskOp, TaskResult
from hub.errors import AuthError, ConnectorError, RateLimitError, TransientError

__all__ = ["CANCELED", "COMPLETED", "TASK_NAMESPACE", "DynamicsTasks", "activity_id"]

#: namespace of the hub's task ids in Dataverse (any fixed UUID; changing it would re-create tasks)
TASK_NAMESPACE = uuid.UUID("5b0c1f6e-2d4a-4c51-9a43-6f1d0e7a2b90")
COMPLETED, CANCELED = (1, 5), (2, 6)  # task (statecode, statuscode) when done, when dismissed


def activity_id(op: TaskOp) -> str:
    """The task's fixed ``activityid``: the same for every push of one hub task to one lead."""
    return str(uuid.uuid5(TASK_NAMESPACE, f"{op.lead_remote_id.lower()}/{op.marker}"))


class DynamicsTasks:
    """Mixin for :class:`connectors.dynamics.DynamicsConnector`: :meth:`write_tasks`, :meth:`find_tasks`,
    :meth:`close_tasks`."""

    can_write_tasks = True
    _send: Any
    _query: Any

    def write_tasks(self, ops: Sequence[TaskOp]) -> list[TaskResult]:
        ids = {op.task_id: activity_id(op) for op in ops}
        there = self.find_tasks([op for op in ops if op.maybe_exists])
        targets = [self._task_target(op, ids[op.task_id]) for op in ops if op.task_id not in there]
        if targets:
            self._send("POST", "tasks/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": targets})
        return [TaskResult(op.task_id, True, ids[op.task_id]) for op in ops]

    def find_tasks(self, ops: Sequence[TaskOp]) -> dict[int, str]:
        ids = {op.task_id: activity_id(op) for op in ops}
        if not ids:
            return {}
        there = {r["activityid"].lower() for r in self._query("tasks", ["activityid"], "activityid", ids.values())}
        return {tid: aid for tid, aid in ids.items() if aid in there}

    def close_tasks(self, ops: Sequence[TaskClose]) -> list[TaskResult]:
        try:
            self._close(ops)
            return [TaskResult(op.task_id, True, op.remote_id) for op in ops]
        except ConnectorError as exc:
            if isinstance(exc, (AuthError, RateLimitError, TransientError)) or exc.status not in (*REJECTING, 404):
                raise
            refusal = exc.vendor_message or str(exc)
        rows = {r["activityid"].lower(): r for r in self._query("tasks", ["activityid", "statecode"], "activityid",
                                                                  [op.remote_id for op in ops])}
        results: dict[int, TaskResult] = {}
        for op in ops:
            row = rows.get(op.remote_id.lower())
            if row is None:  # deleted in Dynamics
                words = refusal if op.remote_id.lower() in refusal.lower() else "the task is no longer in Dataverse"
                results[op.task_id] = TaskResult(op.task_id, False, op.remote_id, words, gone=True)
            elif row.get("statecode") not in (None, 0):  # a user closed it there already: theirs stands
                results[op.task_id] = TaskResult(op.task_id, True, op.remote_id)
        rest = [op for op in ops if op.task_id not in results]
        if rest:  # refused again: raised, and the core splits the batch
            self._close(rest)
        return [results.get(op.task_id) or TaskResult(op.task_id, True, op.remote_id) for op in ops]

    def _close(self, ops: Sequence[TaskClose]) -> None:
        targets = [{"@odata.type": "Microsoft.Dynamics.CRM.task", "activityid": op.remote_id,
                    **dict(zip(("statecode", "statuscode"), CANCELED if op.dismissed else COMPLETED))} for op in ops]
        self._send("POST", "tasks/Microsoft.Dynamics.CRM.UpdateMultiple", json={"Targets": targets})

    @staticmethod
    def _task_target(op: TaskOp, activityid: str) -> dict[str, Any]:
        target: dict[str, Any] = {"@odata.type": "Microsoft.Dynamics.CRM.task", "activityid": activityid,
                                  "subject": op.title[:200], "description": op.body[:2000],
                                  "prioritycode": 2 if op.urgent else 1,
                                  "regardingobjectid_lead_task@odata.bind": f"/leads({op.lead_remote_id})"}
        if op.due_at is not None:
            due = op.due_at if op.due_at.tzinfo else op.due_at.replace(tzinfo=UTC)
            target["scheduledend"] = due.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if op.owner_remote:
            target["ownerid@odata.bind"] = f"/systemusers({op.owner_remote})"
        return target

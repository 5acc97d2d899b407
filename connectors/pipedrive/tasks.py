"""Pipedrive tasks: the hub's tasks as activities of type ``task`` on the lead (API v2).

``POST /api/v2/activities`` per task — there is no batch endpoint; several run at once on the
connector's small pool, inside the burst window, like lead writes — with ``subject``, ``type``
``task``, ``owner_id`` (the assignee; none: the token's user), ``lead_id``, ``due_date`` and
``due_time`` (UTC, ``HH:MM``) and ``note`` carrying the ``leadhub-task:<id>`` marker. The brief's
``POST /api/v1/activities`` is no longer in Pipedrive's v1 spec: activities are a v2 object. A lead
Pipedrive has converted is deleted, its deal living on; when the connector knows the deal (it read
the conversion), the activity goes on the deal (``deal_id``) instead.

Activities have no external id, so a task that may already exist
(:attr:`hub.connector.TaskOp.maybe_exists`) is looked for first: the lead's (or deal's)
activities, ``GET /api/v2/activities?lead_id=…``, their notes searched for the marker. That list
is not a search index, so a task created a moment ago is found. That look, alone, is
:meth:`PipedriveTasks.find_tasks`: one walk of each lead's (or deal's) activities for all its tasks.

Closing (:meth:`PipedriveTasks.close_tasks`): ``PATCH /api/v2/activities/{id}`` with ``done: true``
per task (5 tokens; no batch endpoint, so several at once on the same pool). Pipedrive has no
canceled state: a dismissed task is marked done too. An activity deleted in Pipedrive answers 404:
nothing is left to close.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from typing import Any

from hub.connector import TaskClose, TaskOp, TaskResult
from hub.errors import AuthError, RateLimitError

from .api import PipedriveApi, Refused

__all__ = ["PipedriveTasks"]


class PipedriveTasks:
    """Mixin for :class:`connectors.pipedrive.PipedriveConnector`: :meth:`write_tasks`, :meth:`find_tasks`,
    :meth:`close_tasks`."""

    can_write_tasks = True
    api: PipedriveApi
    workers: int

    def write_tasks(self, ops: Sequence[TaskOp]) -> list[TaskResult]:
        return self._each_task(self._write_task, ops)

    def close_tasks(self, ops: Sequence[TaskClose]) -> list[TaskResult]:
        return self._each_task(self._close_task, ops)

    def find_tasks(self, ops: Sequence[TaskOp]) -> dict[int, str]:
        by_target: dict[tuple[str, Any], list[TaskOp]] = {}
        for op in ops:  # no batch lookup in Pipedrive: one list per lead (or deal), for all its tasks
            by_target.setdefault(self._target(op), []).append(op)
        found: dict[int, str] = {}
        for (key, value), mine in by_target.items():
            found.update(self._find_tasks(mine, key, value))
        return found

    def _close_task(self, op: TaskClose) -> TaskResult:
        try:
            self.api.call("PATCH", f"/activities/{op.remote_id}", v2=True, body={"done": True})
        except Refused as exc:
            return TaskResult(op.task_id, False, op.remote_id, exc.vendor_message or str(exc), gone=exc.status == 404)
        return TaskResult(op.task_id, True, op.remote_id)

    def _each_task(self, one: Callable[[Any], TaskResult], ops: Sequence[Any]) -> list[TaskResult]:
        """``one`` per op, several at once on the connector's small pool."""
        if len(ops) <= 1 or self.workers == 1:
            return [one(op) for op in ops]
        with ThreadPoolExecutor(min(self.workers, len(ops)), "pipedrive-task") as pool:
            futures = [pool.submit(one, op) for op in ops]
        results, fatal = [], None
        for op, future in zip(ops, futures):
            exc = future.exception()
            if exc is None:
                results.append(future.result())
            elif isinstance(exc, (AuthError, RateLimitError)):
                fatal = fatal or exc
            else:  # the CRM unreachable: this one is retried next run, the others stand
                results.append(TaskResult(op.task_id, False, None, str(exc), retryable=True))
        if fatal is not None:  # next run, a create that went through is found (maybe_exists), a close resent
            raise fatal
        return results

    def _target(self, op: TaskOp) -> tuple[str, Any]:
        known = self.api.leads.take(op.lead_remote_id) or {}
        return ("deal_id", known["deal_id"]) if known.get("deal_id") else ("lead_id", op.lead_remote_id)

    def _write_task(self, op: TaskOp) -> TaskResult:
        key, value = self._target(op)
        try:
            if op.maybe_exists:
                found = self._find_tasks([op], key, value).get(op.task_id)
                if found is not None:
                    return TaskResult(op.task_id, True, found)
            body: dict[str, Any] = {"subject": op.title, "type": "task", key: value, "note": op.body, "done": False}
            if op.owner_remote and op.owner_remote.isdigit():
                body["owner_id"] = int(op.owner_remote)
            if op.due_at is not None:
                due = (op.due_at if op.due_at.tzinfo else op.due_at.replace(tzinfo=UTC)).astimezone(UTC)
                body["due_date"], body["due_time"] = due.strftime("%Y-%m-%d"), due.strftime("%H:%M")
            made = self.api.call("POST", "/activities", v2=True, body=body)["data"]
            return TaskResult(op.task_id, True, str(made["id"]))
        except Refused as exc:
            return TaskResult(op.task_id, False, None, exc.vendor_message or str(exc))

    def _find_tasks(self, ops: list[TaskOp], key: str, value: Any) -> dict[int, str]:
        """Hub task id -> activity id, for the ``ops`` whose activity is on the lead (``key``/``value``:
        ``lead_id`` or ``deal_id``, see :meth:`_target`); the first that carries each marker."""
        found: dict[int, str] = {}
        cursor = None
        while True:
            rows, cursor = self.api.v2_list("/activities", {key: value, "limit": 500, "cursor": cursor})
            for op in ops:
                if op.task_id not in found:
                    hit = next((str(a["id"]) for a in rows if op.marked(a.get("note"))), None)
                    if hit is not None:
                        found[op.task_id] = hit
            if len(found) == len(ops) or not cursor:
                return found

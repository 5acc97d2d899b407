"""HubSpot tasks: the hub's tasks created on the contact, through the official client's tasks API.

``POST /crm/v3/objects/tasks/batch/create`` (100 inputs), each task associated with its contact in
the same call (association type 204, task to contact, ``HUBSPOT_DEFINED``) and owned by
``hubspot_owner_id``; ``hs_timestamp`` (required: the due date, or now when the task has none),
``hs_task_subject``, ``hs_task_body`` (carrying the ``leadhub-task:<id>`` marker),
``hs_task_status`` ``NOT_STARTED``, ``hs_task_type`` ``TODO`` and ``hs_task_priority`` (``HIGH``
for breaches and escalations). Results come back keyed by ``objectWriteTraceId`` (the hub's task
id); a 207 names the refused inputs in ``context.objectWriteTraceId``.

Tasks have no unique property unless a portal adds one, so a task that may already exist
(:attr:`hub.connector.TaskOp.maybe_exists`) is looked for first: the contact's tasks through the
v4 associations batch read (contacts to tasks), then their bodies through the tasks batch read, for
the marker. Neither is the search API, so a task made a moment ago is found (search lags writes).
The same look, alone, is :meth:`HubSpotTasks.find_tasks`.

Closing (:meth:`HubSpotTasks.close_tasks`): ``POST /crm/v3/objects/tasks/batch/update`` (100 inputs)
with ``hs_task_status`` ``COMPLETED`` — HubSpot has no canceled state, so a dismissed task is completed
too. A task deleted in HubSpot comes back as an ``OBJECT_NOT_FOUND`` error naming its id (in a 207);
when none of the batch went through HubSpot refuses it whole with a 404, and one batch read of the
tasks tells the deleted ones from the others, which are sent again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from hub.connector import TaskClose, TaskOp, TaskResult
from hub.errors import ConnectorError

from .answer import to_answer

__all__ = ["TASK_TO_CONTACT", "HubSpotTasks"]

TASK_TO_CONTACT = 204  # HubSpot-defined association type: task to contact
_BATCH = 100


def _words(err: dict[str, Any]) -> str:
    """HubSpot's own words for an error: ``CATEGORY: message``."""
    return f"{err.get('category', 'ERROR')}: {err.get('message', '')}"


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class HubSpotTasks:
    """Mixin for :class:`connectors.hubspot.HubSpotConnector`: :meth:`write_tasks`, :meth:`find_tasks`,
    :meth:`close_tasks`."""

    can_write_tasks = True
    client: Any
    guard: Any
    settings: Any

    def _task_call(self, kind: str, fn: Any, *args: Any, **kw: Any) -> dict[str, Any]:
        resp = self.guard.call(lambda: fn(*args, _preload_content=False, _request_timeout=self.settings.timeout,
                                          **kw), kind=kind, to_answer=to_answer)
        return json.loads(resp.data) if resp.data else {}

    def write_tasks(self, ops: Sequence[TaskOp]) -> list[TaskResult]:
        from hubspot.crm.objects.tasks import (
            AssociationSpec,
            BatchInputSimplePublicObjectBatchInputForCreate,
            PublicAssociationsForObject,
            PublicObjectId,
            SimplePublicObjectBatchInputForCreate,
        )

        found = self.find_tasks([op for op in ops if op.maybe_exists])
        results = {tid: TaskResult(tid, True, rid) for tid, rid in found.items()}
        creates = [op for op in ops if op.task_id not in found]
        if creates:
            body = BatchInputSimplePublicObjectBatchInputForCreate(inputs=[SimplePublicObjectBatchInputForCreate(
                properties=self._task_properties(op), object_write_trace_id=str(op.task_id),
                associations=[PublicAssociationsForObject(
                    to=PublicObjectId(id=op.lead_remote_id),
                    types=[AssociationSpec(association_category="HUBSPOT_DEFINED",
                                           association_type_id=TASK_TO_CONTACT)])]) for op in creates])
            data = self._task_call("task_create", self.client.crm.objects.tasks.batch_api.create, body)
            for item in data.get("results", []):
                trace = str(item.get("objectWriteTraceId") or "")
                if trace.isdigit():
                    results[int(trace)] = TaskResult(int(trace), True, str(item["id"]))
            for err in data.get("errors", []):
                text = _words(err)
                for trace in (err.get("context") or {}).get("objectWriteTraceId") or []:
                    if str(trace).isdigit():
                        results.setdefault(int(trace), TaskResult(int(trace), False, None, text))
        return [results.get(op.task_id) or TaskResult(op.task_id, False, None, "no answer for this task",
                                                        retryable=True) for op in ops]

    def close_tasks(self, ops: Sequence[TaskClose]) -> list[TaskResult]:
        results: dict[int, TaskResult] = {}
        sent = list(ops)
        try:
            data = self._close_call(sent)
        except ConnectorError as exc:
            if exc.status != 404:
                raise
            # refused whole: no input went through; the tasks HubSpot still has are sent again
            there = self._task_ids([op.remote_id for op in sent])
            try:
                words = _words(json.loads(exc.vendor_message))
            except (ValueError, AttributeError):
                words = exc.vendor_message
            for op in sent:
                if op.remote_id not in there:
                    results[op.task_id] = TaskResult(op.task_id, False, op.remote_id, words, gone=True)
            sent = [op for op in sent if op.remote_id in there]
            data = self._close_call(sent) if sent else {}
        by_remote = {op.remote_id: op for op in sent}
        for item in data.get("results", []):
            if (op := by_remote.get(str(item.get("id")))) is not None:
                results[op.task_id] = TaskResult(op.task_id, True, op.remote_id)
        for err in data.get("errors", []):
            gone = err.get("category") == "OBJECT_NOT_FOUND"
            for rid in (err.get("context") or {}).get("ids") or []:
                if (op := by_remote.get(str(rid))) is not None:
                    results.setdefault(op.task_id, TaskResult(op.task_id, False, op.remote_id, _words(err), gone=gone))
        return [results.get(op.task_id) or TaskResult(op.task_id, False, op.remote_id, "no answer for this task",
                                                        retryable=True) for op in ops]

    def _close_call(self, ops: list[TaskClose]) -> dict[str, Any]:
        from hubspot.crm.objects.tasks import BatchInputSimplePublicObjectBatchInput, SimplePublicObjectBatchInput

        body = BatchInputSimplePublicObjectBatchInput(inputs=[SimplePublicObjectBatchInput(
            id=op.remote_id, properties={"hs_task_status": "COMPLETED"}) for op in ops])
        return self._task_call("task_update", self.client.crm.objects.tasks.batch_api.update, body)

    def _task_ids(self, ids: list[str]) -> set[str]:
        """The ones of ``ids`` that are tasks HubSpot has (not deleted)."""
        from hubspot.crm.objects.tasks import BatchReadInputSimplePublicObjectId, SimplePublicObjectId

        found: set[str] = set()
        for part in _chunks(sorted(set(ids)), _BATCH):
            data = self._task_call("task_read", self.client.crm.objects.tasks.batch_api.read,
                                   BatchReadInputSimplePublicObjectId(
                                       inputs=[SimplePublicObjectId(id=i) for i in part],
                                       properties=["hs_task_status"], properties_with_history=[]))
            found.update(str(r["id"]) for r in data.get("results", []))
        return found

    @staticmethod
    def _task_properties(op: TaskOp) -> dict[str, str]:
        due = op.due_at or datetime.now(UTC)
        props = {"hs_timestamp": str(int(due.timestamp() * 1000)), "hs_task_subject": op.title[:255],
                 "hs_task_body": op.body, "hs_task_status": "NOT_STARTED", "hs_task_type": "TODO",
                 "hs_task_priority": "HIGH" if op.urgent else "MEDIUM"}
        if op.owner_remote:
            props["hubspot_owner_id"] = op.owner_remote
        return props

    def find_tasks(self, ops: Sequence[TaskOp]) -> dict[int, str]:
        """Hub task id -> HubSpot task id, for the ops whose task is already on their contact."""
        if not ops:
            return {}
        from hubspot.crm.associations.v4 import (
            BatchInputPublicFetchAssociationsBatchRequest,
            PublicFetchAssociationsBatchRequest,
        )
        from hubspot.crm.objects.tasks import BatchReadInputSimplePublicObjectId, SimplePublicObjectId

        task_ids: set[str] = set()
        for part in _chunks(sorted({op.lead_remote_id for op in ops}), _BATCH):
            inputs = [PublicFetchAssociationsBatchRequest(id=c) for c in part]
            while inputs:
                data = self._task_call("task_associations", self.client.crm.associations.v4.batch_api.get_page,
                                       "contacts", "tasks",
                                       BatchInputPublicFetchAssociationsBatchRequest(inputs=inputs))
                inputs = []
                for item in data.get("results", []):  # contacts without tasks come back as errors
                    task_ids.update(str(t["toObjectId"]) for t in item.get("to", []))
                    after = ((item.get("paging") or {}).get("next") or {}).get("after")
                    if after:
                        inputs.append(PublicFetchAssociationsBatchRequest(id=str(item["from"]["id"]), after=after))
        bodies: dict[str, str] = {}
        for part in _chunks(sorted(task_ids), _BATCH):
            data = self._task_call("task_read", self.client.crm.objects.tasks.batch_api.read,
                                   BatchReadInputSimplePublicObjectId(
                                       inputs=[SimplePublicObjectId(id=i) for i in part],
                                       properties=["hs_task_body"], properties_with_history=[]))
            bodies.update({str(r["id"]): (r.get("properties") or {}).get("hs_task_body") or ""
                           for r in data.get("results", [])})
        found = {}
        for op in ops:
            hit = min((rid for rid, text in bodies.items() if op.marked(text)), key=int, default=None)
            if hit is not None:
                found[op.task_id] = hit
        return found

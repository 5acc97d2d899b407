"""Salesforce tasks: the hub's tasks as ``Task`` records on the lead, through sObject Collections.

One ``POST composite/sobjects`` (≤ 200 records, ``allOrNone: false``) creates a batch: ``Subject``,
``ActivityDate`` (the due day, UTC: a date field), ``Status`` ``Not Started``, ``Priority``
(``High`` for breaches and escalations, else ``Normal``), ``OwnerId`` (the assignee's user; the
integration user when the assignee has none), ``WhoId`` (the Lead) and ``Description`` carrying the
``leadhub-task:<id>`` marker. A converted lead cannot be referenced ("cannot reference converted
lead"), so a task for one goes to its Opportunity (``WhatId``) instead; one SOQL query per batch
learns which leads are converted.

Task has no external id unless an admin adds a custom field to Activity, so a task that may
already exist (:attr:`hub.connector.TaskOp.maybe_exists`) is looked for first: one query for the
tasks on those leads (``WhoId IN`` … ``OR WhatId IN`` …) whose ``Description`` carries the marker
(a long text area cannot be filtered in SOQL, so the marker is matched here). The same look, alone,
is :meth:`SalesforceTasks.find_tasks` (its query and the converted leads' one).

Closing (:meth:`SalesforceTasks.close_tasks`): one ``PATCH composite/sobjects`` (≤ 200 records,
``allOrNone: false``) setting each ``Status`` to ``Completed``, the default Task Status value whose
``IsClosed`` is true (a dismissed task too: the stock picklist has no canceled value). A task deleted
in Salesforce answers ``ENTITY_IS_DELETED`` (in the recycle bin) or ``INVALID_CROSS_REFERENCE_KEY``
on its own id (gone for good): either means there is nothing left to close.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from hub.connector import TaskClose, TaskOp, TaskResult

from .wire import RETRYABLE, error_codes

__all__ = ["SalesforceTasks"]

_ID = re.compile(r"[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?")
_GONE = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"})  # on the record's own id: deleted


def _ids(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in sorted(set(values)) if _ID.fullmatch(v))


class SalesforceTasks:
    """Mixin for :class:`connectors.salesforce.SalesforceConnector`: :meth:`write_tasks`,
    :meth:`find_tasks`, :meth:`close_tasks`."""

    can_write_tasks = True
    _pages: Any
    _collection: Any

    def write_tasks(self, ops: Sequence[TaskOp]) -> list[TaskResult]:
        deals = self._converted_deals([op.lead_remote_id for op in ops])
        found = self._existing_tasks([op for op in ops if op.maybe_exists], deals)
        results = {tid: TaskResult(tid, True, rid) for tid, rid in found.items()}
        creates = [op for op in ops if op.task_id not in found]
        if creates:
            answers = self._collection("POST", "composite/sobjects", [self._task_record(op, deals) for op in creates])
            for op, r in zip(creates, answers):
                if r.get("success"):
                    results[op.task_id] = TaskResult(op.task_id, True, r.get("id"))
                else:
                    text = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in r.get("errors") or [])
                    results[op.task_id] = TaskResult(op.task_id, False, None, text or "refused without a reason",
                                                     retryable=bool(error_codes(r) & RETRYABLE))
        return [results.get(op.task_id) or TaskResult(op.task_id, False, None, "no answer for this task",
                                                        retryable=True) for op in ops]

    def find_tasks(self, ops: Sequence[TaskOp]) -> dict[int, str]:
        if not ops:
            return {}
        return self._existing_tasks(list(ops), self._converted_deals([op.lead_remote_id for op in ops]))

    def close_tasks(self, ops: Sequence[TaskClose]) -> list[TaskResult]:
        records = [{"attributes": {"type": "Task"}, "Id": op.remote_id, "Status": "Completed"} for op in ops]
        answers = self._collection("PATCH", "composite/sobjects", records)
        results = []
        for op, r in zip(ops, answers):
            if r.get("success"):
                results.append(TaskResult(op.task_id, True, op.remote_id))
                continue
            errors = r.get("errors") or []
            text = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errors) or "refused without a reason"
            gone = any(e.get("statusCode") in _GONE and not set(e.get("fields") or []) - {"Id"} for e in errors)
            results.append(TaskResult(op.task_id, False, op.remote_id, text, gone=gone,
                                      retryable=bool(error_codes(r) & RETRYABLE)))
        return results + [TaskResult(op.task_id, False, op.remote_id, "no answer for this task", retryable=True)
                          for op in ops[len(answers):]]

    @staticmethod
    def _task_record(op: TaskOp, deals: dict[str, str | None]) -> dict[str, Any]:
        record: dict[str, Any] = {"attributes": {"type": "Task"}, "Subject": op.title[:255],
                                  "Status": "Not Started", "Priority": "High" if op.urgent else "Normal",
                                  "Description": op.body}
        if op.due_at is not None:  # a date field: the due day in UTC
            due = op.due_at if op.due_at.tzinfo else op.due_at.replace(tzinfo=UTC)
            record["ActivityDate"] = due.astimezone(UTC).date().isoformat()
        if op.owner_remote:
            record["OwnerId"] = op.owner_remote
        deal = deals.get(op.lead_remote_id)
        if deal:
            record["WhatId"] = deal  # a converted lead: its opportunity
        else:
            record["WhoId"] = op.lead_remote_id
        return record

    def _converted_deals(self, lead_ids: list[str]) -> dict[str, str | None]:
        """Converted lead id -> its opportunity id (None when converted without one)."""
        ids = _ids(lead_ids)
        if not ids:
            return {}
        out: dict[str, str | None] = {}
        for batch in self._pages(f"SELECT Id, ConvertedOpportunityId FROM Lead WHERE IsConverted = true "
                                 f"AND Id IN ({ids})"):
            out.update({rec["Id"]: rec.get("ConvertedOpportunityId") for rec in batch})
        return out

    def _existing_tasks(self, ops: list[TaskOp], deals: dict[str, str | None]) -> dict[int, str]:
        """Hub task id -> Salesforce task id, for the ops whose task is already on their lead (or deal)."""
        if not ops:
            return {}
        whos = _ids([op.lead_remote_id for op in ops])
        if not whos:  # no valid lead id: no task can be on them (and ``IN ()`` is not SOQL)
            return {}
        whats = _ids([d for op in ops if (d := deals.get(op.lead_remote_id))])
        where = f"WhoId IN ({whos})" + (f" OR WhatId IN ({whats})" if whats else "")
        bodies: dict[str, str] = {}
        for batch in self._pages(f"SELECT Id, Description FROM Task WHERE {where} ORDER BY Id"):
            bodies.update({rec["Id"]: rec.get("Description") or "" for rec in batch})
        found = {}
        for op in ops:
            hit = next((rid for rid, text in bodies.items() if op.marked(text)), None)
            if hit is not None:
                found[op.task_id] = hit
        return found

"""The HubSpot sandbox's tasks (CRM v3 tasks object) and their associations to contacts (v4 batch read).

Served, as the official specs (Tasks v3, Associations v4) shape them::

    POST   /crm/v3/objects/tasks/batch/create   ≤ 100 inputs {properties, associations, objectWriteTraceId}
    POST   /crm/v3/objects/tasks/batch/update   ≤ 100 inputs {id, properties} (``hs_task_status`` COMPLETED…)
    POST   /crm/v3/objects/tasks/batch/read     ≤ 100 ids, with the properties asked for
    GET    /crm/v3/objects/tasks/{taskId}        one task (``associations=contacts`` lists its contacts)
    DELETE /crm/v3/objects/tasks/{taskId}        archive it (as a user deleting it in HubSpot)
    POST /crm/v4/associations/{from}/{to}/batch/read   contacts <-> tasks, with each association's types

Checks on create: ``hs_timestamp`` is required; ``hs_task_status``, ``hs_task_priority`` and
``hs_task_type`` take their options; ``hubspot_owner_id`` must be an owner; unknown properties are
refused; an association must name a live contact and a task-to-contact type (204,
``HUBSPOT_DEFINED``). A refused input fails the whole batch when nothing else was created, else
comes back in a 207's ``errors`` (``context.objectWriteTraceId``), like the contacts batches. An
update checks the same options (closing a task is ``hs_task_status`` ``COMPLETED``, harmless twice);
an id that is no task (never one, or archived) is an ``OBJECT_NOT_FOUND`` error (``context.ids``):
the whole batch's 404 when no input went through, else in a 207. Archived tasks are gone from every
read. A contact without tasks comes back from the association read as an error
(``crm.associations.NO_ASSOCIATIONS_FOUND``). Tasks are not searchable here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from hub.testing.sandbox import Call, Reject

from .model import _Failure, _instant, _iso

__all__ = ["TASK_OPTIONS", "_Tasks"]

_BASE = "/crm/v3/objects/tasks"
TASK_OPTIONS = {"hs_task_status": ("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"),
                "hs_task_priority": ("NONE", "LOW", "MEDIUM", "HIGH"),
                "hs_task_type": ("TODO", "CALL", "EMAIL", "LINKED_IN", "MEETING")}
_STRINGS = ("hs_task_subject", "hs_task_body", "hs_timestamp", "hubspot_owner_id", *TASK_OPTIONS)
_TO_CONTACT = 204
_FIRST_ID = 70_000_000_001


class _Tasks:
    """Mixin for :class:`HubSpotSandbox` (placed before ``_Routes``): tasks and task-contact associations."""

    owners: list[dict[str, Any]]
    clock: Any
    lock: Any
    json: Callable[..., Response]
    _inputs: Callable[..., tuple[dict[str, Any], list[dict[str, Any]]]]
    _each: Callable[..., Response]
    _answer: Callable[..., Response]
    _find: Callable[..., Any]
    _no_duplicates: Callable[[list[str]], None]

    def routes(self) -> list[tuple[str, str, Callable[[Call], Response]]]:
        return [*super().routes(),  # type: ignore[misc]
                ("POST", f"{_BASE}/batch/create", self._task_batch_create),
                ("POST", f"{_BASE}/batch/update", self._task_batch_update),
                ("POST", f"{_BASE}/batch/read", self._task_batch_read),
                ("GET", f"{_BASE}/{{taskId}}", self._task_get),
                ("DELETE", f"{_BASE}/{{taskId}}", self._task_archive),
                ("POST", "/crm/v4/associations/{fromObjectType}/{toObjectType}/batch/read",
                 self._association_read)]

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """Tasks by id: ``{"properties": {...}, "contacts": [contact ids]}`` (created by the API)."""
        if not hasattr(self, "_task_rows"):
            self._task_rows: dict[str, dict[str, Any]] = {}
        return self._task_rows

    @property
    def archived_tasks(self) -> dict[str, dict[str, Any]]:
        """Tasks deleted (archived) in HubSpot, by id: gone from every read and write."""
        if not hasattr(self, "_archived_task_rows"):
            self._archived_task_rows: dict[str, dict[str, Any]] = {}
        return self._archived_task_rows

    def archive_task(self, tid: str) -> None:
        """Delete a task as a HubSpot user would."""
        with self.lock:
            row = self.tasks.pop(str(tid), None)
            if row is not None:
                self.archived_tasks[str(tid)] = row

    # -- writes ------------------------------------------------------------------------------
    def _task_props(self, raw: Any, now: int, current: dict[str, str] | None = None) -> dict[str, str]:
        """Checked properties: a new task's (``current`` None), or ``current`` updated."""
        if not isinstance(raw, dict):
            raise _Failure(400, "VALIDATION_ERROR", "Invalid input: properties must be an object")
        details = []
        clean: dict[str, str] = {}
        for name, value in raw.items():
            text = "" if value is None else str(value)
            if name not in _STRINGS:
                details.append((name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
            elif name in TASK_OPTIONS and text and text not in TASK_OPTIONS[name]:
                details.append((name, "INVALID_OPTION", f"{text} was not one of the allowed options: "
                                                        f"[{', '.join(TASK_OPTIONS[name])}]"))
            elif name == "hubspot_owner_id" and text and text not in {o["id"] for o in self.owners}:
                details.append((name, "INVALID_OPTION", f"{text} was not one of the allowed options"))
            elif name == "hs_timestamp" and text:
                try:
                    clean[name] = _iso(_instant(text))
                except ValueError:
                    details.append((name, "INVALID_DATETIME", f"{text} is not a valid datetime for property "
                                                              f"{name}"))
                continue
            if text or current is not None:
                clean[name] = text
        if not (clean if current is None else {**current, **clean}).get("hs_timestamp") \
                and not any(n == "hs_timestamp" for n, _, _ in details):
            details.append(("hs_timestamp", "REQUIRED_PROPERTY", "hs_timestamp is required"))
        if details:
            shown = [{"isValid": False, "message": m, "error": c, "name": n, "localizedErrorMessage": m}
                     for n, c, m in details]
            raise _Failure(400, "VALIDATION_ERROR", "Property values were not valid: " + json.dumps(shown),
                           [{"message": m, "code": c, "in": n, "context": {"propertyName": [n]}}
                            for n, c, m in details])
        stamp = _iso(now)
        if current is not None:  # an empty value clears the property
            merged = {**current, **clean, "hs_lastmodifieddate": stamp}
            return {k: v for k, v in merged.items() if v != ""}
        return {"hs_task_status": "NOT_STARTED", **clean, "hs_createdate": stamp, "hs_lastmodifieddate": stamp}

    def _task_contacts(self, raw: Any) -> list[str]:
        contacts = []
        for assoc in raw or []:
            to = (assoc or {}).get("to") or {}
            types = (assoc or {}).get("types") or []
            if not types or any(t.get("associationCategory") != "HUBSPOT_DEFINED"
                                or t.get("associationTypeId") != _TO_CONTACT for t in types):
                raise _Failure(400, "VALIDATION_ERROR", f"{types} is not a valid association type between "
                                                        "tasks and contacts")
            rec = self._find(to.get("id"))
            if rec is None:
                raise _Failure(400, "VALIDATION_ERROR", f"One or more associations are invalid: contact "
                                                        f"{to.get('id')} does not exist")
            contacts.append(str(rec.id))
        return contacts

    def _task_batch_create(self, call: Call) -> Response:
        _, inputs = self._inputs(call)
        rows = self.tasks

        def write(item: dict[str, Any], now: int) -> dict[str, Any]:
            props = self._task_props(item.get("properties"), now)
            contacts = self._task_contacts(item.get("associations"))
            tid = str(_FIRST_ID + len(rows) + len(self.archived_tasks))
            rows[tid] = {"properties": {**props, "hs_object_id": tid}, "contacts": contacts, "created": now}
            return self._task_render(tid, list(props))

        return self._each(inputs, lambda item: {}, write)  # 200, as the Tasks v3 spec has it (contacts: 201)

    def _task_batch_update(self, call: Call) -> Response:
        _, inputs = self._inputs(call)
        self._no_duplicates([f"hs_object_id:{item.get('id')}" for item in inputs])
        rows = self.tasks

        def write(item: dict[str, Any], now: int) -> dict[str, Any]:
            tid = str(item.get("id"))
            if item.get("idProperty") not in (None, "hs_object_id") or tid not in rows:
                raise _Failure(404, "OBJECT_NOT_FOUND", f"Could not find a task with "
                                                        f"{item.get('idProperty') or 'id'} {item.get('id')}")
            clean = self._task_props(item.get("properties"), now, rows[tid]["properties"])
            rows[tid]["properties"] = clean
            return self._task_render(tid, [n for n in (item.get("properties") or {}) if n in clean])

        return self._each(inputs, lambda item: {"ids": [str(item.get("id"))]}, write)

    def _task_archive(self, call: Call) -> Response:
        self.archive_task(call.params["taskId"])
        return Response(status_code=204)

    # -- reads -------------------------------------------------------------------------------
    def _task_render(self, tid: str, wanted: list[str] | None) -> dict[str, Any]:
        row = self.tasks[tid]
        props = row["properties"]
        names = wanted or ["hs_createdate", "hs_lastmodifieddate", "hs_object_id"]
        return {"id": tid, "properties": {n: props.get(n) for n in dict.fromkeys([*names, "hs_object_id"])},
                "createdAt": props["hs_createdate"], "updatedAt": props["hs_lastmodifieddate"], "archived": False}

    def _task_batch_read(self, call: Call) -> Response:
        body, inputs = self._inputs(call)
        wanted = body.get("properties") or None
        results, missing = [], []
        for item in inputs:
            tid = str(item.get("id"))
            if tid in self.tasks:
                results.append(self._task_render(tid, wanted))
            else:
                missing.append(tid)
        failure = _Failure(404, "OBJECT_NOT_FOUND", "Could not get some TASK objects, they may be deleted or not "
                                                    "exist. Check that ids are valid.")
        return self._answer(results, [(failure, {"ids": missing})] if missing else [],
                            _iso(self.clock.now_ms()), partial=True)

    def _task_get(self, call: Call) -> Response:
        tid = call.params["taskId"]
        if tid not in self.tasks:
            raise Reject(404, "resource not found")
        out = self._task_render(tid, call.query_list("properties") or None)
        if "contacts" in call.query_list("associations"):
            out["associations"] = {"contacts": {"results": [{"id": c, "type": "task_to_contact"}
                                                            for c in self.tasks[tid]["contacts"]]}}
        return self.json(out)

    def _association_read(self, call: Call) -> Response:
        pair = (call.params["fromObjectType"], call.params["toObjectType"])
        kinds = {"contacts": "contacts", "contact": "contacts", "0-1": "contacts",
                 "tasks": "tasks", "task": "tasks", "0-27": "tasks"}
        route = (kinds.get(pair[0]), kinds.get(pair[1]))
        if route not in (("contacts", "tasks"), ("tasks", "contacts")):
            raise Reject(400, f"Unable to infer object type from: {pair[0]} to {pair[1]}")
        _, inputs = self._inputs(call)
        results, errors = [], []
        for item in inputs:
            ident = str(item.get("id"))
            if route == ("contacts", "tasks"):  # type 203 contact -> task, 204 task -> contact
                to = [(tid, _TO_CONTACT - 1) for tid, row in self.tasks.items() if ident in row["contacts"]]
            else:
                to = [(c, _TO_CONTACT) for c in (self.tasks.get(ident) or {}).get("contacts", [])]
            start = int(item.get("after") or 0)
            if not to:
                errors.append((_Failure(404, "OBJECT_NOT_FOUND", f"No {route[1][:-1]} is associated with "
                                                                 f"{route[0][:-1]} {ident}."),
                               {"fromObjectId": [ident]}))
                continue
            page = to[start:start + 500]
            row: dict[str, Any] = {"from": {"id": ident}, "to": [
                {"toObjectId": int(t), "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id,
                                                             "label": None}]} for t, type_id in page]}
            if start + 500 < len(to):
                row["paging"] = {"next": {"after": str(start + 500)}}
            results.append(row)
        response = self._answer(results, errors, _iso(self.clock.now_ms()), partial=True)
        if errors:
            body = json.loads(response.body)
            for e in body.get("errors", []):
                e["subCategory"] = "crm.associations.NO_ASSOCIATIONS_FOUND"
            response = self.json(body, 207)
        return response

"""The Pipedrive sandbox's activities (API v2), the object a task is in Pipedrive.

Served, as ``pipedrive-v2-openapi.yml`` shapes them (v1 ``/activities`` is gone from the current v1
spec: activities moved to v2)::

    GET  /api/v2/activities        lead_id, deal_id, owner_id, person_id, org_id, done, ids filters;
                                   sort_by/sort_direction, limit ≤ 500 and keyset cursors
    POST   /api/v2/activities        subject, type, owner_id, lead_id | deal_id, due_date, due_time, note…
    GET    /api/v2/activities/{id}
    PATCH  /api/v2/activities/{id}   the same fields; ``done: true`` marks it done (``marked_as_done_time``)
    DELETE /api/v2/activities/{id}   marks it deleted: gone from lists, a 404 after

Checks on create and update: ``type`` is one of the account's activity types (Pipedrive's defaults:
call, meeting, task, deadline, email, lunch), ``owner_id`` a user (the token's user when absent), a
``lead_id`` a live lead (a converted lead is deleted: its deal takes the activity), a ``deal_id`` a
live deal, ``due_date`` ``YYYY-MM-DD``, ``due_time`` ``HH:MM`` and ``done`` a boolean. Refusals are
v2's ``Validation failed: …`` 400s; an activity that does not exist (or was deleted) is a 404.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from hub.testing.sandbox import Call

from .catalog import iso_s
from .state import CrmState, Failure

__all__ = ["ACTIVITY_TYPES", "Activities"]

ACTIVITY_TYPES = ("call", "meeting", "task", "deadline", "email", "lunch")
_DATE, _TIME = re.compile(r"^\d{4}-\d{2}-\d{2}$"), re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_KEYS = ("subject", "type", "owner_id", "deal_id", "lead_id", "person_id", "org_id", "project_id", "due_date",
         "due_time", "duration", "busy", "done", "location", "participants", "attendees", "public_description",
         "priority", "note")


def _invalid(message: str) -> Failure:
    return Failure(400, f"Validation failed: {message}", "ERR_SCHEMA_VALIDATION_FAILED")


class Activities:
    """Handler mixin for :class:`PipedriveSandbox`, placed before ``Routes``: activities."""

    state: CrmState
    ok: Callable[..., Response]
    _v2_list: Callable[..., Response]
    _body: Callable[[Call], dict[str, Any]]
    _int: Callable[..., int | None]
    _ids: Callable[[Call], set[int] | None]
    _get: Callable[..., dict[str, Any]]
    _now: Callable[[], int]

    def routes(self) -> list[tuple[str, str, Callable[[Call], Response]]]:
        v2 = "/api/v2"
        return [*super().routes(),  # type: ignore[misc]
                ("GET", f"{v2}/activities", self._activities), ("POST", f"{v2}/activities", self._add_activity),
                ("GET", f"{v2}/activities/{{id}}", self._activity),
                ("PATCH", f"{v2}/activities/{{id}}", self._edit_activity),
                ("DELETE", f"{v2}/activities/{{id}}", self._del_activity)]

    @property
    def activities(self) -> dict[int, dict[str, Any]]:
        """Activities by id, as stored (``add``/``upd`` in epoch ms)."""
        if not hasattr(self, "_activity_rows"):
            self._activity_rows: dict[int, dict[str, Any]] = {}
        return self._activity_rows

    @staticmethod
    def render_activity(a: dict[str, Any]) -> dict[str, Any]:
        out = {k: a.get(k) for k in _KEYS if k != "attendees"}
        out.update(id=a["id"], creator_user_id=a["creator_user_id"], is_deleted=a["deleted"],
                   add_time=iso_s(a["add"]), update_time=iso_s(a["upd"]),
                   marked_as_done_time=iso_s(a["done_at"]) if a.get("done_at") else None)
        return out

    def _activities(self, call: Call) -> Response:
        ids = self._ids(call)
        wanted = {f: self._int(call, f) for f in ("owner_id", "deal_id", "person_id", "org_id")}
        lead, done = call.query.get("lead_id"), call.query.get("done")
        rows = [a for a in self.activities.values() if not a["deleted"] and (ids is None or a["id"] in ids)
                and all(v is None or a.get(f) == v for f, v in wanted.items())
                and (lead is None or a.get("lead_id") == lead)
                and (done is None or a["done"] == (done.lower() in ("true", "1")))]
        return self._v2_list(call, rows, self.render_activity)

    def _activity(self, call: Call) -> Response:
        return self.ok(self.render_activity(self._get(self.activities, call, "Activity")))

    def _add_activity(self, call: Call) -> Response:
        body = self._checked(self._body(call))
        kind = body.get("type") or "task"
        owner = self.state.check_owner(body.get("owner_id"), v2=True) or call.context.get("user", 1)
        now = self._now()
        row = {k: body.get(k) for k in _KEYS}
        row.update(id=len(self.activities) + 1, subject=body.get("subject") or kind.title(), type=kind,
                   owner_id=owner, creator_user_id=call.context.get("user", 1), done=bool(body.get("done")),
                   busy=bool(body.get("busy")), deleted=False, add=now, upd=now,
                   done_at=now if body.get("done") else None)
        self.activities[row["id"]] = row
        self.state.touch()
        return self.ok(self.render_activity(row))

    def _edit_activity(self, call: Call) -> Response:
        row = self._get(self.activities, call, "Activity")
        body = self._checked(self._body(call))
        if "owner_id" in body:
            body["owner_id"] = self.state.check_owner(body["owner_id"], v2=True) or row["owner_id"]
        now = self._now()
        if body.get("done") and not row["done"]:
            row["done_at"] = now
        elif body.get("done") is False:
            row["done_at"] = None
        row.update(body, upd=now)
        self.state.touch()
        return self.ok(self.render_activity(row))

    def _del_activity(self, call: Call) -> Response:
        row = self._get(self.activities, call, "Activity")
        row.update(deleted=True, upd=self._now())
        self.state.touch()
        return self.ok({"id": row["id"]})

    def _checked(self, body: dict[str, Any]) -> dict[str, Any]:
        """A create's or an update's body, checked as Pipedrive checks it."""
        unknown = sorted(set(body) - set(_KEYS))
        if unknown:
            raise _invalid(f"Unrecognized key(s) in object: {', '.join(map(repr, unknown))}")
        if "type" in body and (body["type"] or "task") not in ACTIVITY_TYPES:
            raise _invalid(f"type: activity type {body['type']!r} does not exist")
        for key in ("done", "busy"):
            if body.get(key) is not None and not isinstance(body[key], bool):
                raise _invalid(f"{key}: Expected boolean, received {type(body[key]).__name__}")
        lead = body.get("lead_id")
        if lead is not None and (not isinstance(lead, str) or self.state.live(self.state.leads, lead) is None):
            raise _invalid(f"lead_id: lead {lead!r} does not exist")
        deal = body.get("deal_id")
        if deal is not None and self.state.live(self.state.deals, deal) is None:
            raise _invalid(f"deal_id: deal {deal!r} does not exist")
        for key, rx, form in (("due_date", _DATE, "YYYY-MM-DD"), ("due_time", _TIME, "HH:MM")):
            if body.get(key) is not None and not (isinstance(body[key], str) and rx.match(body[key])):
                raise _invalid(f"{key}: Invalid format {body[key]!r}, expected {form}")
        if body.get("subject") is not None and not isinstance(body["subject"], str):
            raise _invalid("subject: Expected string")
        return body

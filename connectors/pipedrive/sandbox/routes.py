"""The Pipedrive sandbox's HTTP handlers: v1 leads, lead labels and users; v2 persons, organizations,
deals, stages and pipelines (search and lead conversion: :mod:`.search`).

Paging as Pipedrive pages: v1 lists by ``start``/``limit`` (at most 500; a larger ``limit`` is cut to
500, which Pipedrive's docs do not settle) with ``additional_data.pagination``; v2 lists by an opaque
keyset ``cursor`` (``limit`` at most 500, else 400) with ``additional_data.next_cursor`` (``null`` on
the last page), so a record that changes while a client pages moves behind the cursor instead of
shifting the pages.
"""

from __future__ import annotations

import base64
import bisect
import json
import uuid
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from hub.testing.sandbox import Call, Clock

from .catalog import instant, iso_ms
from .search import SEARCH_MAX, SEARCH_ROUTES, SearchRoutes
from .state import CrmState, Failure

__all__ = ["SEARCH_MAX", "SEARCH_ROUTES", "V1_MAX", "V2_MAX", "Routes"]

V1_MAX, V2_MAX, IDS_MAX = 500, 500, 100
_LEAD_SORTS = ("id", "title", "owner_id", "creator_id", "was_seen", "expected_close_date", "next_activity_id",
               "add_time", "update_time")


def _invalid(message: str) -> Failure:
    return Failure(400, f"Validation failed: {message}", "ERR_SCHEMA_VALIDATION_FAILED")


class Routes(SearchRoutes):
    """Handler mixin; the sandbox class provides ``state``, ``clock``, ``json`` and ``conversion_lag``."""

    state: CrmState
    clock: Clock
    conversion_lag: float
    json: Callable[..., Response]

    def routes(self) -> list[tuple[str, str, Callable[[Call], Response]]]:
        v1 = []
        for base in ("/v1", "/api/v1"):  # api.pipedrive.com/v1 and {company}.pipedrive.com/api/v1
            v1 += [("GET", f"{base}/leads/archived", self._archived), ("GET", f"{base}/leads", self._leads),
                   ("POST", f"{base}/leads", self._add_lead), ("GET", f"{base}/leads/{{id}}", self._lead),
                   ("PATCH", f"{base}/leads/{{id}}", self._edit_lead),
                   ("DELETE", f"{base}/leads/{{id}}", self._del_lead),
                   ("GET", f"{base}/leadLabels", self._labels), ("POST", f"{base}/leadLabels", self._add_label),
                   ("GET", f"{base}/users", self._users)]
        v2 = "/api/v2"
        return v1 + [
            ("GET", f"{v2}/persons/search", self._search_persons), ("GET", f"{v2}/persons", self._persons),
            ("POST", f"{v2}/persons", self._add_person), ("GET", f"{v2}/persons/{{id}}", self._person),
            ("PATCH", f"{v2}/persons/{{id}}", self._edit_person), ("DELETE", f"{v2}/persons/{{id}}", self._del_person),
            ("GET", f"{v2}/organizations/search", self._search_orgs), ("GET", f"{v2}/organizations", self._orgs),
            ("POST", f"{v2}/organizations", self._add_org), ("GET", f"{v2}/organizations/{{id}}", self._org),
            ("PATCH", f"{v2}/organizations/{{id}}", self._edit_org),
            ("GET", f"{v2}/deals", self._deals), ("GET", f"{v2}/deals/{{id}}", self._deal),
            ("PATCH", f"{v2}/deals/{{id}}", self._edit_deal), ("DELETE", f"{v2}/deals/{{id}}", self._del_deal),
            ("GET", f"{v2}/stages", self._stages), ("GET", f"{v2}/pipelines", self._pipelines),
            ("GET", f"{v2}/itemSearch", self._item_search), ("GET", f"{v2}/leads/search", self._search_leads),
            ("POST", f"{v2}/leads/{{id}}/convert/deal", self._convert),
            ("GET", f"{v2}/leads/{{id}}/convert/status/{{conversion_id}}", self._conversion)]

    # -- helpers --------------------------------------------------------------------------------
    def ok(self, data: Any, status: int = 200, additional: Any = None, v1: bool = False) -> Response:
        body = {"success": True, "data": data}
        if additional is not None or not v1:
            body["additional_data"] = additional
        return self.json(body, status)

    @staticmethod
    def _int(call: Call, name: str, default: int | None = None, v2: bool = True) -> int | None:
        raw = call.query.get(name)
        if raw in (None, ""):
            return default
        try:
            return int(raw)
        except ValueError:
            if v2:
                raise _invalid(f"{name}: Expected number, received string") from None
            raise Failure(400, f"Invalid {name} parameter: {raw!r} is not an integer") from None

    def _limit(self, call: Call, cap: int) -> int:
        limit = self._int(call, "limit", 100)
        if not 1 <= limit <= cap:
            bound = "greater than or equal to 1" if limit < 1 else f"less than or equal to {cap}"
            raise _invalid(f"limit: Number must be {bound}")
        return limit

    def _since(self, call: Call, name: str) -> int | None:
        raw = call.query.get(name)
        if not raw:
            return None
        try:
            return instant(raw)
        except ValueError:
            raise _invalid(f"{name}: Invalid datetime {raw!r}, expected RFC3339 e.g. 2025-01-01T10:20:00Z") from None

    def _body(self, call: Call) -> dict[str, Any]:
        body = call.json()
        if not isinstance(body, dict):
            raise Failure(400, "Request body must be a JSON object")
        return body

    def _now(self) -> int:
        return self.clock.now_ms()

    # -- v1 leads -------------------------------------------------------------------------------
    def _lead_list(self, call: Call, archived: bool) -> Response:
        limit = min(max(self._int(call, "limit", 100, v2=False), 1), V1_MAX)
        start = max(self._int(call, "start", 0, v2=False), 0)
        keys: list[tuple[str, bool]] = []
        for part in (call.query.get("sort") or "add_time ASC").split(","):
            field, _, direction = part.strip().partition(" ")
            if field not in _LEAD_SORTS or direction.strip().upper() not in ("", "ASC", "DESC"):
                raise Failure(400, f"Invalid sort parameter: {part.strip()!r}")
            keys.append((field, direction.strip().upper() == "DESC"))
        since = self._since(call, "updated_since") if not archived else None
        filters = {k: self._int(call, k, v2=False) for k in ("owner_id", "person_id", "organization_id")}
        rows = [ld for ld in self.state.leads.values() if not ld["deleted"] and ld["is_archived"] == archived
                and (since is None or ld["upd"] >= since)
                and all(v is None or ld[k] == v for k, v in filters.items())]
        internal = {"add_time": "add", "update_time": "upd"}
        for field, desc in [("seq", False), *reversed(keys)]:  # stable sorts, least significant first
            name = internal.get(field, field)
            rows.sort(key=lambda ld, n=name: (ld[n] is None, ld[n] if ld[n] is not None else 0), reverse=desc)
        page = rows[start:start + limit]
        more = start + limit < len(rows)
        pagination = {"start": start, "limit": limit, "more_items_in_collection": more,
                      **({"next_start": start + limit} if more else {})}
        return self.ok([self.state.render_lead(ld) for ld in page], additional={"pagination": pagination}, v1=True)

    def _leads(self, call: Call) -> Response:
        return self._lead_list(call, archived=False)

    def _archived(self, call: Call) -> Response:
        return self._lead_list(call, archived=True)

    def _find_lead(self, call: Call) -> dict[str, Any]:
        lead = self.state.live(self.state.leads, call.params["id"])
        if lead is None:
            raise Failure(404, "Lead not found")
        return lead

    def _lead(self, call: Call) -> Response:
        return self.ok(self.state.render_lead(self._find_lead(call)), v1=True)

    def _add_lead(self, call: Call) -> Response:
        clean = self.state.check_lead_body(self._body(call), None)
        creator = call.context.get("user", 1)
        lead = self.state.new_lead(clean, self._now(), creator=creator)
        return self.ok(self.state.render_lead(lead), 201, v1=True)

    def _edit_lead(self, call: Call) -> Response:
        lead = self._find_lead(call)
        clean = self.state.check_lead_body(self._body(call), lead)
        return self.ok(self.state.render_lead(self.state.edit_lead(lead, clean, self._now())), v1=True)

    def _del_lead(self, call: Call) -> Response:
        lead = self._find_lead(call)
        self.state.delete("lead", lead, self._now())
        return self.ok({"id": lead["id"]}, v1=True)

    def _labels(self, call: Call) -> Response:
        return self.ok([{**{k: v for k, v in lb.items() if k not in ("add", "upd")}, "add_time": iso_ms(lb["add"]),
                         "update_time": iso_ms(lb["upd"])} for lb in self.state.labels.values()], v1=True)

    def _add_label(self, call: Call) -> Response:
        body = self._body(call)
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            raise Failure(400, "Name is required")
        color = body.get("color", "gray")
        now = self._now()
        label = {"id": str(uuid.uuid4()), "name": body["name"].strip(), "color": color, "add": now, "upd": now}
        self.state.labels[label["id"]] = label
        return self.ok({**{k: v for k, v in label.items() if k not in ("add", "upd")}, "add_time": iso_ms(now),
                        "update_time": iso_ms(now)}, v1=True)

    def _users(self, call: Call) -> Response:
        return self.ok([dict(u) for u in self.state.users], v1=True)

    # -- v2 lists: keyset cursors ---------------------------------------------------------------
    @staticmethod
    def _cursor(raw: str | None) -> dict[str, Any] | None:
        if not raw:
            return None
        try:
            value = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
            assert isinstance(value, dict) and {"field", "fieldValue", "sortDirection", "id"} <= set(value)
            return value
        except (ValueError, AssertionError, TypeError):
            raise _invalid("cursor: Invalid cursor") from None

    def _v2_list(self, call: Call, rows: list[dict[str, Any]], render: Callable[[dict[str, Any]], Any]) -> Response:
        limit = self._limit(call, V2_MAX)
        sort_by = call.query.get("sort_by") or "id"
        direction = call.query.get("sort_direction") or "asc"
        if sort_by not in ("id", "update_time", "add_time"):
            raise _invalid("sort_by: Invalid enum value. Expected 'id' | 'update_time' | 'add_time', "
                           f"received '{sort_by}'")
        if direction not in ("asc", "desc"):
            raise _invalid(f"sort_direction: Invalid enum value. Expected 'asc' | 'desc', received '{direction}'")
        since, until = self._since(call, "updated_since"), self._since(call, "updated_until")
        field = {"id": "id", "update_time": "upd", "add_time": "add"}[sort_by]
        keyed = sorted(((r[field], r["id"]), r) for r in rows
                       if (since is None or r["upd"] >= since) and (until is None or r["upd"] < until))
        keys = [k for k, _ in keyed]
        cursor = self._cursor(call.query.get("cursor"))
        if cursor and (cursor["field"] != sort_by or cursor["sortDirection"] != direction):
            raise _invalid("cursor: The cursor does not match sort_by and sort_direction")
        at = (cursor["fieldValue"], cursor["id"]) if cursor else None
        if direction == "asc":
            i = bisect.bisect_right(keys, at) if at else 0
            chosen = keyed[i:i + limit]
            more = i + limit < len(keyed)
        else:
            j = bisect.bisect_left(keys, at) if at else len(keyed)
            chosen = list(reversed(keyed[max(0, j - limit):j]))
            more = j - limit > 0
        nxt = None
        if more and chosen:
            (value, rid), _ = chosen[-1]
            raw = json.dumps({"field": sort_by, "fieldValue": value, "sortDirection": direction, "id": rid})
            nxt = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        return self.ok([render(r) for _, r in chosen], additional={"next_cursor": nxt})

    def _ids(self, call: Call) -> set[int] | None:
        raw = call.query.get("ids")
        if not raw:
            return None
        try:
            ids = {int(x) for x in raw.split(",") if x.strip()}
        except ValueError:
            raise _invalid("ids: Expected a comma separated list of numbers") from None
        if len(ids) > IDS_MAX:
            raise _invalid(f"ids: Array must contain at most {IDS_MAX} element(s)")
        return ids

    def _filtered(self, call: Call, table: dict[int, dict[str, Any]], *filters: str) -> list[dict[str, Any]]:
        ids = self._ids(call)
        wanted = {f: self._int(call, f) for f in filters}
        pool = (table[i] for i in ids if i in table) if ids is not None else table.values()
        return [r for r in pool if not r["deleted"] and all(v is None or r.get(f) == v for f, v in wanted.items())]

    def _get(self, table: dict[int, dict[str, Any]], call: Call, what: str) -> dict[str, Any]:
        try:
            rec = self.state.live(table, int(call.params["id"]))
        except ValueError:
            raise _invalid("id: Expected number, received string") from None
        if rec is None:
            raise Failure(404, f"{what} not found", "ERR_NOT_FOUND")
        return rec

    # -- v2 persons and organizations -------------------------------------------------------------
    def _persons(self, call: Call) -> Response:
        return self._v2_list(call, self._filtered(call, self.state.persons, "owner_id", "org_id"),
                             self.state.render_person)

    def _person(self, call: Call) -> Response:
        return self.ok(self.state.render_person(self._get(self.state.persons, call, "Person")))

    def _add_person(self, call: Call) -> Response:
        return self.ok(self.state.render_person(self.state.new_person(self._body(call), self._now())))

    def _edit_person(self, call: Call) -> Response:
        person = self._get(self.state.persons, call, "Person")
        return self.ok(self.state.render_person(self.state.edit_person(person, self._body(call), self._now())))

    def _del_person(self, call: Call) -> Response:
        person = self._get(self.state.persons, call, "Person")
        self.state.delete("person", person, self._now())
        return self.ok({"id": person["id"]})

    def _orgs(self, call: Call) -> Response:
        return self._v2_list(call, self._filtered(call, self.state.orgs, "owner_id"), self.state.render_org)

    def _org(self, call: Call) -> Response:
        return self.ok(self.state.render_org(self._get(self.state.orgs, call, "Organization")))

    def _add_org(self, call: Call) -> Response:
        return self.ok(self.state.render_org(self.state.new_org(self._body(call), self._now())))

    def _edit_org(self, call: Call) -> Response:
        org = self._get(self.state.orgs, call, "Organization")
        return self.ok(self.state.render_org(self.state.edit_org(org, self._body(call), self._now())))

    # -- v2 deals, stages, pipelines --------------------------------------------------------------
    def _deals(self, call: Call) -> Response:
        statuses = set(call.query_list("status")) or {"open", "won", "lost"}
        if statuses - {"open", "won", "lost", "deleted"}:
            raise _invalid(f"status: Invalid enum value {sorted(statuses)}")
        include = set(call.query_list("include_fields"))
        ids = self._ids(call)
        wanted = {f: self._int(call, f) for f in ("owner_id", "person_id", "org_id", "stage_id", "pipeline_id")}
        pool = (self.state.deals[i] for i in ids if i in self.state.deals) if ids is not None \
            else self.state.deals.values()
        rows = [d for d in pool if ("deleted" if d["deleted"] else d["status"]) in statuses
                and all(v is None or d.get(f) == v for f, v in wanted.items())]
        return self._v2_list(call, rows, lambda d: self.state.render_deal(d, include))

    def _deal(self, call: Call) -> Response:
        include = set(call.query_list("include_fields"))
        return self.ok(self.state.render_deal(self._get(self.state.deals, call, "Deal"), include))

    def _edit_deal(self, call: Call) -> Response:
        deal = self._get(self.state.deals, call, "Deal")
        return self.ok(self.state.render_deal(self.state.edit_deal(deal, self._body(call), self._now())))

    def _del_deal(self, call: Call) -> Response:
        deal = self._get(self.state.deals, call, "Deal")
        self.state.delete("deal", deal, self._now())
        return self.ok({"id": deal["id"]})

    def _stages(self, call: Call) -> Response:
        pipeline = self._int(call, "pipeline_id")
        rows = [s for s in self.state.stages.values() if pipeline is None or s["pipeline_id"] == pipeline]
        return self._v2_list(call, [{**s, "deleted": False} for s in rows], self.state.render_stage)

    def _pipelines(self, call: Call) -> Response:
        stamp = "2020-01-01T00:00:00Z"
        return self.ok([{"id": 1, "name": "Sales pipeline", "order_nr": 1, "is_deleted": False,
                         "is_deal_probability_enabled": True, "add_time": stamp, "update_time": stamp}],
                       additional={"next_cursor": None})

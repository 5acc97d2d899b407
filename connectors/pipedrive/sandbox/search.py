"""The Pipedrive sandbox's search and lead-conversion handlers.

Search (``/api/v2/itemSearch``, ``/persons/search``, ``/organizations/search``, ``/leads/search``)
matches ``term`` against the chosen ``fields`` (``custom_fields`` are every custom-field value),
exactly (case-insensitively) with ``exact_match=true``, else as a substring of at least two
characters; exact searches of custom fields and names use an index, as the connector's hub-id
lookups do on every create. Pages by an opaque ``cursor``; ``limit`` at most 100 (``itemSearch``)
or 500. Conversion runs as a job: ``conversion_lag`` seconds after the request its status turns
``completed`` and the deal exists.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from hub.testing.sandbox import Call, Clock

from .state import CrmState, Failure

__all__ = ["SEARCH_MAX", "SEARCH_ROUTES", "SearchRoutes"]

SEARCH_MAX, V2_MAX = 100, 500
SEARCH_ROUTES = frozenset({"GET /api/v2/itemSearch", "GET /api/v2/persons/search", "GET /api/v2/leads/search",
                           "GET /api/v2/organizations/search"})


def _invalid(message: str) -> Failure:
    return Failure(400, f"Validation failed: {message}", "ERR_SCHEMA_VALIDATION_FAILED")


class SearchRoutes:
    """Handler mixin: search and lead conversion (see the module docstring)."""

    state: CrmState
    clock: Clock
    conversion_lag: float
    ok: Callable[..., Response]
    _limit: Callable[[Call, int], int]
    _now: Callable[[], int]

    # -- search -----------------------------------------------------------------------------------
    def _texts(self, kind: str, rec: dict[str, Any]) -> dict[str, list[str]]:
        custom = [str(v) for v in rec["custom"].values() if v not in (None, "")]
        if kind == "person":
            return {"name": [rec["name"]], "email": [e["value"] for e in rec["emails"]],
                    "phone": [p["value"] for p in rec["phones"]], "custom_fields": custom, "notes": []}
        if kind == "organization":
            address = (rec["address"] or {}).get("value")
            return {"name": [rec["name"]], "address": [address] if address else [], "custom_fields": custom,
                    "notes": []}
        return {"title": [rec["title"]], "custom_fields": custom, "notes": []}

    def _render_hit(self, kind: str, rec: dict[str, Any]) -> dict[str, Any]:
        st = self.state
        custom = [str(v) for v in rec["custom"].values() if v not in (None, "")]
        org = st.orgs.get(rec.get("org_id") or rec.get("organization_id") or -1)
        person = st.persons.get(rec.get("person_id") or -1)
        links = {**({"organization": {"id": org["id"], "name": org["name"]}} if org else {}),
                 **({"person": {"id": person["id"], "name": person["name"]}} if person else {})}
        if kind == "person":
            return {"id": rec["id"], "type": "person", "name": rec["name"], "phones": self._texts(kind, rec)["phone"],
                    "emails": self._texts(kind, rec)["email"], "visible_to": rec["visible_to"],
                    "owner": {"id": rec["owner_id"]}, "custom_fields": custom, "notes": [],
                    **({"organization": links["organization"]} if org else {})}
        if kind == "organization":
            address = (rec["address"] or {}).get("value")
            return {"id": rec["id"], "type": "organization", "name": rec["name"],
                    **({"address": address} if address else {}), "visible_to": rec["visible_to"],
                    "owner": {"id": rec["owner_id"]}, "custom_fields": custom, "notes": []}
        if kind == "lead":
            value = rec["value"] or {}
            return {"id": rec["id"], "type": "lead", "title": rec["title"], "owner": {"id": rec["owner_id"]},
                    **links, "phones": [], "emails": [], "custom_fields": custom, "notes": [],
                    "value": int(value.get("amount") or 0), "currency": value.get("currency") or "EUR",
                    "visible_to": int(rec["visible_to"]), "is_archived": rec["is_archived"]}
        stage = st.stages[rec["stage_id"]]
        return {"id": rec["id"], "type": "deal", "title": rec["title"], "value": rec["value"],
                "currency": rec["currency"], "status": rec["status"], "visible_to": rec["visible_to"],
                "owner": {"id": rec["owner_id"]}, "stage": {"id": stage["id"], "name": stage["name"]}, **links,
                "custom_fields": custom, "notes": [], "is_archived": rec["is_archived"]}

    def _search(self, call: Call, kinds: list[str], allowed_fields: set[str], cap: int) -> tuple[list[Any], Any]:
        term = call.query.get("term")
        exact = (call.query.get("exact_match") or "").lower() == "true"
        if not term or len(term) < (1 if exact else 2):
            raise _invalid(f"term: String must contain at least {1 if exact else 2} character(s)")
        fields = set(call.query_list("fields")) or allowed_fields
        if fields - allowed_fields:
            raise _invalid(f"fields: Invalid value(s) {sorted(fields - allowed_fields)}")
        limit = self._limit(call, cap)
        raw = call.query.get("cursor")
        try:
            start = int(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))) if raw else 0
        except ValueError:
            raise _invalid("cursor: Invalid cursor") from None
        st, needle = self.state, term.lower()
        tables = {"person": st.persons, "organization": st.orgs, "lead": st.leads, "deal": st.deals}
        hits: list[tuple[float, str, dict[str, Any]]] = []
        if exact and fields <= {"custom_fields", "name"}:  # the indexed fast path
            for kind, rid in sorted(st.index.get(needle, ()), key=str):
                rec = tables[kind].get(rid)
                if kind in kinds and rec and any(v.lower() == needle for f in fields
                                                 for v in self._texts(kind, rec).get(f, [])):
                    hits.append((1.0, kind, rec))
        else:
            for kind in kinds:
                for rec in tables[kind].values():
                    if rec.get("deleted"):
                        continue
                    values = [v.lower() for f in fields for v in self._texts(kind, rec).get(f, []) if v]
                    if any(v == needle if exact else needle in v for v in values):
                        hits.append((1.0 if needle in values else 0.5, kind, rec))
        hits.sort(key=lambda h: -h[0])
        page = [{"result_score": score, "item": self._render_hit(kind, rec)}
                for score, kind, rec in hits[start:start + limit]]
        more = start + limit < len(hits)
        return page, (base64.urlsafe_b64encode(str(start + limit).encode()).decode().rstrip("=") if more else None)

    def _item_search(self, call: Call) -> Response:
        kinds = call.query_list("item_types") or ["deal", "person", "organization", "lead"]
        unknown = set(kinds) - {"deal", "person", "organization", "product", "lead", "file", "mail_attachment",
                                "project"}
        if unknown:
            raise _invalid(f"item_types: Invalid value(s) {sorted(unknown)}")
        fields = {"address", "code", "custom_fields", "email", "name", "notes", "phone", "title", "description"}
        items, nxt = self._search(call, [k for k in kinds if k in ("deal", "person", "organization", "lead")],
                                  fields, SEARCH_MAX)
        return self.ok({"items": items}, additional={"next_cursor": nxt})

    def _search_persons(self, call: Call) -> Response:
        items, nxt = self._search(call, ["person"], {"custom_fields", "email", "notes", "phone", "name"}, V2_MAX)
        return self.ok({"items": items}, additional={"next_cursor": nxt})

    def _search_orgs(self, call: Call) -> Response:
        items, nxt = self._search(call, ["organization"], {"address", "custom_fields", "notes", "name"}, V2_MAX)
        return self.ok({"items": items}, additional={"next_cursor": nxt})

    def _search_leads(self, call: Call) -> Response:
        items, nxt = self._search(call, ["lead"], {"custom_fields", "notes", "title"}, V2_MAX)
        return self.ok({"items": items}, additional={"next_cursor": nxt})

    # -- lead conversion --------------------------------------------------------------------------
    def _convert(self, call: Call) -> Response:
        lead = self.state.live(self.state.leads, call.params["id"])
        if lead is None:
            raise Failure(404, "Entity was not found", "ERR_NOT_FOUND")
        body = call.json() or {}
        extra = set(body) - {"stage_id", "pipeline_id"} if isinstance(body, dict) else {"body"}
        if extra:
            raise _invalid(f"Unrecognized key(s) in object: {', '.join(map(repr, sorted(extra)))}")
        stage = body.get("stage_id")
        if stage is not None and stage not in self.state.stages:
            raise _invalid(f"stage_id: stage {stage!r} does not exist")
        job = {"conversion_id": str(uuid.uuid4()), "lead_id": lead["id"], "stage_id": stage, "deal_id": None,
               "ready": self._now() + int(self.conversion_lag * 1000)}
        self.state.conversions[job["conversion_id"]] = job
        self._finish(job)
        return self.ok({"conversion_id": job["conversion_id"]})

    def _finish(self, job: dict[str, Any]) -> None:
        if job["deal_id"] is None and self._now() >= job["ready"]:
            lead = self.state.leads[job["lead_id"]]
            job["deal_id"] = self.state.convert(lead, job["stage_id"], self._now())["id"]

    def _conversion(self, call: Call) -> Response:
        job = self.state.conversions.get(call.params["conversion_id"])
        if job is None or job["lead_id"] != call.params["id"]:
            raise Failure(404, "Entity was not found", "ERR_NOT_FOUND")
        self._finish(job)
        done = job["deal_id"] is not None
        return self.ok({"conversion_id": job["conversion_id"], "status": "completed" if done else "running",
                        **({"deal_id": job["deal_id"]} if done else {})})


"""A stateful fake of the Acme CRM API (see :mod:`leadhub_acme`), for tests and ``leadhub sandbox acme``."""

from __future__ import annotations

import random
import re
from datetime import datetime, timezone
from typing import Any

from starlette.responses import Response

from hub.testing import fakedata
from hub.testing.sandbox import Call, Reject, Sandbox

__all__ = ["AcmeSandbox", "STAGES"]

#: canonical status -> Acme stage (Acme's users may also set "contacted")
STAGES = {"Lead": "new", "MQL": "marketing_qualified", "SAL": "accepted", "SQL": "qualified",
          "Opportunity": "proposal", "Negotiation": "negotiation", "Closed Won": "won", "Closed Lost": "lost",
          "Nurture": "nurture"}
FIELDS = ("first_name", "last_name", "email", "phone", "company", "job_title", "country", "source", "stage",
          "owner_id", "external_id")
_CANON = {"title": "job_title", "hub_id": "external_id"}
_SOURCES = {"organic": "web", "paid": "ads", "self-serve": "web"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
MAX_PAGE, MAX_BATCH = 100, 50


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class AcmeSandbox(Sandbox):
    """Acme's leads and users, API-key auth, and its limit of ``rate`` requests per second."""

    def __init__(self, token: str = "acme-test-key", rate: int | None = 20):
        super().__init__()
        self.token, self.rate = token, rate
        self.leads: dict[str, dict[str, Any]] = {}
        self._by_external: dict[str, str] = {}
        self.users = [{"id": f"u{i + 1}", "email": m["email"], "name": m["name"]}
                      for i, m in enumerate(fakedata.team(0))]

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/v1/leads", self._list), ("POST", "/v1/leads/batch", self._batch),
                ("GET", "/v1/users", lambda call: self.json({"data": self.users}))]

    def error(self, status: int, message: str, **extra: Any) -> Response:
        code = {401: "unauthorized", 429: "rate_limited"}.get(status, "invalid_request" if status < 500 else
                                                               "server_error")
        return self.json({"error": {"code": code, "message": message}}, status,
                         {"Retry-After": "1"} if status == 429 else None)

    def admit(self, call: Call) -> Response | None:
        if call.headers.get("x-api-key") != self.token:
            return self.error(401, "Missing or invalid API key")
        if self.rate is not None and not self.window("api", self.token, self.rate, 1.0).hit().allowed:
            return self.error(429, f"Rate limit of {self.rate} requests per second exceeded")
        return None

    # -- the API ---------------------------------------------------------------------------------
    def _list(self, call: Call) -> Response:
        try:
            limit, offset = int(call.query.get("limit", 50)), int(call.query.get("cursor") or 0)
            since = call.query.get("updated_since")
            since_ms = int(datetime.fromisoformat(since).timestamp() * 1000) if since else 0
        except ValueError as exc:
            raise Reject(400, f"invalid query: {exc}") from None
        if not 1 <= limit <= MAX_PAGE:
            raise Reject(400, f"limit must be between 1 and {MAX_PAGE}")
        rows = sorted((r for r in self.leads.values() if r["updated_at"] >= since_ms),
                      key=lambda r: (r["updated_at"], r["id"]))
        page = [{**({"deleted": True} if r.get("deleted") else {k: r.get(k) for k in FIELDS}), "id": r["id"],
                 "updated_at": _iso(r["updated_at"])} for r in rows[offset:offset + limit]]
        more = offset + limit < len(rows)
        return self.json({"data": page, "next_cursor": str(offset + limit) if more else None})

    def _batch(self, call: Call) -> Response:
        body = call.json()
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not 1 <= len(records) <= MAX_BATCH:
            raise Reject(400, f"records must be a list of 1 to {MAX_BATCH} leads")
        return self.json({"results": [self._upsert(r) for r in records]})

    def _upsert(self, rec: dict[str, Any]) -> dict[str, Any]:
        def refuse(code: str, message: str) -> dict[str, Any]:
            return {"error": {"code": code, "message": message}}

        if unknown := sorted(set(rec) - {"id", *FIELDS}):
            return refuse("unknown_field", f"unknown field(s): {', '.join(unknown)}")
        if rec.get("email") and not _EMAIL.match(rec["email"]):
            return refuse("invalid_email", f"email: {rec['email']!r} is not a valid email address")
        if rec.get("stage") not in (None, "contacted", *STAGES.values()):
            return refuse("invalid_stage", f"stage: {rec['stage']!r} is not a stage of this pipeline")
        rid = rec.get("id") or self._by_external.get(rec.get("external_id") or "")
        if rec.get("id") and (rid not in self.leads or self.leads[rid].get("deleted")):
            return refuse("not_found", f"no lead with id {rid!r}")
        if not rid and not rec.get("external_id"):
            return refuse("missing_field", "external_id is required to create a lead")
        return {"id": self._put({k: v for k, v in rec.items() if k != "id"}, rid), "created": not rid}

    # -- state, and the conformance kit's protocol (hub.testing.kit.ConformanceSandbox) ----------
    def _put(self, values: dict[str, Any], rid: str | None = None, at: int | None = None) -> str:
        with self.lock:
            rid = rid or f"ld_{len(self.leads) + 1:06d}"
            lead = self.leads.setdefault(rid, {"id": rid})
            old = lead.get("external_id")
            lead.update(values, updated_at=(self.clock.now_ms() if at is None else at) // 1000 * 1000)
            if lead.get("external_id") != old:
                self._by_external.pop(old or "", None)
                self._by_external.update({lead["external_id"]: rid} if lead.get("external_id") else {})
            return rid

    def _acme(self, fields: dict[str, Any]) -> dict[str, Any]:
        out = {_CANON.get(k, k): v for k, v in fields.items() if k not in ("status", "source", "owner")}
        if "status" in fields:
            out["stage"] = STAGES[fields["status"]] if fields["status"] else None
        if "source" in fields:
            out["source"] = _SOURCES.get(fields["source"], fields["source"])
        if "owner" in fields:
            out["owner_id"] = next((u["id"] for u in self.users if u["email"] == fields["owner"]), None)
        if unknown := set(out) - set(FIELDS):
            raise KeyError(f"Acme leads have no field for {sorted(unknown)}")
        return out

    def seed(self, n: int, seed: int = 0) -> list[str]:
        rng, now = random.Random(seed), self.clock.now_ms()
        self.users += [{"id": f"u{len(self.users) + 1}", "email": m["email"], "name": m["name"]}
                       for m in fakedata.team(seed) if m["email"] not in {u["email"] for u in self.users}]
        keys = ("first_name", "last_name", "email", "phone", "company", "title", "country", "source",
                "status", "owner")
        return [self._put(self._acme({k: p[k] for k in keys}), at=now - rng.randrange(30 * 86_400) * 1000)
                for p in fakedata.people(n, seed)]

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        return {"base_url": f"{base_url}/v1", "api_key": self.token}

    def remote_create(self, fields: dict[str, Any]) -> str:
        return self._put(self._acme(fields))

    def remote_update(self, remote_id: str, fields: dict[str, Any]) -> None:
        self._put(self._acme(fields), remote_id)

    def remote_delete(self, remote_id: str) -> None:
        self._put({"deleted": True}, remote_id)

    def remote_get(self, remote_id: str) -> dict[str, Any] | None:
        lead = self.leads.get(remote_id)
        if lead is None or lead.get("deleted"):
            return None
        back = {v: k for k, v in _CANON.items()}
        out = {back.get(k, k): lead.get(k) for k in FIELDS if k not in ("stage", "owner_id")}
        out["source"] = {"web": "organic", "ads": "paid"}.get(out["source"], out["source"])
        out["status"] = "SAL" if lead.get("stage") == "contacted" else next(
            (s for s, v in STAGES.items() if v == lead.get("stage")), None)
        out["owner"] = next((u["email"] for u in self.users if u["id"] == lead.get("owner_id")), None)
        return out

    def remote_ids(self) -> list[str]:
        return [rid for rid, lead in self.leads.items() if not lead.get("deleted")]

    def remote_status_values(self) -> list[dict[str, str]]:
        return [{"stage": s} for s in ("contacted", *STAGES.values())]

    def invalid_fields(self) -> dict[str, Any]:
        return {"email": "not-an-email@"}

"""A stateful fake of Dynamics 365 Sales (the Dataverse Web API) and of its Entra ID tenant.

::

    sandbox = DynamicsSandbox(rate=6000)          # requests per user per 5-minute sliding window
    sandbox.seed(5_000)
    with sandbox.serve() as served:               # https://127.0.0.1:<port> (loopback CA)
        settings = sandbox.connector_settings(served.url)

What it emulates (details in :mod:`.webapi`, :mod:`.entra`, :mod:`.tables`):

* Entra: OpenID discovery and the v2.0 token endpoint for one tenant/app (client credentials,
  ``AADSTS`` errors); bearer tokens that expire on the sandbox clock (``token_ttl``).
* Dataverse: ``leads``, ``opportunities``, ``tasks`` and ``systemusers`` with ``$select``, a little
  ``$filter``, ``odata.maxpagesize`` paging (max 5,000) through ``@odata.nextLink``, change
  tracking (``Prefer: odata.track-changes``, delta links, ``$deletedEntity``, tokens expiring
  after ``expire_days``: 410), ``UpsertMultiple`` on the ``leadhub_leadhubid`` alternate key
  (all or nothing, 204) and on tasks by ``activityid`` (``regardingobjectid_lead_task@odata.bind``),
  ``UpdateMultiple`` on both (a task closed by ``statecode`` 1/``statuscode`` 5 Completed or 2/6
  Canceled, each pair checked), validation with Dataverse's error codes and messages, ``modifiedon``
  at second precision.
* The ``Merge`` action for leads (:mod:`.merge`): the subordinate deactivated with ``masterid``.
* Service protection: ``rate`` requests per user per ``window`` seconds (sliding), answered
  with 429, ``Retry-After`` and ``0x80072322``; every answer carries
  ``x-ms-ratelimit-burst-remaining-xrm-requests``. A bad or expired token gets 401 with
  Dataverse's ``WWW-Authenticate`` challenge and an empty body.

Not emulated: the execution-time and concurrency limits, ``$batch``, ``$expand``/``$orderby``,
the QualifyLead/WinOpportunity/LoseOpportunity actions (tests qualify and close deals with
:meth:`DynamicsSandbox.qualify` and :meth:`DynamicsSandbox.update_opportunity`), plug-ins,
business rules and duplicate detection.
"""

from __future__ import annotations

import gc
import math
import random
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from starlette.responses import Response

from hub.testing import fakedata
from hub.testing.sandbox import Call, Fault, Faults, Sandbox
from hub.testing.tls import loopback_tls

from .entra import Entra
from .merge import Merging
from .schema import HUB_ID, make_tables
from .tables import Table, Versions
from .webapi import WebApi

__all__ = ["SOURCES", "STATUS", "DynamicsSandbox"]

OPEN, QUALIFIED, DISQUALIFIED = 0, 1, 2
#: canonical status -> (lead statecode, statuscode, opportunity (statecode, statuscode, salesstage) or None)
STATUS: dict[str, tuple[int, int, tuple[int, int, int] | None]] = {
    "Lead": (OPEN, 1, None), "MQL": (OPEN, 582300000, None), "SAL": (OPEN, 2, None),
    "SQL": (OPEN, 582300001, None), "Nurture": (OPEN, 582300002, None),
    "Opportunity": (QUALIFIED, 3, (0, 1, 1)), "Negotiation": (QUALIFIED, 3, (0, 1, 2)),
    "Closed Won": (QUALIFIED, 3, (1, 3, 3)), "Closed Lost": (DISQUALIFIED, 4, None)}
_LEAD_REASONS = {(OPEN, 1): "Lead", (OPEN, 582300000): "MQL", (OPEN, 2): "SAL", (OPEN, 582300001): "SQL",
                 (OPEN, 582300002): "Nurture", (QUALIFIED, 3): "Opportunity",
                 (QUALIFIED, 582300003): "Negotiation", (QUALIFIED, 582300004): "Closed Won"}
#  (any Disqualified reason is Closed Lost)
#: canonical source -> leadsourcecode, and back
SOURCES = {"paid": 1, "organic": 8, "referral": 3, "partner": 4, "event": 7, "self-serve": 8, "outbound": 10,
           "social": 10, "email": 10}
_SOURCE_NAMES = {1: "paid", 2: "employee-referral", 3: "referral", 4: "partner", 5: "public-relations",
                 6: "seminar", 7: "event", 8: "organic", 9: "word-of-mouth", 10: "other"}
_CANON = {"first_name": "firstname", "last_name": "lastname", "email": "emailaddress1", "phone": "telephone1",
          "company": "companyname", "domain": "websiteurl", "title": "jobtitle",
          "country": "address1_country", "value": "estimatedamount", "expected_close": "estimatedclosedate"}
_CODES = {500: "0x80040216", 503: "0x80040216", 404: "0x80060888"}


class _DataverseFaults(Faults):
    """Faults without a path aim at the Web API: Entra is another service in reality, so its endpoints
    only take the faults that name their path (e.g. ``path_contains="/oauth2/"``)."""

    def take(self, method: str, path: str) -> Fault | None:
        if path.startswith("/api/"):
            return super().take(method, path)
        with self._lock:
            for fault in self._faults:
                if fault.path_contains and fault.matches(method, path):
                    fault.count -= 1
                    fault.hits += 1
                    return fault
        return None


class DynamicsSandbox(Entra, WebApi, Merging, Sandbox):
    """Dynamics 365 Sales and its Entra tenant. See the module docstring."""

    tls = True

    def __init__(self, token: str = "sandbox-client-secret", rate: int | None = 6000, *,
                 tenant_id: str = "8f1c2d3e-4b5a-4c6d-9e7f-0a1b2c3d4e5f",
                 client_id: str = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9", token_ttl: int = 3599,
                 expire_days: float = 7.0, window: float = 300.0):
        super().__init__()
        self.faults = _DataverseFaults()
        self.token, self.rate, self.window_seconds = token, rate, window
        self.tenant_id, self.client_id = tenant_id, client_id
        self.token_ttl, self.expire_days = token_ttl, expire_days
        self._tokens: dict[str, tuple[str, float]] = {}
        #: (OData-Version, OData-MaxVersion, Accept) of every Web API request, for tests of clients
        self.odata_headers: set[tuple[str | None, str | None, str | None]] = set()
        self.versions = Versions()
        self.tables: dict[str, Table] = make_tables(self.versions)
        self.app_user_id = self._user({"firstname": "# LeadHub", "lastname": "Sync", "accessmode": 4,
                                       "internalemailaddress": None, "isdisabled": False})
        self.tables["systemusers"].rows[self.app_user_id]["applicationid"] = client_id
        self.add_users(fakedata.team(0))

    # -- plumbing ------------------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Any]]:
        return [*self.entra_routes(), *self.merge_routes(), *self.webapi_routes()]

    def error(self, status: int, message: str, code: str | None = None, **extra: Any) -> Response:
        return self.json({"error": {"code": code or _CODES.get(status, "0x0"), "message": message}}, status,
                         {"OData-Version": "4.0"})

    def admit(self, call: Call) -> Response | dict[str, str] | None:
        if not call.path.startswith("/api/data/"):
            return None
        self.odata_headers.add((call.headers.get("odata-version"), call.headers.get("odata-maxversion"),
                                call.headers.get("accept")))
        client = self.bearer(call)
        if client is None:
            return Response(status_code=401, headers={"WWW-Authenticate": (
                f"Bearer error=invalid_token, error_description=\"Error during token validation!\", "
                f"authorization_uri=https://login.microsoftonline.com/{self.tenant_id}/oauth2/authorize, "
                f"resource_id=https://{call.headers.get('host', 'localhost')}/")})
        headers = {"REQ_ID": str(uuid.uuid4()), "x-ms-ratelimit-time-remaining-xrm-requests": "1,200.00"}
        if self.rate is None:
            return headers
        verdict = self.window("requests", client, self.rate, self.window_seconds).hit()
        if not verdict.allowed:
            return self.json({"error": {"code": "0x80072322", "message": (
                f"Number of requests exceeded the limit of {self.rate} over time window of "
                f"{self.window_seconds:g} seconds.")}}, 429,
                {"Retry-After": str(max(1, math.ceil(verdict.reset))), "OData-Version": "4.0",
                 "x-ms-ratelimit-burst-remaining-xrm-requests": "0"})
        return {**headers, "x-ms-ratelimit-burst-remaining-xrm-requests": str(verdict.remaining)}

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "tenant_id": self.tenant_id, "client_id": self.client_id,
                "client_secret": self.token, "authority": f"{base_url}/{{tenant}}",
                "ca_bundle": loopback_tls().ca_file}

    # -- rows as Dataverse holds them ------------------------------------------------------
    @property
    def leads(self) -> Mapping[str, dict[str, Any]]:
        """Live leads by id (copies)."""
        with self.lock:
            return {k: dict(v) for k, v in self.tables["leads"].rows.items()}

    @property
    def opportunities(self) -> Mapping[str, dict[str, Any]]:
        with self.lock:
            return {k: dict(v) for k, v in self.tables["opportunities"].rows.items()}

    def write_row(self, table: Table, rid: str | None, clean: dict[str, Any],
                  now: datetime) -> dict[str, Any]:
        """Write checked values (see :meth:`Table.write`), keeping ``fullname`` and a lead's owner set."""
        row = table.write(rid, clean, now)
        if "fullname" in table.columns:
            row["fullname"] = " ".join(p for p in (row.get("firstname"), row.get("lastname")) if p) or None
        if table.entity_set in ("leads", "tasks") and row.get("_ownerid_value") is None:
            row["_ownerid_value"] = self.app_user_id
        return row

    def _user(self, values: dict[str, Any]) -> str:
        users = self.tables["systemusers"]
        return self.write_row(users, None, users.check(values, None, ""), self.clock.now())["systemuserid"]

    def add_users(self, members: Iterable[dict[str, Any]]) -> None:
        """Add ``fakedata.team`` members as system users (known emails are skipped)."""
        with self.lock:
            known = {u["internalemailaddress"] for u in self.tables["systemusers"].rows.values()}
            for m in members:
                if m["email"] not in known:
                    self._user({"firstname": m["first_name"], "lastname": m["last_name"],
                                "internalemailaddress": m["email"], "accessmode": 0, "isdisabled": False})

    def _user_id(self, email: str | None) -> str:
        for u in self.tables["systemusers"].rows.values():
            if email and (u["internalemailaddress"] or "").lower() == email.lower():
                return u["systemuserid"]
        return self.app_user_id

    def add_lead(self, values: dict[str, Any], modified: datetime | None = None) -> str:
        """Create a lead as a Dynamics user would (Dataverse column names, validated); returns its id."""
        with self.lock:
            leads = self.tables["leads"]
            clean = leads.check(values, None, "(new)")
            return self.write_row(leads, None, clean, modified or self.clock.now())["leadid"]

    def update_lead(self, lead_id: str, values: dict[str, Any]) -> None:
        """Change a lead (validated); stamps ``modifiedon`` and a new row version."""
        with self.lock:
            leads = self.tables["leads"]
            row = leads.find(lead_id)
            if row is None:
                raise KeyError(lead_id)
            self.write_row(leads, row["leadid"], leads.check(values, row, row["leadid"]), self.clock.now())

    def delete_lead(self, lead_id: str) -> None:
        with self.lock:
            self.tables["leads"].delete(lead_id)

    def qualify(self, lead_id: str, **opportunity: Any) -> str:
        """Qualify a lead into a new opportunity (what QualifyLead does); returns the opportunity id."""
        with self.lock:
            lead = self.tables["leads"].find(lead_id)
            if lead is None:
                raise KeyError(lead_id)
            opps, now = self.tables["opportunities"], self.clock.now()
            values = {"name": lead.get("subject") or lead.get("fullname") or "Opportunity",
                      "estimatedvalue": lead.get("estimatedamount"),
                      "estimatedclosedate": lead.get("estimatedclosedate"), **opportunity}
            opp = self.write_row(opps, None, opps.check(values, None, "(new)"), now)
            opp["_originatingleadid_value"], opp["_ownerid_value"] = lead["leadid"], lead["_ownerid_value"]
            self.update_lead(lead_id, {"statecode": QUALIFIED, "statuscode": 3})
            lead["_qualifyingopportunityid_value"] = opp["opportunityid"]
            return opp["opportunityid"]

    def update_opportunity(self, opp_id: str, values: dict[str, Any]) -> None:
        """Change an opportunity, e.g. win it: ``{"statecode": 1, "statuscode": 3}``."""
        with self.lock:
            opps = self.tables["opportunities"]
            row = opps.find(opp_id)
            if row is None:
                raise KeyError(opp_id)
            self.write_row(opps, row["opportunityid"], opps.check(values, row, row["opportunityid"]),
                           self.clock.now())

    # -- seeding -------------------------------------------------------------------------
    def seed(self, n: int, seed: int = 0, *, days: float = 365.0) -> list[str]:
        """Add ``n`` fakedata people as leads (qualified ones with their opportunity). Returns lead ids."""
        paused = gc.isenabled()
        gc.disable()  # tens of thousands of new dicts would trigger needless full collections
        try:
            rng = random.Random(f"dynamics:{seed}")
            self.add_users(fakedata.team(seed))
            now, ids = self.clock.now(), []
            for person in fakedata.people(n, seed):
                when = now - timedelta(seconds=60 + rng.random() * days * 86_400)
                ids.append(self._create(person, when, rng))
            return ids
        finally:
            if paused:
                gc.enable()

    def _create(self, person: Mapping[str, Any], when: datetime, rng: random.Random | None = None) -> str:
        with self.lock:
            values = {col: person[c] for c, col in _CANON.items() if person.get(c) is not None}
            if person.get("expected_close") is not None:
                values["estimatedclosedate"] = str(person["expected_close"])
            for col, limit in (("emailaddress1", 100), ("lastname", 50), ("firstname", 50)):
                if isinstance(values.get(col), str) and len(values[col]) > limit:
                    values[col] = values[col][:limit]
            if person.get("source") in SOURCES:
                values["leadsourcecode"] = SOURCES[person["source"]]
            if person.get("hub_id"):
                values[HUB_ID] = person["hub_id"]
            company, name = person.get("company") or "Unknown company", person.get("last_name") or ""
            values["subject"] = f"{company} – {name}"
            values["_ownerid_value"] = self._user_id(person.get("owner"))
            leads = self.tables["leads"]
            lead = self.write_row(leads, None, leads.check(values, None, "(new)"), when)
            has_value = person.get("value") is not None
            self._set_status(lead["leadid"], person.get("status") or "Lead", has_value, rng)
            return lead["leadid"]

    def _set_status(self, lead_id: str, status: str, has_value: bool,
                    rng: random.Random | None = None) -> None:
        state, reason, deal = STATUS[status]
        lead = self.tables["leads"].rows[lead_id]
        if status == "Closed Lost" and lead.get("_qualifyingopportunityid_value"):
            deal = (2, 5, 3)
        elif status == "Closed Lost" and has_value and rng is not None:
            state, reason, deal = QUALIFIED, 3, (2, rng.choice((4, 5)), 3)  # a lost deal
        elif status == "Closed Lost" and rng is not None:
            reason = rng.choice((4, 5, 6, 7))
        if deal is None:
            self.update_lead(lead_id, {"statecode": state, "statuscode": reason})
            return
        opp = lead.get("_qualifyingopportunityid_value")
        if opp is None:
            opp = self.qualify(lead_id)
        else:
            self.update_lead(lead_id, {"statecode": state, "statuscode": reason})
        self.update_opportunity(opp, {"statecode": deal[0], "statuscode": deal[1], "salesstage": deal[2]})

    # -- the conformance kit's handle (canonical names) ------------------------------------
    def remote_create(self, fields: dict[str, Any]) -> str:
        return self._create(fields, self.clock.now())

    def remote_update(self, remote_id: str, fields: dict[str, Any]) -> None:
        with self.lock:
            values = {col: fields[c] for c, col in _CANON.items() if c in fields}
            if fields.get("expected_close") is not None:
                values["estimatedclosedate"] = str(fields["expected_close"])
            if "source" in fields:
                values["leadsourcecode"] = SOURCES.get(fields["source"])
            if "owner" in fields:
                values["_ownerid_value"] = self._user_id(fields["owner"])
            if "hub_id" in fields:
                values[HUB_ID] = fields["hub_id"]
            if values:
                self.update_lead(remote_id, values)
            if fields.get("status"):
                self._set_status(remote_id, fields["status"], False)

    def remote_delete(self, remote_id: str) -> None:
        self.delete_lead(remote_id)

    def remote_get(self, remote_id: str) -> dict[str, Any] | None:
        with self.lock:
            lead = self.tables["leads"].find(remote_id)
            if lead is None:
                return None
            out: dict[str, Any] = {c: lead.get(col) for c, col in _CANON.items()}
            out["source"] = _SOURCE_NAMES.get(lead.get("leadsourcecode"))
            users = self.tables["systemusers"]
            owner = users.find(lead["_ownerid_value"]) if lead["_ownerid_value"] else None
            out["owner"] = (owner or {}).get("internalemailaddress") or None
            out["hub_id"] = lead.get(HUB_ID)
            out["status"] = self._canonical(lead)
            return out

    def _canonical(self, lead: dict[str, Any]) -> str:
        opp = self.tables["opportunities"].find(lead["_qualifyingopportunityid_value"]) \
            if lead.get("_qualifyingopportunityid_value") else None
        state, reason = lead["statecode"], lead["statuscode"]
        if opp and state == QUALIFIED:
            if opp["statecode"] == 1:
                return "Closed Won"
            if opp["statecode"] == 2:
                return "Closed Lost"
            if reason == 3 and opp["salesstage"] in (2, 3):
                return "Negotiation"
        return _LEAD_REASONS.get((state, reason), "Closed Lost" if state == DISQUALIFIED else "Lead")

    def remote_ids(self) -> Iterable[str]:
        with self.lock:
            return list(self.tables["leads"].rows)

    def remote_status_values(self) -> Iterable[dict[str, str]]:
        """Every status combination a lead can show: its own, and with each state of its deal."""
        combos: list[dict[str, str]] = []
        for state, (_, reasons, _) in self.tables["leads"].states.items():  # type: ignore[union-attr]
            combos += [{"statecode": str(state), "statuscode": str(r)} for r in reasons]
        deal = "qualifyingopportunityid/"
        deal_states = self.tables["opportunities"].states or {}
        for ostate, (_, oreasons, _) in deal_states.items():
            for oreason in oreasons:
                for stage in range(4):
                    combos.append({"statecode": "1", "statuscode": "3", deal + "statecode": str(ostate),
                                   deal + "statuscode": str(oreason), deal + "salesstage": str(stage)})
        return combos

    def invalid_fields(self) -> dict[str, Any]:
        """An email longer than the column's 100 characters: Dataverse refuses it (0x80044331)."""
        return {"email": "a" * 95 + "@example.com"}


"""A stateful fake of a Salesforce org's REST API (Lead, Opportunity, Task, User), served over HTTPS on loopback.

``simple-salesforce`` works against it unmodified, given the sandbox's CA::

    sandbox = SalesforceSandbox(rate=100_000)
    sandbox.seed(5_000)
    with sandbox.serve() as served:                       # https://127.0.0.1:<port>
        session = requests.Session()
        session.verify = loopback_tls().ca_file
        sf = Salesforce(instance_url=served.url, session_id=sandbox.token, session=session)
        sf.query_all("SELECT Id, Status FROM Lead WHERE IsConverted = false")

What it emulates: SOQL (see :mod:`.soql`) through ``query``/``queryAll``, with
``nextRecordsUrl`` cursors of ``Sforce-Query-Options: batchSize`` rows (default
and maximum 2000, minimum 200), answering as of the moment the query ran, at
most 10 open per user, expiring after 15 idle minutes; sObject Collections
(create, update by Id, upsert by the external id ``LeadHub_Id__c``, delete;
≤ 200 records, ``allOrNone``) with Salesforce's per-record checks (required
fields, email shape, restricted picklists, owners, unique values, read-only
fields, converted leads refusing edits) and request-level ones (unknown fields,
JSON types, the 200 cap); lead conversion into an Opportunity whose stage sets
``IsClosed``/``IsWon`` and the default probability; deletions to the recycle bin
(``IsDeleted`` rows in ``queryAll``), and merges (:meth:`SalesforceSandbox.merge_leads`: the
losers deleted with ``MasterRecordId``, as Apex and SOAP ``merge`` leave them; REST has no merge);
``SystemModstamp`` stamped per request at
second precision, rendered ``2026-01-15T10:00:00.000+0000``; bearer sessions
(401 ``INVALID_SESSION_ID``), OAuth client credentials issuing expiring tokens;
the daily API limit (``rate`` calls per rolling 24 h: every answer carries
``Sforce-Limit-Info: api-usage=N/LIMIT``, then 403 ``REQUEST_LIMIT_EXCEEDED``).

What it does not: Accounts and Contacts (conversion only mints their ids), SOQL
functions, aggregates, subqueries, semi-joins and date literals like
``LAST_N_DAYS``, Bulk API, Composite/Graph/Tree, SOAP ``convertLead``, triggers,
validation rules, duplicate rules, field-level security, concurrency limits.

``seed(n)`` maps :mod:`hub.testing.fakedata` people onto the org: funnel statuses
onto Lead Status, deal statuses onto converted leads with an Opportunity at a
matching stage (half of the Closed Lost stay unconverted, "Closed - Not
Converted"); malformed emails are left out (Salesforce refuses them) and a
missing company reads ``[not provided]``, as Web-to-Lead writes it. A lead
always has an owner: nobody's leads belong to the integration user (the API's
default owner, ``api_user_email``), which ``connector_settings`` names as the
connection's ``unassigned_owner``. Injected faults answer in Salesforce's error
shape; an injected 429 (which Salesforce never sends, a gateway in front of it
might) carries ``Retry-After: retry_after``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from hub.testing import fakedata
from hub.testing.tls import loopback_tls

from .api import SalesforceApi
from .org import EMAIL, RecordError
from .schema import CONVERTED_STATUS, SCHEMA, STAGES

__all__ = ["DEAL_STAGE", "LEAD_STATUS", "SOURCE", "SalesforceSandbox"]

#: canonical status -> Lead Status of a lead not (yet) converted
LEAD_STATUS = {"Lead": "Open - Not Contacted", "MQL": "Marketing Qualified", "SAL": "Working - Contacted",
               "SQL": "Sales Qualified", "Opportunity": "Opportunity Identified", "Negotiation": "In Negotiation",
               "Closed Won": CONVERTED_STATUS, "Closed Lost": "Closed - Not Converted", "Nurture": "Nurturing"}
#: canonical status -> the stage of a converted lead's Opportunity
DEAL_STAGE = {"Opportunity": "Qualification", "Negotiation": "Negotiation/Review", "Closed Won": "Closed Won",
              "Closed Lost": "Closed Lost"}
_NEGOTIATING = ("Proposal/Price Quote", "Negotiation/Review")
SOURCE = {"paid": "Advertisement", "organic": "Web", "referral": "External Referral", "partner": "Partner",
          "event": "Trade Show", "self-serve": "Free Trial", "outbound": "Outbound Prospecting",
          "social": "Social Media", "email": "Email Campaign"}
_FIELDS = {"first_name": "FirstName", "last_name": "LastName", "email": "Email", "phone": "Phone",
           "company": "Company", "title": "Title", "country": "Country", "domain": "Website", "industry": "Industry",
           "loss_reason": "Loss_Reason__c", "hub_id": "LeadHub_Id__c"}
_DEAL = {"value": "Amount", "probability": "Probability", "expected_close": "CloseDate"}
_CONVERTS = ("Opportunity", "Negotiation", "Closed Won")


class SalesforceSandbox(SalesforceApi):
    """A Salesforce org as a stateful fake. See the module docstring.

    ``token``: a session id that never expires. ``rate``: the daily API request
    limit (rolling 24 h; ``None``: unlimited). ``client_id``/``client_secret``:
    the connected app for the client-credentials flow, whose tokens live
    ``token_ttl`` seconds of the sandbox clock.
    """

    def __init__(self, token: str = "00D5L0000000001!sandbox-session-token", rate: int | None = 100_000, *,
                 client_id: str = "leadhub-connected-app", client_secret: str = "sandbox-client-secret",
                 token_ttl: float = 7200.0):
        super().__init__(token, rate, client_id, client_secret, token_ttl)
        with self.lock:
            self.org.api_user = self._add_user({"first_name": "LeadHub", "last_name": "Integration",
                                                "email": f"integration@{fakedata.TEAM_DOMAIN}"})
        self.add_users(fakedata.team(0))

    # -- users -------------------------------------------------------------------------
    def _add_user(self, m: dict[str, str], active: bool = True) -> str:
        values = {"Username": m["email"], "Email": m["email"], "FirstName": m["first_name"],
                  "LastName": m["last_name"], "IsActive": active}
        return self.org.write("User", None, values, self.org.now(), by="")

    def add_users(self, members: Iterable[dict[str, str]], active: bool = True) -> dict[str, str]:
        """Add users (``fakedata.team`` members) unless their email is known; returns email -> user id."""
        with self.lock:
            for m in members:
                if m["email"] not in self.user_ids:
                    self._add_user(m, active)
            return self.user_ids

    @property
    def user_ids(self) -> dict[str, str]:
        return {u["Email"]: uid for uid, u in self.org.tables["User"].items()}

    # -- records as an admin sees them -------------------------------------------------------
    @property
    def leads(self) -> dict[str, dict[str, Any]]:
        """Live leads: id -> a copy of every field (SystemModstamp in epoch ms)."""
        with self.lock:
            return {rid: dict(r) for rid, r in self.org.tables["Lead"].items() if not r["IsDeleted"]}

    @property
    def opportunities(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {rid: dict(r) for rid, r in self.org.tables["Opportunity"].items() if not r["IsDeleted"]}

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """Live tasks (sObject Collections create them, with ``WhoId``/``WhatId`` checked, and update them:
        ``Status`` ``Completed`` sets ``IsClosed``)."""
        with self.lock:
            return {rid: dict(r) for rid, r in self.org.tables["Task"].items() if not r["IsDeleted"]}

    def _stamp(self, modified: datetime | None) -> int:
        return self.org.now() if modified is None else int(modified.timestamp()) * 1000

    def _save(self, obj: str, rid: str | None, fields: dict[str, Any], now: int, strict: bool = False) -> str:
        current = self.org.tables[obj].get(rid or "")
        try:
            values = self.org.check(obj, self.org.parse(obj, fields), current, strict=strict)
        except RecordError as exc:
            raise ValueError(f"{exc.code}: {exc.message}") from None
        return self.org.write(obj, rid, values, now)

    def add_lead(self, fields: dict[str, Any], modified: datetime | None = None) -> str:
        """Create a lead as a user would (Salesforce field names; values checked, required fields not)."""
        with self.lock:
            return self._save("Lead", None, fields, self._stamp(modified))

    def update_lead(self, lead_id: str, fields: dict[str, Any], modified: datetime | None = None) -> None:
        """Edit a lead as a user would; converted leads refuse, as in Salesforce."""
        with self.lock:
            lead = self.org.live("Lead", lead_id)
            if lead is None:
                raise KeyError(lead_id)
            if lead["IsConverted"]:
                raise ValueError("CANNOT_UPDATE_CONVERTED_LEAD: cannot reference converted lead")
            self._save("Lead", lead_id, fields, self._stamp(modified))

    def delete_lead(self, lead_id: str, modified: datetime | None = None) -> None:
        with self.lock:
            if self.org.live("Lead", lead_id) is None:
                raise KeyError(lead_id)
            self.org.delete("Lead", lead_id, self._stamp(modified))

    def delete_task(self, task_id: str) -> None:
        """Delete a task as a Salesforce user would (to the recycle bin: ``ENTITY_IS_DELETED`` after)."""
        with self.lock:
            if self.org.live("Task", task_id) is None:
                raise KeyError(task_id)
            self.org.delete("Task", task_id, self.org.now())

    def merge_leads(self, master_id: str, *loser_ids: str, values: dict[str, Any] | None = None,
                    modified: datetime | None = None) -> None:
        """Merge one or two leads into ``master_id`` as Apex ``merge`` / SOAP ``merge()`` do (REST has
        no merge): the master is updated (with ``values``, else keeps its own), each loser is deleted
        with ``MasterRecordId`` set to the master ("When a record is deleted after losing a merge
        operation, its MasterRecordId field is set to the ID of the winning record", Apex Developer
        Guide, Triggers and Merge Statements), so ``queryAll`` shows it. At most three leads in all;
        converted leads refuse, as they refuse any edit (the sandbox's reading)."""
        with self.lock:
            ids = [master_id, *loser_ids]
            leads = [self.org.live("Lead", rid) for rid in ids]
            if not 2 <= len(ids) <= 3 or len(set(ids)) != len(ids) or None in leads:
                raise ValueError(f"merge needs two or three distinct live leads, got {ids}")
            if any(lead["IsConverted"] for lead in leads if lead):
                raise ValueError("CANNOT_UPDATE_CONVERTED_LEAD: cannot reference converted lead")
            now = self._stamp(modified)
            for rid in loser_ids:
                self.org.delete("Lead", rid, now)
                self.org.tables["Lead"][rid]["MasterRecordId"] = master_id
            self._save("Lead", master_id, values or {}, now)

    def convert_lead(self, lead_id: str, stage: str | None = "Qualification", deal: dict[str, Any] | None = None,
                     modified: datetime | None = None) -> str | None:
        """Convert a lead (into an Opportunity at ``stage``, unless None); returns the opportunity id."""
        with self.lock:
            return self.org.convert(lead_id, self._stamp(modified), stage=stage, deal=deal)

    def update_opportunity(self, opp_id: str, fields: dict[str, Any], modified: datetime | None = None) -> None:
        """Edit an opportunity as a user would (e.g. ``{"StageName": "Closed Won"}``)."""
        with self.lock:
            if self.org.live("Opportunity", opp_id) is None:
                raise KeyError(opp_id)
            self._save("Opportunity", opp_id, fields, self._stamp(modified))

    # -- the conformance kit's handle (canonical names) ----------------------------------------
    def connector_settings(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "instance_url": base_url, "access_token": self.token,
                "ca_bundle": loopback_tls().ca_file, "unassigned_owner": self.api_user_email}

    @property
    def api_user_email(self) -> str:
        """The integration user: the API's default owner, and so the owner of leads nobody has taken."""
        return self.org.tables["User"][self.org.api_user]["Email"]

    def _lead_values(self, fields: dict[str, Any]) -> dict[str, Any]:
        values = {_FIELDS[k]: v for k, v in fields.items() if k in _FIELDS}
        if fields.get("source") is not None:
            values["LeadSource"] = SOURCE.get(fields["source"], fields["source"])
        if "owner" in fields:
            uid = self.user_ids.get((fields["owner"] or "").lower())
            if fields["owner"] and uid is None:
                raise ValueError(f"no user with email {fields['owner']!r}")
            values["OwnerId"] = uid or self.org.api_user  # nobody's: the default owner's
        return values

    @staticmethod
    def _deal_values(fields: dict[str, Any]) -> dict[str, Any]:
        values = {_DEAL[k]: v for k, v in fields.items() if k in _DEAL}
        if values.get("Probability") is not None:
            values["Probability"] = round(values["Probability"] * 100, 4)
        if isinstance(values.get("CloseDate"), date):
            values["CloseDate"] = values["CloseDate"].isoformat()
        return values

    def remote_create(self, fields: dict[str, Any]) -> str:
        with self.lock:
            status = fields.get("status") or "Lead"
            values = self._lead_values(fields)
            values["Status"] = LEAD_STATUS["Lead" if status in _CONVERTS else status]
            now = self.org.now()
            rid = self._save("Lead", None, values, now)
            if status in _CONVERTS:
                self.org.convert(rid, now, stage=DEAL_STAGE[status], deal=self._deal_values(fields))
            return rid

    def remote_update(self, remote_id: str, fields: dict[str, Any]) -> None:
        with self.lock:
            lead = self.org.live("Lead", remote_id)
            if lead is None:
                raise KeyError(remote_id)
            status, now = fields.get("status"), self.org.now()
            values, deal = self._lead_values(fields), self._deal_values(fields)
            if lead["IsConverted"]:
                if values or (status and status not in DEAL_STAGE):
                    raise ValueError(f"lead {remote_id} is converted: Salesforce refuses edits to it "
                                     f"(its status follows the deal, which has no {status!r} stage)")
                opp = lead["ConvertedOpportunityId"]
                if status:
                    deal["StageName"] = DEAL_STAGE[status]
                if deal and opp:
                    self._save("Opportunity", opp, deal, now)
                return
            if status and status not in _CONVERTS:
                values["Status"] = LEAD_STATUS[status]
            if values:
                self._save("Lead", remote_id, values, now)
            if status in _CONVERTS:
                self.org.convert(remote_id, now, stage=DEAL_STAGE[status], deal=deal)

    def remote_status_values(self) -> list[dict[str, str]]:
        """Every Lead Status value a lead can hold (a converted lead's status then follows its deal)."""
        return [{"Status": value} for value in SCHEMA["Lead"]["status"].values]

    @staticmethod
    def invalid_fields() -> dict[str, Any]:
        """Salesforce refuses a malformed email (``INVALID_EMAIL_ADDRESS``)."""
        return {"email": "not-an-email@"}

    def remote_delete(self, remote_id: str) -> None:
        self.delete_lead(remote_id)

    def remote_merge(self, survivor_id: str, loser_id: str) -> str:
        """Merge ``loser_id`` into ``survivor_id`` as a Salesforce user would; returns the survivor."""
        self.merge_leads(survivor_id, loser_id)
        return survivor_id

    def remote_get(self, remote_id: str) -> dict[str, Any] | None:
        with self.lock:
            lead = self.org.live("Lead", remote_id)
            if lead is None:
                return None
            out = {k: lead.get(f) for k, f in _FIELDS.items()}
            out["source"] = {v: k for k, v in SOURCE.items()}.get(lead["LeadSource"], lead["LeadSource"])
            owner = self.org.tables["User"].get(lead["OwnerId"] or "")
            out["owner"] = owner["Email"] if owner and owner["Id"] != self.org.api_user else None
            opp = self.org.live("Opportunity", lead["ConvertedOpportunityId"])
            out["status"] = self._status(lead, opp)
            out["value"] = opp["Amount"] if opp else None
            out["probability"] = round(opp["Probability"] / 100, 6) if opp and opp["Probability"] is not None \
                else None
            out["expected_close"] = date.fromisoformat(opp["CloseDate"]) if opp and opp["CloseDate"] else None
            if opp:
                out["loss_reason"] = opp["Loss_Reason__c"]
            return out

    @staticmethod
    def _status(lead: dict[str, Any], opp: dict[str, Any] | None) -> str | None:
        if opp is not None:
            if opp["IsClosed"]:
                return "Closed Won" if opp["IsWon"] else "Closed Lost"
            return "Negotiation" if opp["StageName"] in _NEGOTIATING else "Opportunity"
        return {v: k for k, v in LEAD_STATUS.items()}.get(lead["Status"])

    def remote_ids(self) -> list[str]:
        with self.lock:
            return [rid for rid, r in self.org.tables["Lead"].items() if not r["IsDeleted"]]

    # -- seeding ----------------------------------------------------------------------------
    def seed(self, n: int, seed: int = 0, *, days: float = 365.0) -> list[str]:
        """Add ``n`` fakedata people as leads created and modified over the past ``days``. Returns their ids."""
        people = fakedata.people(n, seed)
        owners = self.add_users(fakedata.team(seed))
        rng = random.Random(f"salesforce:{seed}")
        open_stages = [s for s, _, closed, _ in STAGES if not closed and s not in _NEGOTIATING]
        ids = []
        with self.lock:
            now = self.org.now()
            span = int(days * 86_400) * 1000
            for person in people:
                created = now - 3_600_000 - int(rng.random() * span) // 1000 * 1000
                updated = created + int(rng.random() * (now - 60_000 - created)) // 1000 * 1000
                status = person["status"]
                values = {_FIELDS[k]: person[k] for k in _FIELDS if k in person and person[k] is not None
                          and k != "loss_reason"}
                if not EMAIL.match(values.get("Email", "")):
                    values.pop("Email", None)
                values["Company"] = values.get("Company") or "[not provided]"
                values["LeadSource"] = SOURCE.get(person["source"] or "")
                values["OwnerId"] = owners.get(person["owner"] or "", self.org.api_user)
                convert = status in _CONVERTS or (status == "Closed Lost" and rng.random() < 0.5)
                values["Status"] = LEAD_STATUS["Lead" if convert else status]
                if status == "Closed Lost" and not convert:
                    values["Loss_Reason__c"] = person["loss_reason"]
                rid = self.org.write("Lead", None, values, created, by=values["OwnerId"])
                if convert:
                    stage = (rng.choice(open_stages) if status == "Opportunity" else rng.choice(_NEGOTIATING)
                             if status == "Negotiation" else DEAL_STAGE[status])
                    deal = self._deal_values(person)
                    deal["Loss_Reason__c"] = person["loss_reason"]
                    opp = self.org.convert(rid, updated, stage=stage, deal=deal, by=values["OwnerId"])
                    touched = updated + int(rng.random() * (now - 60_000 - updated)) // 1000 * 1000
                    self.org.write("Opportunity", opp, {}, touched, by=values["OwnerId"])
                else:
                    self.org.write("Lead", rid, {}, updated, by=values["OwnerId"])
                ids.append(rid)
        return ids


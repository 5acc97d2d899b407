"""Salesforce: the Lead object, and the Opportunity a converted lead becomes, through ``simple-salesforce``.

Reads: SOQL on ``SystemModstamp`` through ``queryAll`` (so deleted leads arrive as deletions; one that lost a
merge carries ``MasterRecordId``, the winner, reported as ``merged_into``: Apex Developer Guide, "Triggers and
Merge Statements"; REST cannot merge, only SOAP ``merge()`` and Apex: ``can_merge`` is False), ascending
with ``Id`` breaking ties, ``>=`` the cursor with a seen-set (:class:`hub.connector.TimestampCursor`), paged by
``nextRecordsUrl`` in batches of 2000. A converted lead's own stamp stops moving, so a second stream reads
converted leads whose Opportunity changed (``ConvertedOpportunity.SystemModstamp``): their canonical status
follows the deal (Closed Won/Lost by ``IsWon``, open stages via ``stage_map``), as do value, probability, close date.

Writes: sObject Collections, 200 records a call, ``allOrNone: false``. New leads
are upserted on the external id ``LeadHub_Id__c`` (the hub's lead id), so a
retried create never duplicates; known leads are updated by Id, which also
stamps the hub's id on leads first seen in Salesforce. Salesforce refuses edits
to converted leads (``CANNOT_UPDATE_CONVERTED_LEAD``): their status goes to the
deal as a stage, the deal's fields to the deal, and anything else is reported.

Calls go through a requests session whose adapter is the connection's guard
(:mod:`hub.http_requests`): retries, backoff and metering live there.
``Sforce-Limit-Info`` (``api-usage=N/LIMIT``) is read from every answer, and the
connector stops itself, with a :class:`~hub.errors.RateLimitError` naming the
daily budget, before Salesforce's 403 ``REQUEST_LIMIT_EXCEEDED``.

Auth: a session or access token with ``instance_url``; or the OAuth client
credentials flow against ``token_url`` (simple-salesforce hard-codes
``https://{domain}.salesforce.com`` for its own logins, so the hub posts to the
configured token URL itself and refreshes once when the token expires).
``ca_bundle`` trusts a private CA (a corporate proxy's, the sandbox's).

Owners map by e-mail to active Users. A Salesforce lead always has an owner:
name the user who holds leads nobody has taken (the default lead owner, often
the integration user) as ``unassigned_owner``, and the hub reads that user — or
a queue — as "no owner" and writes "no owner" as that user.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from pydantic import SecretStr, model_validator

from hub.connector import (
    Connector,
    ConnectorSettings,
    Limits,
    RawPage,
    RawRecord,
    RemoteUser,
    RemoteWrite,
    TimestampCursor,
    WriteResult,
)
from hub.errors import AuthError, ConnectorError
from hub.hookspecs import hookimpl
from hub.http_requests import guarded_session

from .maps import DEAL, DEAL_FIELDS, DEAL_STAGES, FIELD_MAP, PERCENT_FIELDS, STAGE_MAP, STATUS_MAP, VALUE_MAPS
from .tasks import SalesforceTasks
from .wire import RETRYABLE, DailyBudget, error_codes, meter_kind, salesforce_error, soql_datetime, stamp_ms, version_of

if TYPE_CHECKING:  # simple-salesforce (and zeep under it) loads in ~0.7 s: only when a connection is used
    from simple_salesforce import Salesforce

__all__ = ["DailyBudget", "SalesforceConnector", "SalesforceSettings", "hub_register_connectors"]

T = TypeVar("T")


class SalesforceSettings(ConnectorSettings):
    """A Salesforce connection. ``instance_url`` (alias ``base_url``) is the org's My Domain URL."""

    base_url: str = ""
    instance_url: str = ""
    access_token: SecretStr | None = None
    token_url: str | None = None  # e.g. https://MyDomain.my.salesforce.com/services/oauth2/token
    client_id: str | None = None
    client_secret: SecretStr | None = None
    ca_bundle: str | None = None  # a CA bundle (path) to trust instead of the system's
    api_version: str = "59.0"
    external_id_field: str = "LeadHub_Id__c"  # on Lead: External ID, Unique, text(32)
    stage_map: dict[str, str] | None = None  # open Opportunity stage -> canonical status (overrides)
    deal_stages: dict[str, str] | None = None  # canonical status -> stage written on a deal (overrides)
    api_reserve: int = 0  # daily API calls to leave untouched for other integrations
    unassigned_owner: str | None = None  # e-mail of the user holding leads nobody owns (the default lead owner)

    @model_validator(mode="after")
    def _one_instance_and_a_credential(self) -> SalesforceSettings:
        a, b = self.instance_url.rstrip("/"), self.base_url.rstrip("/")
        if a and b and a != b:
            raise ValueError("instance_url and base_url name different instances: give one")
        self.instance_url = self.base_url = a or b
        if not (self.access_token or (self.token_url and self.client_id and self.client_secret)):
            raise ValueError("give access_token, or token_url with client_id and client_secret")
        if not self.instance_url and not self.token_url:
            raise ValueError("instance_url is required")
        return self


class SalesforceConnector(SalesforceTasks, Connector):
    name = "salesforce"
    title = "Salesforce"
    settings_model = SalesforceSettings
    lead_object = "Lead"
    field_map = FIELD_MAP
    value_maps = VALUE_MAPS
    status_map = STATUS_MAP
    owner_field = "OwnerId"
    hub_id_field = "LeadHub_Id__c"
    # no per-second limit on REST: the budget is the daily one (100,000 + per-licence adders)
    limits = Limits(page_size=2000, batch_size=200, rate=None, daily=100_000)
    hints = ()  # Sforce-Limit-Info is read per connection, by its DailyBudget (added to the guard below)
    sandbox = "connectors.salesforce.sandbox:SalesforceSandbox"

    settings: SalesforceSettings

    def __init__(self, settings: SalesforceSettings, **kw: Any):
        super().__init__(settings, **kw)
        self.hub_id_field = settings.external_id_field
        self.daily = DailyBudget(self.limits.daily or 100_000, settings.api_reserve, self.connection)
        self.guard.hints.append(self.daily)
        if not settings.unlimited:
            self.guard.budgets.append(self.daily)
        self.session = guarded_session(self.guard, verify=settings.ca_bundle or True, timeout=settings.timeout,
                                       kind=meter_kind)
        self.stages = {**STAGE_MAP, **(settings.stage_map or {})}
        self.deal_stages = {**DEAL_STAGES, **(settings.deal_stages or {})}
        self._client: Salesforce | None = None
        self._static_token = settings.access_token is not None
        self._converted: dict[str, str | None] = {}  # converted lead id -> its opportunity id, as read

    # -- talking to Salesforce ---------------------------------------------------------------
    @property
    def client(self) -> Salesforce:
        from simple_salesforce import Salesforce

        if self._client is None:
            s = self.settings
            if self._static_token and s.access_token is not None:
                token, url = s.access_token.get_secret_value(), s.instance_url
            else:
                token, url = self._login()
            self._client = Salesforce(instance_url=url, session_id=token, session=self.session,
                                      version=s.api_version)
        return self._client

    def _login(self) -> tuple[str, str]:
        s = self.settings
        assert s.token_url and s.client_id and s.client_secret
        resp = self.session.post(s.token_url, data={"grant_type": "client_credentials", "client_id": s.client_id,
                                                    "client_secret": s.client_secret.get_secret_value()},
                                 headers={"Accept": "application/json"})
        try:
            data = resp.json()
        except ValueError:
            data = {}
        if resp.status_code != 200 or not isinstance(data, dict) or "access_token" not in data:
            why = f"{data.get('error', '')}: {data.get('error_description', '')}" if isinstance(data, dict) else ""
            raise AuthError(f"token: client credentials refused by {s.token_url} (HTTP {resp.status_code}): "
                            f"{why or resp.text[:200]}", connection=self.connection, status=resp.status_code)
        return data["access_token"], s.instance_url or data.get("instance_url", "")

    def _call(self, fn: Callable[[Salesforce], T]) -> T:
        """Run one client call, mapping simple-salesforce's errors onto the hub's error tree."""
        from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession

        for attempt in (0, 1):
            try:
                return fn(self.client)
            except SalesforceExpiredSession as exc:
                if attempt == 0 and self.settings.token_url and self.settings.client_id:
                    self._client, self._static_token = None, False  # a fresh token, once
                    continue
                error = salesforce_error(exc, self.connection)
            except SalesforceError as exc:
                error = salesforce_error(exc, self.connection)
            except requests.exceptions.SSLError as exc:
                error = ConnectorError(f"TLS verification failed: {exc}; set ca_bundle to the CA that signed "
                                       "the instance's certificate", connection=self.connection)
            except requests.RequestException as exc:
                error = ConnectorError(f"{type(exc).__name__}: {exc}", connection=self.connection)
            # raised outside the handler: no chained traceback keeps the response (and its socket) alive
            raise error
        raise AssertionError("unreachable")

    def _pages(self, soql: str, include_deleted: bool = False) -> Iterator[list[dict[str, Any]]]:
        headers = {"Sforce-Query-Options": f"batchSize={min(2000, max(200, self.page_size))}"}
        data = self._call(lambda sf: sf.query(soql, include_deleted=include_deleted, headers=headers))
        while True:
            yield data.get("records") or []
            url = data.get("nextRecordsUrl")
            if data.get("done", True) or not url:
                return
            data = self._call(lambda sf, url=url: sf.query_more(url, identifier_is_url=True, headers=headers))

    def _collection(self, method: str, path: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = {"allOrNone": False, "records": records}
        return self._call(lambda sf: sf.restful(path, method=method, json=body)) or []

    # -- reads -----------------------------------------------------------------------------
    @cached_property
    def _select(self) -> str:
        names = ["Id", "IsDeleted", "MasterRecordId", "IsConverted", "ConvertedOpportunityId", "SystemModstamp",
                 *self.fields.values(), *self.statuses.fields, self.owner_field, self.hub_id_field,
                 f"{DEAL}.StageName", f"{DEAL}.IsClosed", f"{DEAL}.IsWon", f"{DEAL}.SystemModstamp",
                 *(f"{DEAL}.{f}" for f in DEAL_FIELDS.values())]
        unique: dict[str, str] = {}
        for n in names:  # SOQL refuses a field selected twice, in any case
            unique.setdefault(n.lower(), n)
        return ", ".join(unique.values())

    def _raw(self, rec: dict[str, Any]) -> RawRecord:
        props = {k: v for k, v in rec.items() if k != "attributes" and not isinstance(v, dict)}
        if isinstance(rec.get(DEAL), dict):
            props.update({f"{DEAL}.{k}": v for k, v in rec[DEAL].items() if k != "attributes"})
        if props.get("IsConverted"):
            self._converted[props["Id"]] = props.get("ConvertedOpportunityId")
        modified = datetime.fromtimestamp(stamp_ms(props["SystemModstamp"]) / 1000, UTC)
        return RawRecord(props["Id"], modified, props, bool(props.get("IsDeleted")), props.get("MasterRecordId"))

    def read_pages(self, cursor: dict[str, Any] | None) -> Iterator[RawPage]:
        cursor = cursor or {}
        leads, deals = TimestampCursor(cursor.get("leads")), TimestampCursor(cursor.get("deals"))
        fresh = "deals" not in cursor  # the first run reads every deal as it stands through its lead
        where = f" WHERE SystemModstamp >= {soql_datetime(leads.since)}" if leads.since is not None else ""
        for batch in self._pages(f"SELECT {self._select} FROM Lead{where} ORDER BY SystemModstamp, Id",
                                  include_deleted=True):
            page = []
            for rec in batch:
                raw = self._raw(rec)
                rid, ms, version = raw.remote_id, stamp_ms(raw.props["SystemModstamp"]), version_of(raw)
                if fresh:  # any later change to a deal is stamped at or after every stamp seen now
                    deals.advance(rid, max(ms, stamp_ms(raw.props.get(f"{DEAL}.SystemModstamp"))), version)
                if leads.admit(rid, ms, version):
                    leads.advance(rid, ms, version)
                    page.append(raw)
            yield RawPage(page, {"leads": leads.to_dict(), "deals": deals.to_dict()})
        if fresh:
            return
        where = f" AND {DEAL}.SystemModstamp >= {soql_datetime(deals.since)}" if deals.since is not None else ""
        soql = (f"SELECT {self._select} FROM Lead WHERE IsConverted = true AND ConvertedOpportunityId != null"
                f"{where} ORDER BY {DEAL}.SystemModstamp, Id")
        for batch in self._pages(soql):
            page = []
            for rec in batch:
                raw = self._raw(rec)
                rid, version = raw.remote_id, version_of(raw)
                ms = stamp_ms(raw.props.get(f"{DEAL}.SystemModstamp"))
                if deals.admit(rid, ms, version):
                    deals.advance(rid, ms, version)
                    raw.modified = max(raw.modified, datetime.fromtimestamp(ms / 1000, UTC))
                    page.append(raw)
            yield RawPage(page, {"leads": leads.to_dict(), "deals": deals.to_dict()})

    @property
    def _unassigned_id(self) -> str | None:
        email = (self.settings.unassigned_owner or "").lower()
        return next((u.id for u in self._all_users if u.email.lower() == email), None) if email else None

    @cached_property
    def _all_users(self) -> list[RemoteUser]:
        users = []
        for batch in self._pages("SELECT Id, Email, Name FROM User WHERE IsActive = true ORDER BY Id"):
            users += [RemoteUser(u["Id"], u["Email"], u.get("Name") or "") for u in batch if u.get("Email")]
        return users

    def list_owners(self) -> list[RemoteUser]:
        """Active users, less the one standing for "nobody" (``unassigned_owner``)."""
        nobody = (self.settings.unassigned_owner or "").lower()
        return [u for u in self._all_users if u.email.lower() != nobody]

    def encode(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        props = super().encode(fields)
        if self.owner_field in props and props[self.owner_field] is None:  # Salesforce has no ownerless lead
            props[self.owner_field] = self._unassigned_id
        return props

    def mapped(self, fields: Mapping[str, Any], remote_id: str | None = None) -> dict[str, Any]:
        """An open lead cannot hold its deal's fields (value, probability, close date): only a converted one."""
        held = super().mapped(fields, remote_id)
        if remote_id is None or remote_id not in self._converted:
            for canon, remote in self.fields.items():
                if remote.startswith(f"{DEAL}."):
                    held.pop(canon, None)
        return held

    def decode(self, props: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        owner = str(props.get(self.owner_field) or "")
        if owner.startswith("00G") or (owner and owner == self._unassigned_id):  # a queue, or the default owner
            props = {**props, self.owner_field: None}
        converted = bool(props.get(f"{DEAL}.StageName"))
        if converted:  # the deal now holds the fields Setup maps onto it at conversion
            props = {**props, **{lf: props.get(f"{DEAL}.{of}") for lf, of in DEAL_FIELDS.items()}}
        fields, problems = super().decode(props)
        for canon, remote in self.fields.items():
            if remote in PERCENT_FIELDS and isinstance(fields.get(canon), (int, float)):
                fields[canon] = round(fields[canon] / 100, 6)
        if converted:
            fields["status"] = self.deal_status(props)
            problems = [p for p in problems if not p.startswith("status ")]
        return fields, problems

    def deal_status(self, props: dict[str, Any]) -> str:
        """A converted lead's canonical status, from its Opportunity (flattened ``ConvertedOpportunity.*``)."""
        if props.get(f"{DEAL}.IsClosed"):
            return "Closed Won" if props.get(f"{DEAL}.IsWon") else "Closed Lost"
        return self.stages.get(props.get(f"{DEAL}.StageName") or "", "Opportunity")

    def encode_value(self, name: str, value: Any) -> Any:
        if self.fields.get(name) in PERCENT_FIELDS and isinstance(value, (int, float)):
            return round(value * 100, 4)
        return super().encode_value(name, value)

    # -- writes ----------------------------------------------------------------------------
    def _lead_record(self, w: RemoteWrite) -> dict[str, Any]:
        props = {k: v for k, v in w.props.items()
                 if "." not in k and not (k == self.owner_field and v is None)}  # a lead always has an owner
        return {"attributes": {"type": self.lead_object}, **props}

    @staticmethod
    def _result(w: RemoteWrite, r: dict[str, Any]) -> WriteResult:
        if r.get("success"):
            return WriteResult(w.hub_id, True, r.get("id") or w.remote_id)
        text = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in r.get("errors") or [])
        return WriteResult(w.hub_id, False, w.remote_id, text or "refused without a reason",
                           retryable=bool(error_codes(r) & RETRYABLE))

    def write_batch(self, batch: list[RemoteWrite]) -> list[WriteResult]:
        results: dict[str, WriteResult] = {}
        deals = [w for w in batch if w.remote_id in self._converted]
        creates = [w for w in batch if not w.remote_id]
        updates = [w for w in batch if w.remote_id and w.remote_id not in self._converted]
        if creates:
            path = f"composite/sobjects/{self.lead_object}/{self.hub_id_field}"
            for w, r in zip(creates, self._collection("PATCH", path, [self._lead_record(w) for w in creates])):
                results[w.hub_id] = self._result(w, r)
        if updates:
            records = [{**self._lead_record(w), "Id": w.remote_id} for w in updates]
            for w, r in zip(updates, self._collection("PATCH", "composite/sobjects", records)):
                if error_codes(r) == {"CANNOT_UPDATE_CONVERTED_LEAD"}:
                    deals.append(w)
                else:
                    results[w.hub_id] = self._result(w, r)
        if deals:
            results.update(self._write_deals(deals))
        return list(results.values())

    def _learn_conversions(self, lead_ids: list[str]) -> None:
        ids = ", ".join(f"'{i}'" for i in lead_ids if re.fullmatch(r"[0-9A-Za-z]{15,18}", i))
        for batch in self._pages(f"SELECT Id, IsConverted, ConvertedOpportunityId FROM Lead WHERE Id IN ({ids})"):
            for rec in batch:
                if rec.get("IsConverted"):
                    self._converted[rec["Id"]] = rec.get("ConvertedOpportunityId")

    def _deal_part(self, w: RemoteWrite) -> tuple[dict[str, Any], str]:
        """What of a write to a converted lead its deal takes, and what it cannot take (a problem)."""
        keep = {self.hub_id_field, *self.statuses.fields, *DEAL_FIELDS}
        lead_only = sorted(k for k, v in w.props.items() if "." not in k and k not in keep
                           and not (k == self.owner_field and v is None))
        deal = {k.split(".", 1)[1]: v for k, v in w.props.items() if k.startswith(f"{DEAL}.")}
        deal.update({of: w.props[lf] for lf, of in DEAL_FIELDS.items() if lf in w.props})
        problem = f"not written: {', '.join(lead_only)}" if lead_only else ""
        if any(f in w.props for f in self.statuses.fields):
            status = self.statuses.to_canonical(w.props) or ""
            if status in self.deal_stages:
                deal["StageName"] = self.deal_stages[status]
            else:
                problem = f"its status follows its Opportunity, which has no stage for {status!r}"
        return deal, problem

    def _write_deals(self, writes: list[RemoteWrite]) -> dict[str, WriteResult]:
        """Writes to converted leads: the status as the deal's stage, the deal's fields to the deal."""
        parts = {w.hub_id: self._deal_part(w) for w in writes}
        unknown = [w.remote_id for w in writes if w.remote_id and w.remote_id not in self._converted
                   and parts[w.hub_id][0] and not parts[w.hub_id][1]]
        if unknown:
            self._learn_conversions(unknown)
        results: dict[str, WriteResult] = {}
        sent: list[tuple[RemoteWrite, dict[str, Any]]] = []
        for w in writes:
            deal, problem = parts[w.hub_id]
            opp = self._converted.get(w.remote_id or "")
            if deal and not opp and not problem:
                problem = f"it has no Opportunity to take {', '.join(sorted(deal))}"
            if problem:
                results[w.hub_id] = WriteResult(w.hub_id, False, w.remote_id, "CANNOT_UPDATE_CONVERTED_LEAD: "
                                                f"cannot reference converted lead ({w.remote_id}: {problem})")
            elif deal:
                sent.append((w, {"attributes": {"type": "Opportunity"}, "Id": opp, **deal}))
            else:  # nothing the deal holds (e.g. the hub id stamp): the lead stays linked by its Id
                results[w.hub_id] = WriteResult(w.hub_id, True, w.remote_id)
        if sent:
            answers = self._collection("PATCH", "composite/sobjects", [rec for _, rec in sent])
            for (w, _), r in zip(sent, answers):
                res = self._result(w, r)
                res.remote_id = w.remote_id
                results[w.hub_id] = res
        return results

    def close(self) -> None:
        self.session.close()


@hookimpl
def hub_register_connectors(register):  # type: ignore[no-untyped-def]
    register(SalesforceConnector)

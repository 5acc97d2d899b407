"""Dynamics 365 Sales: leads (and the opportunities they qualify into) through the Dataverse Web API.

Auth: client credentials for an app registration that is a Dataverse application user, through
msal (:mod:`.auth`); ``authority`` (default ``https://login.microsoftonline.com/{tenant}``) and
``scope`` (default ``{base_url}/.default``) are settings, so the same code reaches Entra and the
sandbox. Every Web API call goes through the connection's :class:`hub.http.Guard` as an httpx
transport, with ``OData-Version: 4.0``.

Reads use change tracking, never ``modifiedon`` filters: the first sync pages through every
lead (``Prefer: odata.track-changes, odata.maxpagesize=N``, ``@odata.nextLink``) and keeps the
``@odata.deltaLink`` of the last page; later syncs GET it for rows changed since and
``$deletedEntity`` entries (surfaced as deletions). The cursor after each page holds the next
link (a paging cookie, so an interrupted snapshot resumes without loss or repeats) or the delta
link. A delta token older than ``ExpireChangeTrackingInDays`` (default 7) answers 410 (or
Dataverse's ``0x80044352``): the feed starts a full snapshot again, and rows the hub already
links are recognised by their ids, so nothing is duplicated. Deletions made while a token was
expired are not reported (a full snapshot cannot show what is gone).

Opportunities are followed the same way, before leads, with their own delta link: an
opportunity won, lost or moved to Propose re-reads the leads qualified into it
(``qualifyingopportunityid``), so the canonical status follows the deal (see :mod:`.maps`).
The deal's ``estimatedvalue`` and ``estimatedclosedate`` stand in for the lead's when set.

Merges: the Web API's unbound ``Merge`` action (``POST …/Merge`` with ``Target``, ``Subordinate``,
``UpdateContent``, ``PerformParentingChecks``; learn.microsoft.com "Merge entity using Web API")
deactivates the subordinate lead, sets its ``merged`` and its ``masterid`` to the target, so change
tracking shows it as an update; a lead read with ``_masterid_value`` is reported deleted with
``merged_into`` = that id. :meth:`DynamicsConnector.merge` calls the action. Both leads must be
active (markcarrington.dev, "MSDyn365 Internals: Merge Permissions": "master entity:{name}-{id} is
deactive"), so :meth:`DynamicsConnector.merge_blocker` names a Qualified or Disqualified side from
its synced status and the hub does not send that merge (:mod:`rules.dedup.remote`). (Adding
``_masterid_value`` to ``$select`` made an existing delta link's columns differ: the first sync
after the upgrade reads a fresh snapshot, matched to the hub's links by id.)

Writes: rows the hub knows go by ``UpdateMultiple`` (primary key), so a lead deleted in Dynamics
is refused rather than recreated as an empty shell; creates go by ``UpsertMultiple`` on the
``leadhub_leadhubid`` alternate key, so a retried create never duplicates. The Web API answers
204 without ids, so creates are read back by hub id (one query per batch).
Both are all or nothing on standard tables ("Any error that occurs in a bulk
operation with a standard table causes the entire operation to roll back", powerapps-docs
``developer/data-platform/bulk-operations.md``): a refused batch fails with the first error
(400, ``{"error": {"code", "message"}}``) and the core splits it until the bad record stands
alone. Batch size: the same page says there is no set limit for standard tables and that
"1,000 records per request is a reasonable place to start if the size of the record data is
small and there are no plug-ins", and recommends making it configurable; Dynamics 365 Sales
registers plug-ins on ``lead`` and every refused batch costs log2(n) extra calls, so the default
is 100 (``batch_size`` setting). Rate: service protection allows 6,000 requests per user per
5-minute sliding window (429, ``Retry-After``); ``x-ms-ratelimit-burst-remaining-xrm-requests``
reaching 0 pauses the budget briefly.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from hub.connector import Connector, ConnectorSettings, Limits, RawPage, RawRecord, RemoteUser, RemoteWrite, WriteResult
from hub.errors import AuthError, ConnectorError, MergeBlocked
from hub.hookspecs import hookimpl
from hub.http import Answer, GuardedTransport, Rate

from .auth import EntraAuth
from .maps import DEAL, DEAL_FIELDS, FIELD_MAP, HUB_ID_COLUMN, STATUS_MAP, VALUE_MAPS
from .tasks import DynamicsTasks

__all__ = ["DynamicsConnector", "DynamicsSettings", "burst_hint", "hub_register_connectors"]

log = logging.getLogger(__name__)

HEADERS = {"OData-Version": "4.0", "OData-MaxVersion": "4.0", "Accept": "application/json"}
EXPIRED = "0x80044352"  # ExpiredVersionStamp: the delta token is older than ExpireChangeTrackingInDays
DEAL_SELECT = ("statecode", "statuscode", "salesstage", "estimatedvalue", "estimatedclosedate", "modifiedon")
_IDS_PER_QUERY = 200  # GUIDs per In() filter: ~9 KB of URL, well under the Web API's 32 KB
_CODES = ("statecode", "statuscode", "salesstage")
MASTER = "_masterid_value"  # on a lead merged into another: that lead (masterid)
MAX_PAGE = 5000  # Dataverse's default and largest page
#: a lead's inactive states (statecode): Dataverse refuses to merge a lead in one of them
_INACTIVE_STATES = {"1": "Qualified", "2": "Disqualified"}


class DynamicsSettings(ConnectorSettings):
    base_url: str  # the org, e.g. https://contoso.crm4.dynamics.com
    tenant_id: str
    client_id: str
    client_secret: SecretStr
    authority: str = "https://login.microsoftonline.com/{tenant}"
    scope: str | None = None  # default: {base_url}/.default
    api_version: str = "v9.2"
    ca_bundle: str | None = None  # a CA file to trust (a TLS-inspecting proxy, the sandbox)
    batch_size: int | None = None  # Update/UpsertMultiple targets per call (default 100)
    hub_id_column: str = HUB_ID_COLUMN


def burst_hint(answer: Answer) -> float | None:
    """``x-ms-ratelimit-burst-remaining-xrm-requests: 0``: the 5-minute window is spent; pause a
    second rather than bounce off a 429 (whose ``Retry-After`` then says how long)."""
    if answer.status == 429:
        return None
    for k, v in answer.headers.items():
        if k.lower() == "x-ms-ratelimit-burst-remaining-xrm-requests" and v.strip() == "0":
            return 1.0
    return None


class _Expired(ConnectorError):
    """A delta link older than the org's change-tracking retention."""


def _when(stamp: str | None) -> datetime:
    if not stamp:
        return datetime.now(UTC)
    return datetime.fromisoformat(stamp)  # Python 3.11 reads the trailing Z


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _deleted(row: dict[str, Any]) -> bool:
    return str(row.get("@odata.context", "")).endswith("$deletedEntity")


def _in(column: str, values: Iterable[str]) -> str:
    quoted = ",".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"Microsoft.Dynamics.CRM.In(PropertyName='{column}',PropertyValues=[{quoted}])"


def _kind(request: httpx.Request) -> str:
    tail = request.url.path.split("/api/data/", 1)[-1].split("/", 1)[-1]
    return f"{request.method} {tail.split('(')[0].rsplit('Microsoft.Dynamics.CRM.', 1)[-1]}"


class DynamicsConnector(DynamicsTasks, Connector):
    name = "dynamics"
    title = "Dynamics 365 Sales"
    settings_model = DynamicsSettings
    lead_object = "leads"
    field_map = FIELD_MAP
    value_maps = VALUE_MAPS
    status_map = STATUS_MAP
    owner_field = "_ownerid_value"
    hub_id_field = HUB_ID_COLUMN
    limits = Limits(page_size=MAX_PAGE, batch_size=100, rate=Rate(6000, 300))
    hints = (burst_hint,)
    sandbox = "connectors.dynamics.sandbox:DynamicsSandbox"
    can_merge = True

    settings: DynamicsSettings

    def __init__(self, settings: DynamicsSettings, **kw: Any):
        super().__init__(settings, **kw)
        self.hub_id_field = settings.hub_id_column
        if settings.batch_size:
            self.limits = replace(self.limits, batch_size=settings.batch_size)
        base = settings.base_url.rstrip("/")
        verify: Any = ssl.create_default_context(cafile=settings.ca_bundle) if settings.ca_bundle else True
        self.auth = EntraAuth(authority=settings.authority.replace("{tenant}", settings.tenant_id),
                              client_id=settings.client_id, client_secret=settings.client_secret,
                              scope=settings.scope or f"{base}/.default", verify=verify,
                              timeout=settings.timeout, connection=self.connection)
        # make_client has no TLS option, so the guarded transport is built here around a verifying one
        transport = GuardedTransport(self.guard, httpx.HTTPTransport(verify=verify), _kind)
        self.http = httpx.Client(base_url=f"{base}/api/data/{settings.api_version}/", headers=HEADERS,
                                 timeout=settings.timeout, auth=self.auth, transport=transport)
        self._deals: dict[str, dict[str, Any]] = {}  # opportunity id -> row, as read this sync
        self._unassigned: set[str] = set()  # application users: a lead they own has no owner

    # -- calls ---------------------------------------------------------------------------
    def _send(self, method: str, url: str, *, prefer: str | None = None, **kw: Any) -> httpx.Response:
        resp = self.http.request(method, url, headers={"Prefer": prefer} if prefer else None, **kw)
        if resp.status_code < 400:
            return resp
        kind = _kind(resp.request)
        try:
            err = resp.json().get("error") or {}
        except ValueError:
            err = {}
        code, message = str(err.get("code", "")), str(err.get("message", "")) or resp.text
        if resp.status_code in (401, 403):
            detail = message or resp.headers.get("WWW-Authenticate", "")
            raise AuthError(f"{kind}: credentials refused (HTTP {resp.status_code}): {detail}",
                            connection=self.connection, status=resp.status_code)
        cls = _Expired if resp.status_code == 410 or code == EXPIRED else ConnectorError
        raise cls(f"{kind}: HTTP {resp.status_code}: {code} {message}".rstrip(), connection=self.connection,
                  status=resp.status_code, vendor_message=message)

    def _query(self, entity: str, select: Iterable[str], column: str,
               ids: Iterable[str]) -> list[dict[str, Any]]:
        """Rows of ``entity`` whose ``column`` is one of ``ids`` (In() filters, following nextLinks)."""
        ids, rows = sorted(set(ids)), []
        for start in range(0, len(ids), _IDS_PER_QUERY):
            url: str | None = entity
            params: dict[str, str] | None = {"$select": ",".join(select),
                                             "$filter": _in(column, ids[start:start + _IDS_PER_QUERY])}
            while url:
                data = self._send("GET", url, params=params, prefer=f"odata.maxpagesize={MAX_PAGE}").json()
                rows += data.get("value", [])
                url, params = data.get("@odata.nextLink"), None
        return rows

    # -- reads ---------------------------------------------------------------------------
    @property
    def lead_select(self) -> list[str]:
        status = [f for f in self.statuses.fields if "/" not in f]
        return sorted({*self.fields.values(), *status, self.owner_field, self.hub_id_field, "modifiedon",
                       "_qualifyingopportunityid_value", MASTER})

    def read_pages(self, cursor: dict[str, Any] | None) -> Iterator[RawPage]:
        state = dict(cursor or {})
        self._owners  # noqa: B018 -- loads the users (and the application users) before any row is read
        self._deals = {}
        deal_feed = self._feed("opportunities", DEAL_SELECT, state.get("opportunities"))
        for rows, feed, snapshot, restarted in deal_feed:
            state["opportunities"] = feed
            if restarted:
                state["leads"] = None  # deal changes in the lost window are unknown: re-read every lead
            deals = {r["opportunityid"]: r for r in rows if not _deleted(r)}
            self._deals.update(deals)
            records: list[RawRecord] = []
            if deals and not snapshot and state.get("leads") is not None:
                leads = self._query("leads", self.lead_select, "qualifyingopportunityid", deals)
                records = self._records(leads)
            yield RawPage(records, dict(state))
        for rows, feed, _, _ in self._feed("leads", self.lead_select, state.get("leads")):
            state["leads"] = feed
            yield RawPage(self._records(rows), dict(state))

    def _feed(self, entity: str, select: Iterable[str], feed: dict[str, Any] | None
              ) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any], bool, bool]]:
        """Pages of one change-tracked entity set: (rows, feed state after, in snapshot, restarted)."""
        first = f"{entity}?$select={','.join(select)}"
        feed = feed or {}
        url, snapshot = feed.get("next") or feed.get("delta"), bool(feed.get("snapshot"))
        if not url or set(httpx.URL(url).params.get("$select", "").split(",")) != set(select):
            url, snapshot = first, True  # never read, or the columns changed: a new snapshot
        restarted = False
        prefer = f"odata.track-changes,odata.maxpagesize={self.page_size}"
        while True:
            try:
                data = self._send("GET", url, prefer=prefer).json()
            except _Expired:
                if snapshot:
                    raise
                url, snapshot, restarted = first, True, True
                continue
            nxt, delta = data.get("@odata.nextLink"), data.get("@odata.deltaLink")
            if not nxt and not delta:
                log.warning("[%s] %s came without a delta link: turn on Track changes for the table, "
                            "or every sync reads it whole", self.connection, entity)
            after = {"next": nxt, "snapshot": snapshot} if nxt else {"delta": delta}
            yield data.get("value", []), after, snapshot, restarted
            if not nxt:
                return
            url, restarted = nxt, False

    def _records(self, rows: list[dict[str, Any]]) -> list[RawRecord]:
        deals = {r.get("_qualifyingopportunityid_value") for r in rows if not _deleted(r)}
        wanted = deals - {None, *self._deals}
        if wanted:
            self._deals.update((d["opportunityid"], d) for d in
                               self._query("opportunities", DEAL_SELECT, "opportunityid", wanted))
        now = datetime.now(UTC)
        return [RawRecord(str(r["id"]), now, {}, deleted=True) if _deleted(r) else self._raw(r) for r in rows]

    def _raw(self, row: dict[str, Any]) -> RawRecord:
        props = dict(row)
        for f in _CODES:
            if f in props:
                props[f] = _text(props[f])
        if props.get(self.owner_field) in self._unassigned:
            props[self.owner_field] = None
        modified = _when(row.get("modifiedon"))
        deal = self._deals.get(row.get("_qualifyingopportunityid_value") or "")
        if deal:
            for f in DEAL_FIELDS:
                props[DEAL + f] = _text(deal.get(f)) if f in _CODES else deal.get(f)
            for canon, column in (("value", "estimatedvalue"), ("expected_close", "estimatedclosedate")):
                if canon in self.fields and deal.get(column) is not None:
                    props[self.fields[canon]] = deal[column]
            modified = max(modified, _when(deal.get("modifiedon")))
        master = row.get(MASTER) or None  # the subordinate of a merge: deactivated, pointing at the master
        return RawRecord(str(row["leadid"]), modified, props, master is not None, master)

    # -- writes --------------------------------------------------------------------------
    def _target(self, w: RemoteWrite) -> dict[str, Any]:
        target: dict[str, Any] = {"@odata.type": "Microsoft.Dynamics.CRM.lead"}
        if w.remote_id:
            target["leadid"] = w.remote_id
        else:
            target["@odata.id"] = f"leads({self.hub_id_field}='{w.hub_id.replace(chr(39), chr(39) * 2)}')"
        for name, value in w.props.items():
            if name == self.owner_field:
                if value:
                    target["ownerid@odata.bind"] = f"/systemusers({value})"
            elif name in _CODES:
                if value not in (None, ""):
                    target[name] = int(value)
            else:
                target[name] = value
        return target

    def write_batch(self, batch: list[RemoteWrite]) -> list[WriteResult]:
        updates = [w for w in batch if w.remote_id]
        creates = [w for w in batch if not w.remote_id]
        if updates:  # UpdateMultiple, not an upsert: a lead deleted in Dynamics is refused, not recreated
            self._send("POST", "leads/Microsoft.Dynamics.CRM.UpdateMultiple",
                       json={"Targets": [self._target(w) for w in updates]})
        results = [WriteResult(w.hub_id, True, w.remote_id) for w in updates]
        if creates:
            self._send("POST", "leads/Microsoft.Dynamics.CRM.UpsertMultiple",
                       json={"Targets": [self._target(w) for w in creates]})
            # 204 carries no ids: find the new rows by the hub's id
            found = {r.get(self.hub_id_field): r["leadid"] for r in
                     self._query("leads", ["leadid", self.hub_id_field], self.hub_id_field,
                                 [w.hub_id for w in creates])}
            results += [WriteResult(w.hub_id, True, found[w.hub_id]) if w.hub_id in found else
                        WriteResult(w.hub_id, False, None, "written, but no lead has this LeadHub ID "
                                    "afterwards", retryable=True) for w in creates]
        return results

    def merge(self, survivor_remote_id: str, loser_remote_id: str, object: str | None = None) -> None:
        """Merge lead ``loser_remote_id`` into ``survivor_remote_id`` with the Web API's unbound
        ``Merge`` action (204, no body); Dataverse fills the survivor's empty columns from the loser
        and deactivates the loser with ``masterid``, which the next delta reports."""
        if object not in (None, self.lead_object):
            raise ValueError(f"{self.connection}: Dynamics merges are made here for leads, not {object!r}")
        lead = "Microsoft.Dynamics.CRM.lead"
        try:
            self._send("POST", "Merge", json={"Target": {"@odata.type": lead, "leadid": survivor_remote_id},
                                              "Subordinate": {"@odata.type": lead, "leadid": loser_remote_id},
                                              "UpdateContent": {"@odata.type": lead},
                                              "PerformParentingChecks": False})
        except ConnectorError as exc:
            # a side went inactive after the hub's last pull (merge_blocker judged from that pull)
            if exc.status == 400 and "is deactive" in exc.vendor_message:
                raise MergeBlocked(f"Dynamics merges only active leads: {exc.vendor_message}",
                                   record=loser_remote_id, connection=self.connection, status=exc.status,
                                   vendor_message=exc.vendor_message) from exc
            raise

    def merge_blocker(self, remote_id: str, fields: Mapping[str, Any]) -> str | None:
        """Dataverse merges only active leads: either side inactive (statecode 1 Qualified or 2
        Disqualified) and ``Merge`` answers "master entity:lead-{id} is deactive" (or "sub-entity:…").
        The state comes from the record's canonical status as last synced, through this connection's
        status map (stock map: Opportunity, Negotiation and Closed Won are Qualified, Closed Lost is
        Disqualified; Nurture is an Open status reason). Unknown or unmapped status: None."""
        status = fields.get("status")
        try:
            state = self.statuses.to_remote(str(status)).get("statecode") if status else None
        except KeyError:
            return None
        if state in (None, "", "0"):
            return None
        label = _INACTIVE_STATES.get(str(state), f"inactive (statecode {state})")
        return f"Dynamics merges only active leads; lead {remote_id} is {label} ({status})"

    def list_owners(self) -> list[RemoteUser]:
        users: list[RemoteUser] = []
        url: str | None = "systemusers"
        params: dict[str, str] | None = {
            "$select": "systemuserid,internalemailaddress,fullname,applicationid",
            "$filter": "isdisabled eq false"}
        while url:
            data = self._send("GET", url, params=params, prefer=f"odata.maxpagesize={MAX_PAGE}").json()
            for u in data.get("value", []):
                if u.get("applicationid") or not u.get("internalemailaddress"):
                    self._unassigned.add(u["systemuserid"])
                else:
                    users.append(RemoteUser(u["systemuserid"], u["internalemailaddress"],
                                            u.get("fullname") or ""))
            url, params = data.get("@odata.nextLink"), None
        return users

    def close(self) -> None:
        self.http.close()
        self.auth.close()


@hookimpl
def hub_register_connectors(register):  # type: ignore[no-untyped-def]
    register(DynamicsConnector)

"""HubSpot: contacts as leads, through the official ``hubspot-api-client``.

Reads: the CRM search API on ``lastmodifieddate``, ascending, ``>=`` the cursor
with a seen-set (:class:`hub.connector.TimestampCursor`), re-reading
``search_overlap`` seconds behind it because search results lag writes, and
restarting the query from the last timestamp seen before the search's
10,000-result cap (windowing). Writes: ``batch/update`` for records the hub
knows, ``batch/upsert`` on the unique ``leadhub_id`` property for new ones, so a
retried create can never duplicate. Limits: search pages of 200, batches of 100,
100 requests per 10 s (set ``rate`` for 190 or 250) and 5 searches per second.

Deletions: search never returns archived contacts, so after the search pages a
run lists them (``GET /crm/v3/objects/contacts?archived=true``) and reports
those archived since the last run as ``RawRecord(deleted=True)``, with their own
``archivedAt`` cursor and seen-set under ``cursor["archived"]``. That endpoint
can neither filter nor sort by ``archivedAt``, so every run pages the *whole*
archived list: ceil(archived / 100) extra calls per run, at least one, however
few records changed. ``read_deletions=False`` turns the listing off. The first
run (no ``archived`` cursor yet) reports every archived contact; those the hub
never linked are ignored by the sync engine.

Merges: HubSpot merges two contacts into a new contact with a new id, and both old ids then read
as the merged one (developer changelog "Updated merge functionality for contacts and companies";
before it, the primary kept its id). The old records are neither in search nor in the archived
list, so the search asks for the read-only ``hs_merged_object_ids`` (the ``;``-separated ids merged
into a contact) and each id listed on a contact it reads, other than its own, is reported just
before it as ``RawRecord(deleted=True, merged_into=<that contact>)``: every later read of the
survivor repeats them, which changes nothing in the hub. :meth:`HubSpotConnector.merge` asks
HubSpot to merge (``POST /crm/v3/objects/contacts/merge`` with ``primaryObjectId`` and
``objectIdToMerge``; ``basic_api.merge`` in hubspot-api-client 12); the primary's values win.

The client is pointed at any base URL by its ``host`` setting, so the same code
reaches api.hubapi.com, the sandbox, or a proxy. Responses are read raw
(``_preload_content=False``) and parsed once, which is cheaper than the client's
model deserialisation and keeps the vendor's headers for the rate budget.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import urllib3
from pydantic import SecretStr

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
    epoch_ms,
)
from hub.hookspecs import hookimpl
from hub.http import Answer, Rate

from .answer import to_answer
from .maps import FIELD_MAP, STATUS_MAP, VALUE_MAPS
from .tasks import HubSpotTasks

__all__ = ["HubSpotSettings", "HubSpotConnector", "hub_register_connectors"]

SEARCH_CAP = 10_000
LIST_LIMIT = 100  # the most a basic-API page (e.g. archived contacts) returns
MERGED_IDS = "hs_merged_object_ids"  # read-only: the ids merged into a contact, ";"-separated


class HubSpotSettings(ConnectorSettings):
    base_url: str = "https://api.hubapi.com"
    token: SecretStr
    unique_property: str = "leadhub_id"
    search_overlap: float = 60.0  # seconds re-read behind the cursor (search indexing lag)
    read_deletions: bool = True  # list archived contacts each run: ceil(archived/100) calls


def remaining_hint(answer: Answer) -> float | None:
    """``X-HubSpot-RateLimit-Remaining: 0`` means the 10-second window is spent."""
    h = {k.lower(): v for k, v in answer.headers.items()}
    if h.get("x-hubspot-ratelimit-remaining") == "0":
        return int(h.get("x-hubspot-ratelimit-interval-milliseconds", "10000")) / 1000
    return None


class HubSpotConnector(HubSpotTasks, Connector):
    name = "hubspot"
    title = "HubSpot"
    settings_model = HubSpotSettings
    lead_object = "contacts"
    field_map = FIELD_MAP
    value_maps = VALUE_MAPS
    status_map = STATUS_MAP
    owner_field = "hubspot_owner_id"
    hub_id_field = "leadhub_id"
    limits = Limits(page_size=200, batch_size=100, rate=Rate(100, 10), budgets={"search": Rate(5, 1)},
                    daily=250_000)
    hints = (remaining_hint,)
    sandbox = "connectors.hubspot.sandbox:HubSpotSandbox"
    can_merge = True

    settings: HubSpotSettings

    def __init__(self, settings: HubSpotSettings, **kw: Any):
        super().__init__(settings, **kw)
        import hubspot

        self.hub_id_field = settings.unique_property
        self.client = hubspot.Client(access_token=settings.token.get_secret_value(),
                                     host=settings.base_url.rstrip("/"),
                                     retry=urllib3.Retry(total=0, connect=0, read=0, redirect=0))

    def _call(self, kind: str, fn: Any, *args: Any, budget: str | None = None, **kw: Any) -> Any:
        extra = [self.named_budgets[budget]] if budget in self.named_budgets else []
        resp = self.guard.call(lambda: fn(*args, _preload_content=False,
                                          _request_timeout=self.settings.timeout, **kw),
                               kind=kind, to_answer=to_answer, extra_budgets=extra)
        return json.loads(resp.data)

    @property
    def properties(self) -> list[str]:
        return sorted({*self.fields.values(), *self.statuses.fields, self.owner_field, self.hub_id_field,
                       "lastmodifieddate", MERGED_IDS})

    def read_pages(self, cursor: dict[str, Any] | None) -> Iterator[RawPage]:
        from hubspot.crm.contacts import Filter, FilterGroup, PublicObjectSearchRequest

        tc = TimestampCursor(cursor)
        cursor_rest = {"archived": cursor["archived"]} if cursor and "archived" in cursor else {}
        overlap = int(self.settings.search_overlap * 1000)
        start = None if tc.since is None else tc.since - overlap
        after = 0
        while True:
            filters = [Filter(property_name="lastmodifieddate", operator="GTE", value=str(start))] \
                if start is not None else []
            req = PublicObjectSearchRequest(
                filter_groups=[FilterGroup(filters=filters)] if filters else [],
                sorts=[{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
                properties=self.properties, limit=self.page_size, after=str(after))
            data = self._call("search", self.client.crm.contacts.search_api.do_search, req, budget="search")
            records = []
            last_ms = None
            for item in data.get("results", []):
                props = item.get("properties") or {}
                ms = epoch_ms(props.get("lastmodifieddate") or item["updatedAt"])
                last_ms = ms
                if not tc.admit(item["id"], ms):
                    continue
                tc.advance(item["id"], ms)
                modified = datetime.fromtimestamp(ms / 1000, timezone.utc)
                records += [RawRecord(old, modified, {}, deleted=True, merged_into=item["id"])
                            for old in _merged_ids(props) if old != item["id"]]
                records.append(RawRecord(item["id"], modified, props, bool(item.get("archived"))))
            nxt = (data.get("paging") or {}).get("next", {}).get("after")
            yield RawPage(records, {**cursor_rest, **tc.to_dict()})
            if not nxt:
                break
            after = int(nxt)
            if after + self.page_size > SEARCH_CAP:
                # window: restart the query at the last timestamp seen; the seen-set skips repeats
                if last_ms is None or last_ms == start:
                    raise RuntimeError(f"more than {SEARCH_CAP} contacts share lastmodifieddate {last_ms}; "
                                       "HubSpot search cannot page through them")
                start, after = last_ms, 0
        if self.settings.read_deletions:
            yield from self._read_archived(TimestampCursor(cursor_rest.get("archived")), tc.to_dict())

    def _read_archived(self, prev: TimestampCursor, search: dict[str, Any]) -> Iterator[RawPage]:
        """Contacts archived at or after ``prev`` (minus its seen-set), as deletions.

        The list comes in id order, not ``archivedAt`` order, so the advanced cursor is
        only handed over with the last page; earlier pages carry ``prev``, and a pull
        interrupted mid-list re-reads it whole (a repeated deletion changes nothing).
        """
        tc = TimestampCursor(prev.to_dict())
        after = None
        while True:
            kw = {"after": after} if after else {}
            data = self._call("list_archived", self.client.crm.contacts.basic_api.get_page, archived=True,
                              limit=LIST_LIMIT, properties=["hs_object_id"], **kw)
            records = []
            for item in data.get("results", []):
                ms = epoch_ms(item.get("archivedAt") or item["updatedAt"])
                if (prev.since is not None and ms < prev.since) or not prev.admit(item["id"], ms):
                    continue
                tc.advance(item["id"], ms)
                records.append(RawRecord(item["id"], datetime.fromtimestamp(ms / 1000, timezone.utc), {},
                                         deleted=True))
            after = (data.get("paging") or {}).get("next", {}).get("after")
            yield RawPage(records, {**search, "archived": (tc if not after else prev).to_dict()})
            if not after:
                return

    def write_batch(self, batch: list[RemoteWrite]) -> list[WriteResult]:
        from hubspot.crm.contacts import (
            BatchInputSimplePublicObjectBatchInput,
            BatchInputSimplePublicObjectBatchInputUpsert,
            SimplePublicObjectBatchInput,
            SimplePublicObjectBatchInputUpsert,
        )

        api = self.client.crm.contacts.batch_api
        results: list[WriteResult] = []
        updates = [w for w in batch if w.remote_id]
        creates = [w for w in batch if not w.remote_id]
        if updates:
            body = BatchInputSimplePublicObjectBatchInput(inputs=[
                SimplePublicObjectBatchInput(id=w.remote_id, properties=_strings(w.props)) for w in updates])
            data = self._call("batch_update", api.update, body)
            results += self._results(data, updates, key="id")
        if creates:
            body = BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
                SimplePublicObjectBatchInputUpsert(id=w.hub_id, id_property=self.hub_id_field,
                                                   object_write_trace_id=w.hub_id,
                                                   properties=_strings(w.props)) for w in creates])
            data = self._call("batch_upsert", api.upsert, body)
            results += self._results(data, creates, key=self.hub_id_field)
        return results

    def _results(self, data: dict[str, Any], sent: list[RemoteWrite], key: str) -> list[WriteResult]:
        by_remote = {w.remote_id: w for w in sent}
        out: dict[str, WriteResult] = {}
        for item in data.get("results", []):
            props = item.get("properties") or {}
            hub_id = props.get(self.hub_id_field) or getattr(by_remote.get(item.get("id")), "hub_id", None)
            if hub_id:
                out[hub_id] = WriteResult(hub_id, True, item.get("id"))
        for err in data.get("errors", []):
            ctx = err.get("context") or {}
            values = ctx.get("ids" if key == "id" else key) or ctx.get(key) or []
            for v in values:
                w = by_remote.get(v) if key == "id" else next((x for x in sent if x.hub_id == v), None)
                if w is not None:
                    out[w.hub_id] = WriteResult(w.hub_id, False, w.remote_id,
                                                f"{err.get('category', 'ERROR')}: {err.get('message', '')}")
        for w in sent:  # an input HubSpot neither confirmed nor refused stays pending
            out.setdefault(w.hub_id, WriteResult(w.hub_id, False, w.remote_id, "no answer for this input",
                                                 retryable=True))
        return list(out.values())

    def merge(self, survivor_remote_id: str, loser_remote_id: str, object: str | None = None) -> None:
        """Merge contact ``loser_remote_id`` into ``survivor_remote_id`` (the primary, whose values
        win). HubSpot answers with the merged contact, which may have a new id; the next read reports
        both old ids that are gone as merged into it."""
        from hubspot.crm.contacts import PublicMergeInput

        if object not in (None, self.lead_object):
            raise ValueError(f"{self.connection}: HubSpot merges are made here for contacts, not {object!r}")
        self._call("merge", self.client.crm.contacts.basic_api.merge,
                   PublicMergeInput(primary_object_id=survivor_remote_id, object_id_to_merge=loser_remote_id))

    def list_owners(self) -> list[RemoteUser]:
        users, after = [], None
        while True:
            kw = {"limit": 100, **({"after": after} if after else {})}
            data = self._call("owners", self.client.crm.owners.owners_api.get_page, **kw)
            users += [RemoteUser(str(o["id"]), o.get("email") or "",
                                 f"{o.get('firstName', '')} {o.get('lastName', '')}".strip())
                      for o in data.get("results", []) if o.get("email")]
            after = (data.get("paging") or {}).get("next", {}).get("after")
            if not after:
                return users

    def encode_value(self, name: str, value: Any) -> Any:
        if value is None:
            return ""
        if name == "email":  # HubSpot stores emails lower-cased: remember what it will hold, not an echo
            return str(value).strip().lower()
        if hasattr(value, "isoformat"):
            return value.isoformat()
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    def close(self) -> None:
        pass


def _merged_ids(props: dict[str, Any]) -> list[str]:
    """The ids listed in a contact's ``hs_merged_object_ids`` (``"12;34"``)."""
    return [i.strip() for i in str(props.get(MERGED_IDS) or "").split(";") if i.strip()]


def _strings(props: dict[str, Any]) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in props.items()}


@hookimpl
def hub_register_connectors(register):  # type: ignore[no-untyped-def]
    register(HubSpotConnector)

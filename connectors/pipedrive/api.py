"""The Pipedrive API as the connector calls it: one guarded httpx client, Pipedrive's error shape, and the
lookups every run needs (users, lead labels, stages, persons and organizations by id or by name).

Every call goes through :meth:`PipedriveApi.call`, which charges the daily token budget first
(:class:`connectors.pipedrive.budget.DailyTokens`), takes a search slot for search endpoints (the
guard's transport cannot add a named budget per request), sends a ``POST`` (a create) through a
second guarded client that retries only a 429 (:class:`connectors.pipedrive.budget.CreatePolicy`),
and turns a refused answer into the error tree: 401/403 an :class:`hub.errors.AuthError`, any other
4xx a :class:`Refused` carrying Pipedrive's ``error`` (and ``error_info``) verbatim.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import fields
from typing import Any

from hub.connector import RemoteUser
from hub.errors import ConnectorError, RateLimitError
from hub.http import Answer, Guard, RateBudget, RetryPolicy, make_client

from .budget import CreatePolicy, DailyTokens, route_of

__all__ = ["IDS_MAX", "NamedBudget", "PipedriveApi", "Refused", "chunks", "version"]

IDS_MAX = 100  # v2 lists take at most 100 ids


class Refused(ConnectorError):
    """Pipedrive refused a request (a 4xx other than auth): ``vendor_message`` is its own wording."""


def version(row: dict[str, Any]) -> str:
    """A record's id and a digest of its content: the key of cursors' seen-sets, so an edit stamped
    with the cursor's own (whole-second, in v2) timestamp is a new version, not a record already taken."""
    digest = hashlib.blake2b(json.dumps(row, sort_keys=True, default=str).encode(), digest_size=6).hexdigest()
    return f"{row['id']}@{digest}"


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class _Lru(OrderedDict):
    """A small least-recently-used map (the person and lead caches of one connector)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size
        self.lock = threading.Lock()

    def put(self, key: Any, value: Any) -> None:
        with self.lock:
            self[key] = value
            self.move_to_end(key)
            while len(self) > self.size:
                self.popitem(last=False)

    def take(self, key: Any) -> Any:
        with self.lock:
            return self.get(key)


class NamedBudget:
    """One of the connector's named budgets, looked up at each use (a test may swap it for another)."""

    def __init__(self, budgets: dict[str, RateBudget], name: str):
        self.budgets, self.name = budgets, name

    def acquire(self) -> None:
        budget = self.budgets.get(self.name)
        if budget is not None:
            budget.acquire()


class PipedriveApi:
    """Calls and lookups for one connection. Thread-safe: writes run on a small pool."""

    def __init__(self, *, base_url: str, token: str, guard: Guard, timeout: float, v1_prefix: str, v2_prefix: str,
                 tokens: DailyTokens, search: NamedBudget | None, connection: str):
        self.v1, self.v2 = v1_prefix.rstrip("/"), v2_prefix.rstrip("/")
        self.guard, self.tokens, self.search, self.connection = guard, tokens, search, connection
        kind = lambda r: route_of(r.method, r.url.path, self.v1, self.v2)
        self.client = make_client(base_url.rstrip("/"), guard, headers={"x-api-token": token}, timeout=timeout,
                                  kind=kind)
        once = Guard(connection=guard.connection, meter=guard.meter, hints=guard.hints,
                     policy=CreatePolicy(**{f.name: getattr(guard.policy, f.name) for f in fields(RetryPolicy)}))
        once.budgets = guard.budgets  # the same list: both clients draw on one budget
        self.creating = make_client(base_url.rstrip("/"), once, headers={"x-api-token": token}, timeout=timeout,
                                    kind=kind)
        self.persons = _Lru(20_000)  # person id -> the v2 person as last read or written
        self.leads = _Lru(50_000)  # lead id -> {"person_id", "org_id", "deal_id", "hub_id", "currency"}
        self.fetched: dict[int, str] = {}  # person id -> version, as fetched during this pull
        self.org_names: dict[str, int] = {}  # lowercased name -> organization id
        self.orgs: dict[int, dict[str, Any]] = {}
        self._labels: dict[str, str] | None = None  # label id -> name
        self._stages: dict[int, str] | None = None  # stage id -> name
        self._pipelines: dict[int, int | None] = {}  # stage id -> pipeline id
        self.me: str | None = None  # the token's user: Pipedrive's owner for records given none
        self._lock = threading.Lock()
        self._label_lock = threading.Lock()
        self._org_locks: dict[str, threading.Lock] = {}

    def close(self) -> None:
        self.client.close()
        self.creating.close()

    # -- one call ---------------------------------------------------------------------------------
    def call(self, method: str, path: str, *, v2: bool = False, params: dict[str, Any] | None = None,
             body: Any = None, allow: Iterable[int] = ()) -> Any:
        """The JSON body of a successful answer (or of an answer with a status in ``allow``)."""
        url = (self.v2 if v2 else self.v1) + path
        route = route_of(method, url, self.v1, self.v2)
        self.tokens.charge(route)
        if self.search is not None and route.endswith(("/itemSearch", "/search")):
            self.search.acquire()
        try:
            client = self.creating if method == "POST" else self.client
            resp = client.request(method, url, params={k: v for k, v in (params or {}).items() if v is not None},
                                       json=body)
        except RateLimitError as exc:
            if b"daily" in str(exc).encode():
                raise RateLimitError(f"{route}: Pipedrive's daily API token budget is spent ({exc}); it resets at "
                                     "midnight, Pipedrive server time", connection=self.connection,
                                     status=429) from None
            raise
        if resp.status_code < 400 or resp.status_code in allow:
            return resp.json() if resp.content else {}
        answer = Answer(resp.status_code, resp.headers, resp.content)
        if resp.status_code in (401, 403):
            raise self.guard.error_for(answer, route)
        try:
            data = resp.json()
            message = data.get("error") or resp.text
            if data.get("error_info") and data["error_info"] not in message:
                message = f"{message} ({data['error_info']})"
        except (ValueError, AttributeError):
            message = resp.text
        raise Refused(f"{route}: HTTP {resp.status_code}: {message}", connection=self.connection,
                      status=resp.status_code, vendor_message=message)

    def v1_list(self, path: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """One v1 page: its rows and whether more follow (``additional_data.pagination``)."""
        data = self.call("GET", path, params=params)
        extra = data.get("additional_data") or {}
        paging = extra.get("pagination") or extra
        return data.get("data") or [], bool(paging.get("more_items_in_collection"))

    def v2_list(self, path: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        """One v2 page: its rows and the next cursor (``None`` at the end)."""
        data = self.call("GET", path, v2=True, params=params)
        return data.get("data") or [], (data.get("additional_data") or {}).get("next_cursor")

    # -- lookups ----------------------------------------------------------------------------------
    def users(self) -> list[RemoteUser]:
        """The account's users; also learns ``me``, the token's own user (Pipedrive's default owner)."""
        rows = self.call("GET", "/users").get("data") or []
        self.me = next((str(u["id"]) for u in rows if u.get("is_you")), self.me)
        return [RemoteUser(str(u["id"]), u.get("email") or "", u.get("name") or "") for u in rows
                if u.get("email") and not u.get("is_deleted")]

    def labels(self, refresh: bool = False) -> dict[str, str]:
        with self._lock:
            if self._labels is None or refresh:
                self._labels = {lb["id"]: lb["name"] for lb in self.call("GET", "/leadLabels").get("data") or []}
            return self._labels

    def label_id(self, name: str) -> str:
        """The id of the lead label called ``name``, creating the label if the account has none."""
        found = next((i for i, n in self.labels().items() if n == name), None)
        if found:
            return found
        with self._label_lock:  # one creation, however many writes want the label at once
            for refresh in (False, True):
                found = next((i for i, n in self.labels(refresh).items() if n == name), None)
                if found:
                    return found
            made = self.call("POST", "/leadLabels", body={"name": name, "color": "gray"})["data"]
            with self._lock:
                self._labels = {**(self._labels or {}), made["id"]: made["name"]}
            return made["id"]

    def stages(self, refresh: bool = False) -> dict[int, str]:
        """Stage id -> name, across pipelines (read once per connector unless ``refresh``)."""
        with self._lock:
            if self._stages is None or refresh:
                stages, pipelines, cursor = {}, {}, None
                while True:
                    rows, cursor = self.v2_list("/stages", {"limit": 500, "cursor": cursor})
                    for s in rows:
                        if not s.get("is_deleted"):
                            stages[s["id"]], pipelines[s["id"]] = s["name"], s.get("pipeline_id")
                    if not cursor:
                        break
                self._stages, self._pipelines = stages, pipelines
            return self._stages

    def stage_id(self, name: str, pipeline: int | None) -> int | None:
        """The stage called ``name`` (in ``pipeline`` if given, else the lowest id of that name)."""
        for refresh in (False, True):
            stages = self.stages(refresh)
            ids = sorted(i for i, n in stages.items()
                         if n == name and (pipeline is None or self._pipelines.get(i) == pipeline))
            if ids:
                return ids[0]
        return None

    def persons_by_id(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        wanted = sorted({i for i in ids if i is not None})
        found: dict[int, dict[str, Any]] = {}
        for part in chunks(wanted, IDS_MAX):
            rows, _ = self.v2_list("/persons", {"ids": ",".join(map(str, part)), "limit": IDS_MAX})
            for p in rows:
                found[p["id"]] = p
                self.persons.put(p["id"], p)
                self.fetched[p["id"]] = version(p)
        return found

    def orgs_by_id(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        wanted = sorted({i for i in ids if i is not None and i not in self.orgs})
        for part in chunks(wanted, IDS_MAX):
            rows, _ = self.v2_list("/organizations", {"ids": ",".join(map(str, part)), "limit": IDS_MAX})
            for o in rows:
                self.remember_org(o)
        return self.orgs

    def remember_org(self, org: dict[str, Any]) -> None:
        with self._lock:
            self.orgs[org["id"]] = org
            if org.get("name"):
                self.org_names.setdefault(org["name"].strip().lower(), org["id"])

    def org_for(self, name: str | None) -> int | None:
        """The organization called ``name`` (case-insensitively), found or created once per name."""
        if not name or not name.strip():
            return None
        key = name.strip().lower()
        with self._lock:
            lock = self._org_locks.setdefault(key, threading.Lock())
        with lock:  # two writes naming one new company must not create it twice
            if key in self.org_names:
                return self.org_names[key]
            data = self.call("GET", "/organizations/search", v2=True,
                             params={"term": name.strip(), "fields": "name", "exact_match": "true", "limit": 10})
            hits = [h["item"] for h in (data.get("data") or {}).get("items") or []
                    if (h.get("item") or {}).get("name", "").strip().lower() == key]
            if hits:
                org_id = min(h["id"] for h in hits)
            else:
                made = self.call("POST", "/organizations", v2=True, body={"name": name.strip()})["data"]
                self.remember_org(made)
                org_id = made["id"]
            with self._lock:
                self.org_names[key] = org_id
            return org_id

    def find_by_hub_id(self, hub_id: str) -> dict[str, list[Any]]:
        """Leads, deals and persons carrying ``hub_id`` in a custom field: ``{"lead": [ids], ...}``."""
        data = self.call("GET", "/itemSearch", v2=True, params={
            "term": hub_id, "item_types": "lead,deal,person", "fields": "custom_fields", "exact_match": "true",
            "limit": 100})
        found: dict[str, list[Any]] = {"lead": [], "deal": [], "person": []}
        for hit in (data.get("data") or {}).get("items") or []:
            item = hit.get("item") or {}
            if item.get("type") in found and hub_id in (item.get("custom_fields") or []):
                found[item["type"]].append(item["id"])
        return found

"""A stateful fake of HubSpot's CRM v3 contacts, owners and properties APIs, served on loopback.

The official ``hubspot-api-client`` works against it unmodified::

    sandbox = HubSpotSandbox(rate=100, lag=2.0)
    sandbox.seed(5_000)
    with sandbox.serve() as served:
        client = hubspot.Client(access_token=sandbox.token, host=served.url)
        client.crm.contacts.search_api.do_search(public_object_search_request=...)

Paths and shapes follow the official OpenAPI specs (Contacts v3, CRM Owners v3,
Properties v3). What it emulates: search (filter groups, operators, one sort,
200 per page, the 10,000-result cap, indexing ``lag``), list/get/create/update/
archive, the five batch calls (100 inputs, partial failure as 207 with errors
that name the failing input in ``context``), unique ``email`` (case-insensitive,
stored lowercase) and unique ``leadhub_id`` (409 CONFLICT), merges (a new merged
contact listing the old ids in ``hs_merged_object_ids``: :mod:`.merge`), property validation
(unknown property, email shape, enumeration options, numbers, dates), bearer
auth (401), the 10-second rolling limit and daily budget with HubSpot's
``X-HubSpot-RateLimit-*`` headers, and the search limit of ``search_rate``/s
(search answers carry no rate-limit headers). Every write stamps
``lastmodifieddate`` with the sandbox clock in ms, once per request, so a
batch's records share one timestamp.

Contact properties defined here (``GET /crm/v3/properties/contacts``):

* HubSpot's own: ``email firstname lastname phone mobilephone company website
  jobtitle country city industry hs_analytics_source lifecyclestage
  hs_lead_status hubspot_owner_id`` and the read-only ``hs_object_id
  createdate lastmodifieddate hs_merged_object_ids`` (writes to those are ignored).
* Sandbox custom properties (a real portal would need them created):
  ``leadhub_id`` (unique), ``company_size``, ``amount`` and
  ``hs_deal_probability`` (numbers), ``closedate`` (date, ``YYYY-MM-DD``),
  ``closed_lost_reason``.

``seed(n)`` maps :mod:`hub.testing.fakedata` people onto those (``domain`` →
``website``, ``source`` → ``hs_analytics_source`` via :data:`SOURCE_MAP`,
``status`` → ``lifecyclestage``/``hs_lead_status`` via :data:`STATUS_MAP`,
``owner`` → ``hubspot_owner_id``, ``value`` → ``amount``, ``probability`` →
``hs_deal_probability``, ``expected_close`` → ``closedate``, ``loss_reason`` →
``closed_lost_reason``). Malformed emails, and emails already taken by an
earlier duplicate, are left out: HubSpot would never have stored them.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any

from hub.testing import fakedata
from hub.testing.sandbox import Sandbox

from .kit import _Kit
from .merge import _Merge
from .model import DEFAULT_PROPERTIES, SOURCE_MAP, STATUS_MAP, _Contact, _Failure, _iso, _number
from .routes import _Routes
from .search import _Search
from .state import _State
from .tasks import _Tasks
from .validation import _EMAIL, _Validation

__all__ = ["HubSpotSandbox", "STATUS_MAP", "SOURCE_MAP", "DEFAULT_PROPERTIES"]


class _ContactsView(Mapping[str, dict[str, str]]):
    """Read access to the live (not archived) contacts: id → a copy of its properties."""

    def __init__(self, sandbox: HubSpotSandbox):
        self._sb = sandbox

    def __getitem__(self, key: str) -> dict[str, str]:
        rec = self._sb._records.get(int(key)) if str(key).isdigit() else None
        if rec is None or rec.archived_at is not None:
            raise KeyError(key)
        return dict(rec.props)

    def __iter__(self) -> Iterator[str]:
        return (str(i) for i in list(self._sb._active))

    def __len__(self) -> int:
        return len(self._sb._active)


class HubSpotSandbox(_Tasks, _Routes, _Search, _State, _Validation, _Kit, _Merge, Sandbox):
    """HubSpot CRM v3 (contacts, owners, contact properties) as a stateful fake. See the module docstring.

    ``rate``: requests per rolling 10 s (``None``: unlimited; 190 is the other
    real tier). ``search_rate``: searches per second. ``lag``: seconds before a
    write shows in search results (until then search sees the previous
    version, or nothing for a new contact). ``daily``: the daily budget.
    """

    def __init__(self, token: str = "sandbox-token", rate: int | None = 100, search_rate: int | None = 5,
                 lag: float = 0.0, daily: int = 250_000, unique_property: str = "leadhub_id"):
        super().__init__()
        self.token, self.rate, self.search_rate, self.lag, self.daily = token, rate, search_rate, lag, daily
        self.unique_property = unique_property
        self._uniques = ("email", unique_property)
        self._records: dict[int, _Contact] = {}
        self._active: list[int] = []  # live ids, ascending
        self._archived: list[int] = []
        self._index: list[tuple[int, int]] = []  # (lastmodifieddate ms, id) of live contacts, sorted
        self._by: dict[str, dict[str, int]] = {p: {} for p in self._uniques}
        self._pending: dict[int, list[tuple[int, dict[str, str] | None]]] = {}  # versions not yet searchable
        self._next_id = 1
        self._day: date | None = None
        self._used = 0
        self._defs: dict[str, dict[str, Any]] = {}
        self._defs_owners = -1
        self.owners: list[dict[str, Any]] = []
        self.add_owners(fakedata.team(0))

    # -- test and seeding API ------------------------------------------------------------
    @property
    def contacts(self) -> Mapping[str, dict[str, str]]:
        """Live contacts: id → properties (incl. hs_object_id, createdate, lastmodifieddate)."""
        return _ContactsView(self)

    def add_owners(self, members: list[dict[str, str]]) -> list[dict[str, Any]]:
        """Add owners (``fakedata.team`` members: first_name, last_name, email, role); skip known emails."""
        with self.lock:
            known = {o["email"] for o in self.owners}
            stamp = _iso(self.clock.now_ms())
            for m in members:
                if m["email"] in known:
                    continue
                k = len(self.owners)
                self.owners.append({
                    "id": str(100_000_001 + k), "email": m["email"], "firstName": m["first_name"],
                    "lastName": m["last_name"], "userId": 5_000_001 + k, "userIdIncludingInactive": 5_000_001 + k,
                    "type": "PERSON", "archived": False, "createdAt": stamp, "updatedAt": stamp,
                    "teams": [{"id": str(9001 + ("sdr", "rep", "manager").count(m.get("role", ""))),
                               "name": "Marketing" if m.get("role") == "marketing" else "Sales", "primary": True}]})
            return self.owners

    def seed(self, n: int, seed: int = 0, *, days: float = 365.0) -> list[str]:
        """Add ``n`` fakedata people as contacts, created and modified over the past ``days``. Returns their ids."""
        paused = gc.isenabled()
        gc.disable()  # ~100k new dicts would trigger many needless full collections
        try:
            return self._seed(n, seed, days)
        finally:
            if paused:
                gc.enable()

    def _seed(self, n: int, seed: int, days: float) -> list[str]:
        people = fakedata.people(n, seed)
        self.add_owners(fakedata.team(seed))
        rng = random.Random(f"hubspot:{seed}")
        with self.lock:
            owner_ids = {o["email"]: o["id"] for o in self.owners}
            now, span = self.clock.now_ms(), int(days * 86_400_000)
            newest = now - max(60_000, int(self.lag * 1000))
            ids = []
            for person in people:
                props = self._person_props(person, owner_ids)
                created = min(newest, now - 3_600_000 - int(rng.random() * span))
                updated = created + int(rng.random() * (newest - created))
                rid = self._next_id
                self._next_id += 1
                props.update(hs_object_id=str(rid), createdate=_iso(created), lastmodifieddate=_iso(updated))
                self._records[rid] = _Contact(rid, props, created, updated)
                self._active.append(rid)
                self._index.append((updated, rid))
                if "email" in props:
                    self._by["email"][props["email"]] = rid
                ids.append(str(rid))
            self._index.sort()
        return ids

    def _person_props(self, person: dict[str, Any], owner_ids: dict[str, str]) -> dict[str, str]:
        stage, lead_status = STATUS_MAP[person["status"]]
        email = (person["email"] or "").lower()
        if not _EMAIL.match(email) or email in self._by["email"]:
            email = ""
        value, probability, close = person["value"], person["probability"], person["expected_close"]
        props = {
            "firstname": person["first_name"], "lastname": person["last_name"], "email": email,
            "phone": person["phone"], "company": person["company"], "website": person["domain"],
            "jobtitle": person["title"], "country": person["country"], "industry": person["industry"],
            "company_size": person["company_size"], "hs_analytics_source": SOURCE_MAP.get(person["source"] or ""),
            "lifecyclestage": stage, "hs_lead_status": lead_status,
            "hubspot_owner_id": owner_ids.get(person["owner"] or ""),
            "amount": None if value is None else _number(str(value)),
            "hs_deal_probability": None if probability is None else _number(str(probability)),
            "closedate": close.isoformat() if close else None, "closed_lost_reason": person["loss_reason"]}
        return {k: v for k, v in props.items() if v}

    def add_contact(self, props: dict[str, Any], modified: datetime | None = None) -> str:
        """Create a contact as if typed or imported in HubSpot; returns its id.

        Property names must exist and unique values stay unique (``ValueError``), but values are
        stored as given, so a test can plant what the API would refuse (``amount: "lots"``).
        ``modified`` (aware) backdates createdate and lastmodifieddate.
        """
        with self.lock:
            ms = self.clock.now_ms() if modified is None else int(modified.timestamp() * 1000)
            try:
                return str(self._apply(None, self._validate(props, None, strict=False), ms).id)
            except _Failure as f:
                raise ValueError(f.message) from None

    def update_contact(self, contact_id: str, props: dict[str, Any], modified: datetime | None = None) -> None:
        """Change a contact as if edited in HubSpot (checked like :meth:`add_contact`); stamps it modified."""
        with self.lock:
            rec = self._find(contact_id)
            if rec is None:
                raise KeyError(contact_id)
            ms = self.clock.now_ms() if modified is None else int(modified.timestamp() * 1000)
            try:
                self._apply(rec, self._validate(props, rec.id, strict=False), ms)
            except _Failure as f:
                raise ValueError(f.message) from None

    def archive_contact(self, contact_id: str) -> None:
        """Archive (delete) a contact: gone from search and lists, listed with ``archived=true``."""
        with self.lock:
            rec = self._find(contact_id)
            if rec is None:
                raise KeyError(contact_id)
            self._archive(rec, self.clock.now_ms())

    @classmethod
    def standalone(cls, port: int = 8080, seed: int = 0, n: int = 2000, rate: int | None = 100,
                   host: str = "127.0.0.1", token: str = "sandbox-token") -> None:
        """Seed ``n`` contacts and serve until Ctrl-C, printing the base URL and token."""
        sandbox = cls(token=token, rate=rate)
        sandbox.seed(n, seed)
        sandbox.serve_forever(port, host, ready=lambda url: print(
            f"HubSpot sandbox on {url}  token: {token}  ({n} contacts, seed {seed})", flush=True))

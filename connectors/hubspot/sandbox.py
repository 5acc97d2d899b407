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
stored lowercase) and unique ``leadhub_id`` (409 CONFLICT), property validation
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
  createdate lastmodifieddate`` (writes to those are ignored).
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

import bisect
import fnmatch
import gc
import heapq
import json
import math
import random
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Any

from starlette.responses import Response

from hub.testing import fakedata
from hub.testing.sandbox import Call, Reject, Sandbox

__all__ = ["HubSpotSandbox", "STATUS_MAP", "SOURCE_MAP", "DEFAULT_PROPERTIES"]

STATUS_MAP: dict[str, tuple[str, str]] = {  # canonical → (lifecyclestage, hs_lead_status)
    "Lead": ("lead", "NEW"), "MQL": ("marketingqualifiedlead", ""), "SAL": ("salesqualifiedlead", "OPEN"),
    "SQL": ("salesqualifiedlead", "IN_PROGRESS"), "Opportunity": ("opportunity", "OPEN_DEAL"),
    "Negotiation": ("opportunity", "CONNECTED"), "Closed Won": ("customer", ""),
    "Closed Lost": ("other", "UNQUALIFIED"), "Nurture": ("lead", "BAD_TIMING")}
SOURCE_MAP = {"paid": "PAID_SEARCH", "organic": "ORGANIC_SEARCH", "referral": "REFERRALS",
              "partner": "OTHER_CAMPAIGNS", "event": "OFFLINE", "self-serve": "DIRECT_TRAFFIC",
              "outbound": "OFFLINE", "social": "SOCIAL_MEDIA", "email": "EMAIL_MARKETING"}
DEFAULT_PROPERTIES = ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname")
_ALWAYS = ("createdate", "hs_object_id", "lastmodifieddate")
_READ_ONLY = frozenset(_ALWAYS)
_BASE = "/crm/v3/objects/contacts"
MAX_BATCH, MAX_PAGE, MAX_LIST, SEARCH_CAP = 100, 200, 100, 10_000
_GROUPS, _PER_GROUP, _FILTERS = 5, 6, 18
_OPTIONS = {
    "lifecyclestage": "subscriber lead marketingqualifiedlead salesqualifiedlead opportunity customer evangelist other",
    "hs_lead_status": "NEW OPEN IN_PROGRESS OPEN_DEAL UNQUALIFIED ATTEMPTED_TO_CONTACT CONNECTED BAD_TIMING",
    "hs_analytics_source": "ORGANIC_SEARCH PAID_SEARCH EMAIL_MARKETING SOCIAL_MEDIA REFERRALS OTHER_CAMPAIGNS "
                           "DIRECT_TRAFFIC OFFLINE PAID_SOCIAL AI_REFERRALS"}
_TYPES = {"hs_object_id": "number", "amount": "number", "hs_deal_probability": "number",
          "createdate": "datetime", "lastmodifieddate": "datetime", "closedate": "date",
          "lifecyclestage": "enumeration", "hs_lead_status": "enumeration", "hs_analytics_source": "enumeration",
          "hubspot_owner_id": "enumeration"}
_STRINGS = ("email firstname lastname phone mobilephone company website jobtitle country city industry "
            "company_size closed_lost_reason leadhub_id").split()
_CUSTOM = frozenset({"leadhub_id", "company_size", "amount", "hs_deal_probability", "closedate",
                     "closed_lost_reason"})
_EMAIL = re.compile(r"^[^@\s\"]+@[^@\s\"]+\.[A-Za-z]{2,}$")
_TOKEN = re.compile(r"[^\W_]+")
_HIGH = sys.maxsize


@lru_cache(maxsize=1024)
def _day(days: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(days * 86_400))


def _iso(ms: int) -> str:
    """Epoch ms → ``2024-05-01T10:00:00.123Z``, HubSpot's timestamp form."""
    days, rest = divmod(ms, 86_400_000)
    secs, milli = divmod(rest, 1000)
    return f"{_day(days)}T{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{milli:03d}Z"


def _instant(value: Any) -> int:
    """Epoch ms from an epoch-ms number/string or an ISO-8601 date or datetime (naive = UTC)."""
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    dt = datetime.fromisoformat(text)
    return int((dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp() * 1000)


def _number(value: str) -> str:
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(value)
    return str(int(f)) if f.is_integer() and "e" not in value.lower() else str(value).strip()


class _Contact:
    __slots__ = ("id", "props", "created", "updated", "archived_at")

    def __init__(self, id: int, props: dict[str, str], created: int, updated: int):
        self.id, self.props, self.created, self.updated = id, props, created, updated
        self.archived_at: int | None = None


class _Failure(Reject):
    """One input's error (or a whole request's): HTTP status, HubSpot category, message, details."""

    def __init__(self, status: int, category: str, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(status, message, category=category, **({"errors": errors} if errors else {}))
        self.category, self.errors = category, errors or []


class _Invalid(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


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


class HubSpotSandbox(Sandbox):
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

    # -- the conformance kit's protocol (hub.testing.kit.ConformanceSandbox) --------------------
    #: canonical field -> contact property for the kit's remote_* helpers (status, source, owner
    #: and hub_id are translated on their own)
    KIT_FIELDS = {"first_name": "firstname", "last_name": "lastname", "email": "email", "phone": "phone",
                  "company": "company", "domain": "website", "title": "jobtitle", "country": "country",
                  "industry": "industry", "company_size": "company_size", "value": "amount",
                  "probability": "hs_deal_probability", "expected_close": "closedate",
                  "loss_reason": "closed_lost_reason"}
    _KIT_STAGES = {"subscriber": "Lead", "lead": "Lead", "marketingqualifiedlead": "MQL",
                   "salesqualifiedlead": "SAL", "opportunity": "Opportunity", "customer": "Closed Won",
                   "evangelist": "Closed Won", "other": "Closed Lost"}

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        """Settings for ``HubSpotConnector`` to reach this sandbox; the search overlap covers ``lag``."""
        return {"base_url": base_url, "token": self.token, "unique_property": self.unique_property,
                "search_overlap": self.lag + 1.0 if self.lag else 0.0}

    def _kit_props(self, fields: Mapping[str, Any]) -> dict[str, str]:
        props: dict[str, str] = {}
        for name, value in fields.items():
            if name == "status":
                props["lifecyclestage"], props["hs_lead_status"] = STATUS_MAP[value] if value else ("", "")
            elif name == "source":
                props["hs_analytics_source"] = SOURCE_MAP.get(value, value) if value else ""
            elif name == "owner":
                found = [o["id"] for o in self.owners if value and o["email"] == value.lower()]
                if value and not found:
                    raise ValueError(f"no HubSpot owner has the email {value!r}")
                props["hubspot_owner_id"] = found[0] if found else ""
            elif name == "hub_id":
                props[self.unique_property] = value or ""
            elif name in self.KIT_FIELDS:
                text = value.isoformat() if hasattr(value, "isoformat") else "" if value is None else str(value)
                numeric = name in ("value", "probability") and text
                props[self.KIT_FIELDS[name]] = _number(text) if numeric else text
            else:
                raise KeyError(f"HubSpotSandbox has no contact property for canonical field {name!r}")
        return props

    def remote_create(self, fields: dict[str, Any]) -> str:
        """Create a contact from canonical fields, as a HubSpot user would; returns its id."""
        return self.add_contact(self._kit_props(fields))

    def remote_update(self, remote_id: str, fields: dict[str, Any]) -> None:
        self.update_contact(remote_id, self._kit_props(fields))

    def remote_delete(self, remote_id: str) -> None:
        self.archive_contact(remote_id)

    def remote_get(self, remote_id: str) -> dict[str, Any] | None:
        """A live contact in canonical names (``hub_id`` included); None once archived."""
        with self.lock:
            rec = self._find(remote_id)
            if rec is None:
                return None
            p = dict(rec.props)
        out: dict[str, Any] = {canon: p.get(prop) for canon, prop in self.KIT_FIELDS.items()}
        for canon in ("value", "probability"):
            try:
                out[canon] = float(out[canon]) if out[canon] else None
            except ValueError:
                pass  # a value planted with add_contact that HubSpot's API would refuse: shown as stored
        if out["expected_close"] and len(out["expected_close"]) == 10:
            out["expected_close"] = date.fromisoformat(out["expected_close"])
        pair = (p.get("lifecyclestage", ""), p.get("hs_lead_status", ""))
        out["status"] = next((s for s, v in STATUS_MAP.items() if v == pair), self._KIT_STAGES.get(pair[0]))
        source = p.get("hs_analytics_source")
        back = {v: k for k, v in reversed(list(SOURCE_MAP.items()))}
        out["source"] = back.get(source, source.lower().replace("_", "-")) if source else None
        out["owner"] = next((o["email"] for o in self.owners if o["id"] == p.get("hubspot_owner_id")), None)
        out["hub_id"] = p.get(self.unique_property)
        return out

    def remote_ids(self) -> list[str]:
        with self.lock:
            return [str(i) for i in self._active]

    def remote_status_values(self) -> list[dict[str, str]]:
        """Every lifecyclestage with every hs_lead_status (or none): what a portal's contacts can hold."""
        return [{"lifecyclestage": stage, "hs_lead_status": lead_status}
                for stage in _OPTIONS["lifecyclestage"].split()
                for lead_status in ("", *_OPTIONS["hs_lead_status"].split())]

    def invalid_fields(self) -> dict[str, Any]:
        """HubSpot refuses a malformed email (``INVALID_EMAIL``)."""
        return {"email": "not-an-email@"}

    # -- the state machine ----------------------------------------------------------------
    def _definitions(self) -> dict[str, dict[str, Any]]:
        stamp = "2020-01-01T00:00:00.000Z"
        defs = {}
        for name in [*(self.unique_property if p == "leadhub_id" else p for p in _STRINGS), *_TYPES]:
            typ = _TYPES.get(name, "string")
            custom = name in _CUSTOM or name == self.unique_property
            values = ([(o["id"], f"{o['firstName']} {o['lastName']}") for o in self.owners]
                      if name == "hubspot_owner_id" else [(v, v.replace("_", " ").title())
                                                          for v in _OPTIONS.get(name, "").split()])
            defs[name] = {
                "name": name, "label": name.replace("_", " ").title(), "type": typ, "description": "",
                "fieldType": {"number": "number", "date": "date", "datetime": "date", "enumeration": "select"}
                .get(typ, "text"), "groupName": "leadhub" if custom else "contactinformation",
                "options": [{"label": label, "value": v, "displayOrder": i, "hidden": False}
                            for i, (v, label) in enumerate(values)],
                "displayOrder": -1, "hasUniqueValue": name in self._uniques[1:], "hidden": False,
                "formField": not name.startswith("hs_"), "hubspotDefined": not custom, "calculated": False,
                "externalOptions": name == "hubspot_owner_id", "createdAt": stamp, "updatedAt": stamp,
                "modificationMetadata": {"archivable": custom, "readOnlyDefinition": not custom,
                                         "readOnlyValue": name in _READ_ONLY}}
        return defs

    def _coerce(self, name: str, typ: str, text: str) -> str:
        if name == "email":
            if not _EMAIL.match(text.strip()):
                raise _Invalid("INVALID_EMAIL", f"Email address {text} is invalid")
            return text.strip().lower()
        try:
            if typ == "number":
                return _number(text)
            if typ == "date":
                ms = _instant(text)
                if ms % 86_400_000:
                    raise ValueError(text)
                return _iso(ms)[:10]
            if typ == "datetime":
                return _iso(_instant(text))
        except ValueError:
            code = {"number": "INVALID_DECIMAL", "date": "INVALID_DATE"}.get(typ, "INVALID_DATETIME")
            raise _Invalid(code, f"{text} is not a valid {typ} for property {name}"
                           + (" (a date must be midnight UTC)" if typ == "date" else "")) from None
        if typ == "enumeration":
            allowed = ([o["id"] for o in self.owners] if name == "hubspot_owner_id"
                       else _OPTIONS[name].split())
            if text not in allowed:
                raise _Invalid("INVALID_OPTION", f"{text} was not one of the allowed options: "
                                                 f"[{', '.join(allowed)}]")
        return text

    def _validate(self, raw: Any, current: int | None, strict: bool = True) -> dict[str, str]:
        """Clean property changes ("" clears), or raise the input's _Failure.

        Not ``strict`` (the test helpers): values are kept as given, like an import would, only
        names and uniqueness are checked.
        """
        if not isinstance(raw, dict):
            raise _Failure(400, "VALIDATION_ERROR", "Invalid input: properties must be an object")
        defs = self._properties_by_name
        clean, details = {}, []
        for name, value in raw.items():
            if name not in defs:
                details.append((name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
                continue
            if name in _READ_ONLY:
                continue
            text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            try:
                clean[name] = (text if text == "" else self._coerce(name, defs[name]["type"], text) if strict
                               else text.strip().lower() if name == "email" else text)
            except _Invalid as exc:
                details.append((name, exc.code, str(exc)))
        if details:
            shown = [{"isValid": False, "message": m, "error": c, "name": n, "localizedErrorMessage": m}
                     for n, c, m in details]
            raise _Failure(400, "VALIDATION_ERROR", "Property values were not valid: " + json.dumps(shown),
                           [{"message": m, "code": c, "in": n, "context": {"propertyName": [n]}}
                            for n, c, m in details])
        for prop in self._uniques:
            owner = self._by[prop].get(clean.get(prop) or "")
            if owner is not None and owner != current:
                raise _Failure(409, "CONFLICT", f"Contact already exists. Existing ID: {owner}")
        return clean

    @property
    def _properties_by_name(self) -> dict[str, dict[str, Any]]:
        if self._defs_owners != len(self.owners):
            self._defs, self._defs_owners = self._definitions(), len(self.owners)
        return self._defs

    def _snapshot(self, rec: _Contact) -> None:
        if self.lag > 0 and rec.id not in self._pending:
            self._pending[rec.id] = [(rec.updated, dict(rec.props))]

    def _unindex(self, rec: _Contact) -> None:
        i = bisect.bisect_left(self._index, (rec.updated, rec.id))
        if i < len(self._index) and self._index[i] == (rec.updated, rec.id):
            del self._index[i]

    def _apply(self, rec: _Contact | None, clean: dict[str, str], now: int) -> _Contact:
        if rec is None:
            rid = self._next_id
            self._next_id += 1
            rec = self._records[rid] = _Contact(rid, {"hs_object_id": str(rid), "createdate": _iso(now)}, now, now)
            bisect.insort(self._active, rid)
            if self.lag > 0:
                self._pending[rid] = [(-1, None)]
        else:
            self._snapshot(rec)
            self._unindex(rec)
        for name, value in clean.items():
            if name in self._by:
                old = rec.props.get(name)
                if old and self._by[name].get(old) == rec.id:
                    del self._by[name][old]
                if value:
                    self._by[name][value] = rec.id
            if value == "":
                rec.props.pop(name, None)
            else:
                rec.props[name] = value
        rec.updated = now
        rec.props["lastmodifieddate"] = _iso(now)
        bisect.insort(self._index, (now, rec.id))
        if self.lag > 0:
            self._pending[rec.id].append((now, dict(rec.props)))
        return rec

    def _archive(self, rec: _Contact, now: int) -> None:
        if rec.archived_at is not None:
            return
        self._snapshot(rec)
        self._unindex(rec)
        del self._active[bisect.bisect_left(self._active, rec.id)]
        bisect.insort(self._archived, rec.id)
        for prop in self._uniques:
            if self._by[prop].get(rec.props.get(prop, "")) == rec.id:
                del self._by[prop][rec.props[prop]]
        rec.archived_at = now
        if self.lag > 0:
            self._pending[rec.id].append((now, None))

    def _find(self, ident: Any, id_property: str | None = None, archived: bool = False) -> _Contact | None:
        key = str(ident if ident is not None else "").strip()
        if id_property in (None, "", "hs_object_id"):
            rec = self._records.get(int(key)) if key.isdigit() else None
        elif id_property in self._by:
            rid = self._by[id_property].get(key.lower() if id_property == "email" else key)
            rec = self._records.get(rid) if rid is not None else None
        else:
            raise _Failure(400, "VALIDATION_ERROR", f"Property {id_property} is not a unique identifier property")
        return rec if rec is not None and (rec.archived_at is not None) == archived else None

    def _render(self, rec_id: int, props: dict[str, str], wanted: tuple[str, ...],
                archived_at: int | None = None) -> dict[str, Any]:
        out = {"id": str(rec_id), "properties": {k: props.get(k) for k in wanted},
               "createdAt": props["createdate"], "updatedAt": props["lastmodifieddate"],
               "archived": archived_at is not None}
        if archived_at is not None:
            out["archivedAt"] = _iso(archived_at)
        return out

    def _wanted(self, requested: Any) -> tuple[str, ...]:
        if not requested:
            return DEFAULT_PROPERTIES
        names = requested if isinstance(requested, list) else [requested]
        defs = self._properties_by_name
        return tuple(dict.fromkeys([*(n for n in names if n in defs), *_ALWAYS]))

    # -- search -------------------------------------------------------------------------
    def _settle(self, now: int) -> None:
        """Forget versions superseded by a newer searchable one."""
        cut = now - int(self.lag * 1000)
        for rid, versions in list(self._pending.items()):
            if versions[-1][0] <= cut:
                del self._pending[rid]
            else:
                k = max((i for i, v in enumerate(versions) if v[0] <= cut), default=0)
                del versions[:k]

    def _visible(self, rid: int, now: int) -> tuple[int, int, dict[str, str]] | None:
        versions = self._pending.get(rid)
        if versions is None:
            rec = self._records[rid]
            return None if rec.archived_at is not None else (rec.updated, rid, rec.props)
        cut = now - int(self.lag * 1000)
        for updated, props in reversed(versions):
            if updated <= cut:
                return None if props is None else (updated, rid, props)
        return None

    def _getter(self, name: str) -> Callable[[int, int, dict[str, str]], Any]:
        typ = self._properties_by_name[name]["type"]
        if name == "lastmodifieddate":
            return lambda u, i, p: u
        if name == "createdate":
            return lambda u, i, p: self._records[i].created
        if name == "hs_object_id":
            return lambda u, i, p: i
        if typ == "number":
            return lambda u, i, p: float(p[name]) if name in p else None
        if typ in ("date", "datetime"):
            return lambda u, i, p: _instant(p[name]) if name in p else None
        return lambda u, i, p: p[name].lower() if name in p else None

    def _typed(self, name: str, value: Any) -> Any:
        typ = self._properties_by_name[name]["type"]
        try:
            if value is None:
                raise ValueError
            if typ == "number":
                return float(value)
            if typ in ("date", "datetime"):
                return _instant(value)
            return str(value).lower()
        except (TypeError, ValueError):
            raise Reject(400, f"Invalid filter value {value!r} for property {name} of type {typ}") from None

    def _predicate(self, f: Any) -> tuple[str, str, Any, Callable[..., bool]]:
        if not isinstance(f, dict) or not isinstance(f.get("propertyName"), str):
            raise Reject(400, "Invalid filter: propertyName and operator are required")
        name, op = f["propertyName"], f.get("operator")
        if name not in self._properties_by_name:
            raise Reject(400, f"Invalid filter: property {name} does not exist on object type contacts")
        get = self._getter(name)
        if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
            want = op == "HAS_PROPERTY"
            return name, op, None, lambda *r: (get(*r) is not None) == want
        if op in ("IN", "NOT_IN"):
            if not isinstance(f.get("values"), list):
                raise Reject(400, f"Invalid filter: operator {op} needs values")
            vals = {self._typed(name, v) for v in f["values"]}
            inside = op == "IN"
            return name, op, None, lambda *r: (get(*r) in vals) == inside
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):  # a token of the value, or the value; * wildcards
            match = re.compile(fnmatch.translate(str(f.get("value", "")).lower())).match
            want = op == "CONTAINS_TOKEN"

            def has(u: int, i: int, p: dict[str, str]) -> bool:
                v = p.get(name, "").lower()
                return bool(v) and (match(v) is not None or any(match(t) for t in _TOKEN.findall(v)))
            return name, op, None, lambda *r: has(*r) == want
        x = self._typed(name, f.get("value"))
        if op == "BETWEEN":
            hi = self._typed(name, f.get("highValue"))
            return name, op, (x, hi), lambda *r: (v := get(*r)) is not None and x <= v <= hi
        tests = {"EQ": lambda v: v == x, "LT": lambda v: v < x, "LTE": lambda v: v <= x,
                 "GT": lambda v: v > x, "GTE": lambda v: v >= x}
        if op == "NEQ":
            return name, op, x, lambda *r: get(*r) != x
        if op not in tests:
            raise Reject(400, f"Invalid filter operator {op!r}")
        test = tests[op]
        return name, op, x, lambda *r: (v := get(*r)) is not None and test(v)

    def _search(self, call: Call) -> Response:
        body = call.json()
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise Reject(400, "Invalid input: the search request must be a JSON object")
        limit, after = body.get("limit", 10), body.get("after") or 0
        try:
            limit, after = int(limit), int(after)
        except (TypeError, ValueError):
            raise Reject(400, f"Invalid input: limit and after must be integers (after={after!r})") from None
        if not 0 <= limit <= MAX_PAGE or after < 0:
            raise Reject(400, f"Invalid input: limit must be between 0 and {MAX_PAGE} (got {limit})")
        if after >= SEARCH_CAP or after + limit > SEARCH_CAP:
            raise Reject(400, f"Cannot page past {SEARCH_CAP} results: after={after} with limit={limit}. Narrow "
                              f"the query (e.g. by lastmodifieddate) instead.")
        groups = body.get("filterGroups") or []
        if not isinstance(groups, list) or any(not isinstance(g, dict) or not isinstance(g.get("filters"), list)
                                               for g in groups):
            raise Reject(400, "Invalid input: filterGroups must be a list of {filters: [...]}")
        counts = [len(g["filters"]) for g in groups]
        if len(groups) > _GROUPS or any(c > _PER_GROUP for c in counts) or sum(counts) > _FILTERS:
            raise Reject(400, f"Too many filters: at most {_GROUPS} filterGroups, {_PER_GROUP} filters per group "
                              f"and {_FILTERS} filters in total (got {counts})")
        compiled = [[self._predicate(f) for f in g["filters"]] for g in groups]
        sort = self._sort(body.get("sorts") or [])
        wanted = self._wanted(body.get("properties"))
        query = str(body.get("query") or "").strip().lower()
        now = self.clock.now_ms()
        self._settle(now)
        plan = self._range_plan(compiled, sort) if not query else None
        total, rows = self._range(*plan, after, limit, now) if plan else self._scan(compiled, sort, query, after,
                                                                                   limit, now)
        out: dict[str, Any] = {"total": total, "results": [self._render(i, p, wanted) for _, i, p in rows]}
        if after + limit < total and limit:
            out["paging"] = {"next": {"after": str(after + limit)}}
        return self.json(out)

    def _sort(self, sorts: Any) -> tuple[str, bool] | None:
        if not isinstance(sorts, list) or len(sorts) > 1:
            raise Reject(400, "Invalid input: at most one sort is supported")
        if not sorts:
            return None
        s = sorts[0]
        if isinstance(s, str):  # legacy form: "prop" or "-prop"
            name, desc = s.lstrip("-"), s.startswith("-")
        elif isinstance(s, dict) and isinstance(s.get("propertyName"), str):
            name, desc = s["propertyName"], str(s.get("direction", "ASCENDING")).upper() == "DESCENDING"
        else:
            raise Reject(400, "Invalid sort: expected {propertyName, direction}")
        if name not in self._properties_by_name:
            raise Reject(400, f"Invalid sort: property {name} does not exist on object type contacts")
        return name, desc

    @staticmethod
    def _range_plan(groups: list[list[tuple[str, str, Any, Callable[..., bool]]]],
                    sort: tuple[str, bool] | None) -> tuple[int, int, list[Callable[..., bool]]] | None:
        """For ``lastmodifieddate`` ranges sorted ascending: (lo, hi, other predicates), else None."""
        if sort != ("lastmodifieddate", False) or len(groups) > 1:
            return None
        lo, hi, rest = -_HIGH, _HIGH, []
        for name, op, x, pred in groups[0] if groups else []:
            if name != "lastmodifieddate" or op not in ("EQ", "GT", "GTE", "LT", "LTE", "BETWEEN"):
                rest.append(pred)
            elif op == "BETWEEN":
                lo, hi = max(lo, x[0]), min(hi, x[1])
            else:
                lo = max(lo, x + (op == "GT")) if op in ("EQ", "GT", "GTE") else lo
                hi = min(hi, x - (op == "LT")) if op in ("EQ", "LT", "LTE") else hi
        return lo, hi, rest

    def _range(self, lo: int, hi: int, rest: list[Callable[..., bool]], after: int, limit: int,
               now: int) -> tuple[int, list[tuple[int, int, dict[str, str]]]]:
        """The sorted index sliced by bisect: O(log n + page) for a plain date window."""
        idx, recs, pending = self._index, self._records, self._pending
        i0 = bisect.bisect_left(idx, (lo, 0))
        i1 = max(i0, bisect.bisect_right(idx, (hi, _HIGH)))
        if not pending and not rest:
            return i1 - i0, [(u, i, recs[i].props) for u, i in idx[i0 + after:min(i1, i0 + after + limit)]]
        extras = sorted(v for rid in pending if (v := self._visible(rid, now)) and lo <= v[0] <= hi)
        merged = heapq.merge(((u, i, recs[i].props) for u, i in (idx[k] for k in range(i0, i1))
                              if i not in pending), extras)
        if not rest:
            stale = sum(1 for rid in pending if recs[rid].archived_at is None and lo <= recs[rid].updated <= hi)
            rows = [row for k, row in zip(range(after + limit), merged) if k >= after]
            return i1 - i0 - stale + len(extras), rows
        total, rows = 0, []
        for row in merged:
            if all(p(*row) for p in rest):
                if after <= total < after + limit:
                    rows.append(row)
                total += 1
        return total, rows

    def _scan(self, groups: list[list[tuple[str, str, Any, Callable[..., bool]]]], sort: tuple[str, bool] | None,
              query: str, after: int, limit: int, now: int) -> tuple[int, list[tuple[int, int, dict[str, str]]]]:
        """Any other search: a full scan of the searchable versions."""
        ids = sorted(set(self._active) | set(self._pending)) if self._pending else self._active
        rows = []
        for rid in ids:
            row = self._visible(rid, now)
            if row is None or (groups and not any(all(f[3](*row) for f in g) for g in groups)):
                continue
            if query and not any(query in row[2].get(k, "").lower()
                                 for k in ("firstname", "lastname", "email", "phone", "company")):
                continue
            rows.append(row)
        if sort:
            get = self._getter(sort[0])
            keyed = [(get(*row), row) for row in rows]
            present = [kr for kr in keyed if kr[0] is not None]
            present.sort(key=lambda kr: kr[0], reverse=sort[1])  # stable: ties stay in id order
            rows = [row for _, row in present] + [row for key, row in keyed if key is None]
        return len(rows), rows[after:after + limit]

    # -- HTTP: auth, limits, errors -------------------------------------------------------
    def error(self, status: int, message: str, **extra: Any) -> Response:
        if status == 429:  # an injected 429 looks like the real one
            return self._limited("TEN_SECONDLY_ROLLING", None)
        category = extra.pop("category", None) or {401: "INVALID_AUTHENTICATION", 404: "OBJECT_NOT_FOUND",
                                                    409: "CONFLICT"}.get(status, "VALIDATION_ERROR"
                                                                         if status < 500 else "INTERNAL_ERROR")
        return self.json({"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                          "category": category, **extra}, status)

    def _limited(self, policy: str, headers: dict[str, str] | None) -> Response:
        what = {"SECONDLY": "secondly", "DAILY": "daily"}.get(policy, policy.lower())
        return self.json({"status": "error", "message": f"You have reached your {what} limit.",
                          "errorType": "RATE_LIMIT", "correlationId": str(uuid.uuid4()), "policyName": policy},
                         429, headers)

    def admit(self, call: Call) -> Response | dict[str, str] | None:
        scheme, _, token = call.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.token:
            return self.error(401, "Authentication credentials not found. This API supports OAuth 2.0 "
                                   "authentication and you can find more details at "
                                   "https://developers.hubspot.com/docs/methods/auth/oauth-overview")
        search = call.method == "POST" and call.path.endswith("/search")
        if search and self.search_rate is not None and not self.window("search", token, self.search_rate,
                                                                       1.0).hit().allowed:
            return self._limited("SECONDLY", None)
        headers: dict[str, str] = {}
        if self.rate is not None:
            verdict = self.window("ten_secondly", token, self.rate, 10.0).hit()
            headers = {"X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                       "X-HubSpot-RateLimit-Max": str(self.rate),
                       "X-HubSpot-RateLimit-Remaining": str(verdict.remaining)}
            if not verdict.allowed:
                return self._limited("TEN_SECONDLY_ROLLING", None if search else self._daily(headers))
        today = self.clock.now().date()
        if today != self._day:
            self._day, self._used = today, 0
        if self._used >= self.daily:
            return self._limited("DAILY", None if search else self._daily(headers))
        self._used += 1
        return None if search else self._daily(headers)

    def _daily(self, headers: dict[str, str]) -> dict[str, str]:
        return {**headers, "X-HubSpot-RateLimit-Daily": str(self.daily),
                "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily - self._used))}

    def routes(self) -> list[tuple[str, str, Callable[[Call], Response]]]:
        b = _BASE
        return [("POST", f"{b}/search", self._search), ("GET", b, self._list), ("POST", b, self._create),
                ("POST", f"{b}/batch/read", self._batch_read), ("POST", f"{b}/batch/create", self._batch_create),
                ("POST", f"{b}/batch/update", self._batch_update),
                ("POST", f"{b}/batch/upsert", self._batch_upsert),
                ("POST", f"{b}/batch/archive", self._batch_archive),
                ("GET", f"{b}/{{contactId}}", self._get), ("PATCH", f"{b}/{{contactId}}", self._update),
                ("DELETE", f"{b}/{{contactId}}", self._delete),
                ("GET", "/crm/v3/owners", self._owners), ("GET", "/crm/v3/owners/{ownerId}", self._owner),
                ("GET", "/crm/v3/properties/{objectType}", self._properties),
                ("GET", "/crm/v3/properties/{objectType}/{propertyName}", self._property)]

    # -- basic endpoints ------------------------------------------------------------------
    @staticmethod
    def _int(call: Call, name: str, default: int, low: int, high: int) -> int:
        raw = call.query.get(name)
        try:
            value = default if raw in (None, "") else int(raw)
        except ValueError:
            raise Reject(400, f"Invalid input: {name} must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise Reject(400, f"Invalid input: {name} must be between {low} and {high}, got {value}")
        return value

    def _list(self, call: Call) -> Response:
        limit = self._int(call, "limit", 10, 1, MAX_LIST)
        start = self._int(call, "after", 0, 0, _HIGH)
        archived = call.query.get("archived", "").lower() == "true"
        ids = self._archived if archived else self._active
        i = bisect.bisect_left(ids, start)
        wanted = self._wanted(call.query_list("properties"))
        recs = self._records
        out: dict[str, Any] = {"results": [self._render(r, recs[r].props, wanted, recs[r].archived_at)
                                           for r in ids[i:i + limit]]}
        if i + limit < len(ids):
            nxt = str(ids[i + limit])
            out["paging"] = {"next": {"after": nxt, "link": f"{_BASE}?after={nxt}"}}
        return self.json(out)

    def _one(self, call: Call, archived: bool = False) -> _Contact:
        rec = self._find(call.params["contactId"], call.query.get("idProperty"), archived)
        if rec is None:
            raise Reject(404, "resource not found")
        return rec

    def _get(self, call: Call) -> Response:
        rec = self._one(call, call.query.get("archived", "").lower() == "true")
        return self.json(self._render(rec.id, rec.props, self._wanted(call.query_list("properties")),
                                      rec.archived_at))

    def _body_props(self, call: Call) -> Any:
        body = call.json()
        if not isinstance(body, dict) or "properties" not in body:
            raise Reject(400, "Invalid input: the body must be an object with properties")
        return body["properties"]

    def _written(self, rec: _Contact, clean: dict[str, str]) -> dict[str, Any]:
        return self._render(rec.id, rec.props, tuple(dict.fromkeys([*clean, *_ALWAYS])))

    def _create(self, call: Call) -> Response:
        clean = self._validate(self._body_props(call), None)
        return self.json(self._written(self._apply(None, clean, self.clock.now_ms()), clean), 201)

    def _update(self, call: Call) -> Response:
        props = self._body_props(call)
        rec = self._one(call)
        clean = self._validate(props, rec.id)
        return self.json(self._written(self._apply(rec, clean, self.clock.now_ms()), clean))

    def _delete(self, call: Call) -> Response:
        rec = self._find(call.params["contactId"])
        if rec is not None:
            self._archive(rec, self.clock.now_ms())
        return Response(status_code=204)

    # -- batch endpoints ------------------------------------------------------------------
    def _inputs(self, call: Call) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        body = call.json()
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            raise Reject(400, "Invalid input: the body must be an object with an inputs list")
        inputs = body["inputs"]
        if len(inputs) > MAX_BATCH:
            raise Reject(400, f"Batch input limit exceeded: {len(inputs)} inputs given, the maximum number of "
                              f"inputs per batch is {MAX_BATCH}")
        if any(not isinstance(i, dict) for i in inputs):
            raise Reject(400, "Invalid input: every input must be an object")
        return body, inputs

    @staticmethod
    def _key(item: dict[str, Any]) -> str:
        prop, ident = item.get("idProperty") or "hs_object_id", str(item.get("id"))
        return f"{prop}:{ident.lower() if prop == 'email' else ident}"

    @staticmethod
    def _no_duplicates(keys: list[str]) -> None:
        seen, dupes = set(), []
        for k in keys:
            if k in seen:
                dupes.append(k)
            seen.add(k)
        if dupes:
            raise Reject(400, f"Duplicate IDs found in batch input: {sorted(set(dupes))}. IDs must be unique")

    def _answer(self, results: list[dict[str, Any]], errors: list[tuple[_Failure, dict[str, list[str]]]],
                started: str, ok: int = 200, partial: bool = False) -> Response:
        if errors and not results and not partial:
            failure, context = errors[0]
            return self.error(failure.status, failure.message, category=failure.category, context=context,
                              **({"errors": failure.errors} if failure.errors else {}))
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started,
                                "completedAt": _iso(self.clock.now_ms())}
        if not errors:
            return self.json(body, ok)
        body["numErrors"] = len(errors)
        body["errors"] = [{"status": "error", "category": f.category, "message": f.message, "context": ctx,
                           "errors": f.errors, "links": {}} for f, ctx in errors]
        return self.json(body, 207)

    def _each(self, inputs: list[dict[str, Any]], context: Callable[[dict[str, Any]], dict[str, list[str]]],
              write: Callable[[dict[str, Any], int], dict[str, Any]]) -> Response:
        now = self.clock.now_ms()
        results, errors = [], []
        for item in inputs:
            ctx = context(item)
            if item.get("objectWriteTraceId"):
                ctx["objectWriteTraceId"] = [str(item["objectWriteTraceId"])]
            try:
                result = write(item, now)
            except _Failure as failure:
                errors.append((failure, ctx))
                continue
            if item.get("objectWriteTraceId"):
                result["objectWriteTraceId"] = str(item["objectWriteTraceId"])
            results.append(result)
        return self._answer(results, errors, _iso(now))

    def _batch_read(self, call: Call) -> Response:
        body, inputs = self._inputs(call)
        wanted = self._wanted(body.get("properties"))
        archived = call.query.get("archived", "").lower() == "true"
        results, missing = [], []
        for item in inputs:
            rec = self._find(item.get("id"), body.get("idProperty"), archived)
            if rec is None:
                missing.append(str(item.get("id")))
            else:
                results.append(self._render(rec.id, rec.props, wanted, rec.archived_at))
        failure = _Failure(404, "OBJECT_NOT_FOUND", "Could not get some CONTACT objects, they may be deleted or "
                                                    "not exist. Check that ids are valid.")
        errors = [(failure, {"ids": missing})] if missing else []
        return self._answer(results, errors, _iso(self.clock.now_ms()), partial=True)

    def _batch_create(self, call: Call) -> Response:
        _, inputs = self._inputs(call)

        def write(item: dict[str, Any], now: int) -> dict[str, Any]:
            clean = self._validate(item.get("properties"), None)
            return self._written(self._apply(None, clean, now), clean)

        def context(item: dict[str, Any]) -> dict[str, list[str]]:
            props = item.get("properties") if isinstance(item.get("properties"), dict) else {}
            return {p: [str(props[p])] for p in reversed(self._uniques) if props.get(p)}
        return self._with_status(self._each(inputs, context, write), 201)

    @staticmethod
    def _with_status(response: Response, ok: int) -> Response:
        if response.status_code == 200:
            response.status_code = ok
        return response

    def _batch_update(self, call: Call) -> Response:
        _, inputs = self._inputs(call)
        self._no_duplicates([self._key(i) for i in inputs])

        def write(item: dict[str, Any], now: int) -> dict[str, Any]:
            rec = self._find(item.get("id"), item.get("idProperty"))
            if rec is None:
                raise _Failure(404, "OBJECT_NOT_FOUND", f"Could not find a contact with "
                                                        f"{item.get('idProperty') or 'id'} {item.get('id')}")
            clean = self._validate(item.get("properties"), rec.id)
            return self._written(self._apply(rec, clean, now), clean)
        return self._each(inputs, lambda item: {"ids": [str(item.get("id"))]}, write)

    def _batch_upsert(self, call: Call) -> Response:
        _, inputs = self._inputs(call)
        self._no_duplicates([self._key(i) for i in inputs])

        def write(item: dict[str, Any], now: int) -> dict[str, Any]:
            prop, ident = item.get("idProperty"), item.get("id")
            if prop not in self._uniques or ident in (None, ""):
                raise _Failure(400, "VALIDATION_ERROR", f"Upsert needs an id and an idProperty that is one of "
                                                        f"the unique properties {list(self._uniques)}")
            props = item.get("properties")
            props = {**props, prop: ident} if isinstance(props, dict) else props
            rec = self._find(ident, prop)
            clean = self._validate(props, rec.id if rec else None)
            new = rec is None
            return {**self._written(self._apply(rec, clean, now), clean), "new": new}
        return self._each(inputs, lambda item: {str(item.get("idProperty") or "id"): [str(item.get("id"))]}, write)

    def _batch_archive(self, call: Call) -> Response:
        _, inputs = self._inputs(call)
        now = self.clock.now_ms()
        for item in inputs:
            rec = self._find(item.get("id"))
            if rec is not None:
                self._archive(rec, now)
        return Response(status_code=204)

    # -- owners and properties ------------------------------------------------------------
    def _owners(self, call: Call) -> Response:
        limit = self._int(call, "limit", 100, 1, 500)
        start = self._int(call, "after", 0, 0, _HIGH)
        email = call.query.get("email", "").lower()
        archived = call.query.get("archived", "").lower() == "true"
        owners = [o for o in self.owners if o["archived"] == archived and (not email or o["email"] == email)]
        out: dict[str, Any] = {"results": owners[start:start + limit]}
        if start + limit < len(owners):
            out["paging"] = {"next": {"after": str(start + limit)}}
        return self.json(out)

    def _owner(self, call: Call) -> Response:
        key = "userId" if call.query.get("idProperty") == "userId" else "id"
        for owner in self.owners:
            if str(owner[key]) == call.params["ownerId"]:
                return self.json(owner)
        raise Reject(404, "resource not found")

    def _defs_for(self, call: Call) -> dict[str, dict[str, Any]]:
        if call.params["objectType"] not in ("contacts", "contact", "0-1"):
            raise Reject(404, f"Unable to infer object type from: {call.params['objectType']}")
        return self._properties_by_name

    def _properties(self, call: Call) -> Response:
        return self.json({"results": list(self._defs_for(call).values())})

    def _property(self, call: Call) -> Response:
        found = self._defs_for(call).get(call.params["propertyName"])
        if found is None:
            raise Reject(404, f"Property {call.params['propertyName']} does not exist")
        return self.json(found)

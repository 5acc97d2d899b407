"""The sandbox org's data: records, checks on writes, lead conversion, and queries with their locators.

Records are dicts replaced, never mutated, on every write, so a query's
snapshot (what its ``nextRecordsUrl`` pages through) is a list of references
that later writes cannot change: a query answers as of the moment it ran.
"""

from __future__ import annotations

import math
import re
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from hub.testing.sandbox import Clock, Reject

from . import soql
from .schema import (
    CONVERTED_STATUS,
    DEFAULT_STATUS,
    PREFIX,
    SCHEMA,
    STAGES,
    TASK_STATUSES,
    Field,
    full_id,
    make_id,
    render_datetime,
)

__all__ = ["EMAIL", "MAX_RECORDS", "Locator", "Org", "RecordError"]

MAX_RECORDS = 200  # per sObject Collections request
MAX_LOCATORS = 10  # open query cursors per user
LOCATOR_IDLE = 15 * 60.0  # seconds before an untouched cursor expires
EMAIL = re.compile(r"^[^@\s\"(),:;<>\[\]\\]+@[^@\s\"(),:;<>\[\]\\]+\.[A-Za-z]{2,}$")
_STAGE = {name: (p, closed, won) for name, p, closed, won in STAGES}


class RecordError(Exception):
    """Salesforce refused one record of a collection: its statusCode, message and fields."""

    def __init__(self, code: str, message: str, fields: list[str] | tuple[str, ...] = ()):
        super().__init__(message)
        self.code, self.message, self.fields = code, message, list(fields)

    def as_dict(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


@dataclass
class Locator:
    """An open query cursor: the snapshot it pages through."""

    obj: str
    rows: list[tuple[dict[str, Any], dict[str, dict[str, Any] | None]]]
    selected: list[tuple[Field | None, Field]]  # (relationship field or None, field)
    batch: int
    touched: float


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _json_error(value: Any, kind: str, body: bytes) -> Reject:
    text = value if isinstance(value, str) else repr(value)
    needle = (f'"{value}"' if isinstance(value, str) else str(value)).encode()
    col = max(body.find(needle), 0) + 1
    return Reject(400, f"Cannot deserialize instance of {kind} from VALUE_STRING value {text} or request may be "
                       f"missing a required field at [line:1, column:{col}]", errorCode="JSON_PARSER_ERROR")


class Org:
    """One org's records (Lead, Opportunity, User) and what Salesforce checks and derives on writes."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.tables: dict[str, dict[str, dict[str, Any]]] = {obj: {} for obj in SCHEMA}
        self.hub_ids: dict[str, str] = {}  # casefolded LeadHub_Id__c of live leads -> lead id
        self.locators: OrderedDict[str, Locator] = OrderedDict()
        self._seq: Counter[str] = Counter()
        self.api_user = ""

    def new_id(self, obj: str) -> str:
        self._seq[obj] += 1
        return make_id(obj, self._seq[obj])

    def now(self) -> int:
        """Now in epoch ms, at Salesforce's precision (whole seconds)."""
        return self.clock.now_ms() // 1000 * 1000

    def live(self, obj: str, rid: str | None) -> dict[str, Any] | None:
        rec = self.tables[obj].get(rid or "")
        return rec if rec is not None and not rec["IsDeleted"] else None

    # -- checks ----------------------------------------------------------------------------
    def parse(self, obj: str, raw: dict[str, Any], body: bytes = b"") -> dict[Field, Any]:
        """Field names and JSON types: what fails here fails the whole request (Salesforce parses first)."""
        out: dict[Field, Any] = {}
        for key, value in raw.items():
            if key == "attributes" or key.lower() == "id":
                continue
            f = SCHEMA[obj].get(key.lower())
            if f is None:
                raise Reject(400, f"No such column '{key}' on sobject of type {obj}", errorCode="INVALID_FIELD")
            out[f] = self._coerce(f, value, body)
        return out

    @staticmethod
    def _coerce(f: Field, value: Any, body: bytes) -> Any:
        if value is None:
            return None
        if f.type in ("double", "currency", "percent", "int"):
            try:
                number = float(value) if not isinstance(value, bool) else None
            except (TypeError, ValueError):
                number = None
            if number is None or not math.isfinite(number):
                raise _json_error(value, "int" if f.type == "int" else "double", body)
            return int(number) if f.type == "int" else number
        if f.type == "boolean":
            if not isinstance(value, bool):
                raise _json_error(value, "boolean", body)
            return value
        if f.type == "date":
            try:
                return date.fromisoformat(str(value)).isoformat()
            except ValueError:
                raise _json_error(value, "date", body) from None
        if f.type == "datetime":
            try:
                return int(datetime.fromisoformat(str(value)).timestamp()) * 1000
            except ValueError:
                raise _json_error(value, "datetime", body) from None
        if isinstance(value, (dict, list)):
            raise _json_error(value, "String", body)
        return str(value).lower() if value is True or value is False else str(value)

    def check(self, obj: str, values: dict[Field, Any], current: dict[str, Any] | None,
              strict: bool = True) -> dict[str, Any]:
        """One record's values as Salesforce validates them; raises :class:`RecordError`."""
        readonly = [f.name for f in values if not f.writable]
        if readonly:
            raise RecordError("INVALID_FIELD_FOR_INSERT_UPDATE", f"Unable to create/update fields: "
                              f"{', '.join(readonly)}. Please check the security settings of this field and verify "
                              "that it is read/write for your profile or permission set.", readonly)
        clean = {f.name: v for f, v in values.items()}
        if current is None:
            clean = {**self._defaults(obj), **{k: v for k, v in clean.items() if not (k == "OwnerId" and v is None)}}
        merged = {**(current or {}), **clean}
        missing = [f.name for f in SCHEMA[obj].values()
                   if f.required and f.writable and _blank(merged.get(f.name)) and (current is None or f.name in clean)]
        if missing and strict:
            raise RecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                              missing)
        for name, value in clean.items():
            if value is not None:
                self._check_value(obj, SCHEMA[obj][name.lower()], value, current)
        return clean

    def _defaults(self, obj: str) -> dict[str, Any]:
        if obj == "Task":
            return {"Status": TASK_STATUSES[0], "Priority": "Normal", "OwnerId": self.api_user}
        return {"Status": DEFAULT_STATUS, "OwnerId": self.api_user} if obj == "Lead" else {"OwnerId": self.api_user}

    def _check_value(self, obj: str, f: Field, value: Any, current: dict[str, Any] | None) -> None:
        if isinstance(value, str) and len(value) > f.length:
            raise RecordError("STRING_TOO_LONG", f"{f.label}: data value too large: {value} "
                              f"(max length={f.length})", [f.name])
        if f.type == "email" and not EMAIL.match(value):
            raise RecordError("INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {value}", [f.name])
        if f.restricted and value not in f.values:
            raise RecordError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                              f"{f.label}: bad value for restricted picklist field: {value}", [f.name])
        if f.type == "reference" and f.reference_to == "User":
            uid = full_id(value, "User")
            if uid is None:
                raise RecordError("MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name])
            user = self.tables["User"].get(uid)
            if user is None:
                raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name])
            if not user["IsActive"]:
                raise RecordError("INACTIVE_OWNER_OR_USER", f"operation performed with inactive user [{uid}] as "
                                  f"owner of {obj.lower()}", [f.name])
        if f.type == "reference" and f.reference_to in ("Lead", "Opportunity") and f.writable:
            self._check_record(f, value)
        if f.unique:
            other = self.hub_ids.get(value.casefold())
            if other is not None and (current is None or other != current["Id"]):
                raise RecordError("DUPLICATE_VALUE", f"duplicate value found: {f.name} duplicates value on record "
                                  f"with id: {other}", [f.name])

    def _check_record(self, f: Field, value: Any) -> None:
        """A task's ``WhoId`` (a lead) or ``WhatId`` (an opportunity): live, and not a converted lead."""
        obj = f.reference_to or ""
        rid = full_id(value)
        if rid is None or rid[:3] != PREFIX[obj]:
            raise RecordError("FIELD_INTEGRITY_EXCEPTION", f"{f.label}: id value of incorrect type: {value}",
                              [f.name])
        rec = self.tables[obj].get(rid)
        if rec is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name])
        if rec["IsDeleted"]:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [f.name])
        if rec.get("IsConverted"):
            raise RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [f.name])

    # -- writes ----------------------------------------------------------------------------
    def write(self, obj: str, rid: str | None, values: dict[str, Any], now: int, by: str | None = None) -> str:
        """Store checked values (new record when ``rid`` is None); derives what Salesforce derives."""
        by = by or self.api_user
        table = self.tables[obj]
        old = table.get(rid) if rid else None
        if old is None:
            rid = rid or self.new_id(obj)
            rec = {f.name: None for f in SCHEMA[obj].values()}
            rec.update(Id=rid, IsDeleted=False, CreatedDate=now, CreatedById=by)
            if obj == "Lead":
                rec["IsConverted"] = False
        else:
            rec = dict(old)
        rec.update(values, LastModifiedDate=now, LastModifiedById=by, SystemModstamp=now)
        if obj in ("Lead", "User"):
            rec["Name"] = " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p)
        if obj == "Task":
            rec["IsClosed"] = rec["Status"] == "Completed"
        if obj == "Opportunity" and (old is None or "StageName" in values):
            probability, rec["IsClosed"], rec["IsWon"] = _STAGE[rec["StageName"]]
            if "Probability" not in values:
                rec["Probability"] = float(probability)
        assert rid is not None
        table[rid] = rec
        if obj == "Lead":
            self._index(old, rec)
        return rid

    def _index(self, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        if old and old.get("LeadHub_Id__c"):
            self.hub_ids.pop(old["LeadHub_Id__c"].casefold(), None)
        if new.get("LeadHub_Id__c") and not new["IsDeleted"]:
            self.hub_ids[new["LeadHub_Id__c"].casefold()] = new["Id"]

    def delete(self, obj: str, rid: str, now: int) -> None:
        old = self.tables[obj][rid]
        rec = {**old, "IsDeleted": True, "SystemModstamp": now, "LastModifiedDate": now}
        self.tables[obj][rid] = rec
        if obj == "Lead":
            self._index(old, rec)

    def convert(self, lead_id: str, now: int, *, stage: str | None, deal: dict[str, Any] | None = None,
                by: str | None = None) -> str | None:
        """Convert a lead as ``Database.convertLead`` does: a contact, an account, and (with a
        ``stage``) an opportunity carrying the lead's mapped fields. Returns the opportunity id."""
        lead = self.live("Lead", lead_id)
        if lead is None or lead["IsConverted"]:
            raise ValueError(f"lead {lead_id} is deleted or already converted")
        opp_id = None
        if stage is not None:
            fields = {"Name": f"{lead.get('Company') or lead['LastName']} -", "StageName": stage,
                      "CloseDate": _day(now), "OwnerId": lead["OwnerId"],
                      "LeadSource": lead.get("LeadSource"), "Loss_Reason__c": lead.get("Loss_Reason__c"),
                      **(deal or {})}
            opp_id = self.write("Opportunity", None, fields, now, by)
        values = {"IsConverted": True, "Status": CONVERTED_STATUS, "ConvertedDate": _day(now),
                  "ConvertedAccountId": self.new_id("Account"), "ConvertedContactId": self.new_id("Contact"),
                  "ConvertedOpportunityId": opp_id}
        self.write("Lead", lead_id, values, now, by)
        return opp_id

    # -- queries ---------------------------------------------------------------------------
    def _resolver(self, q: soql.Query) -> Callable[[str, int], tuple[Field, Callable[[dict[str, Any]], Any]]]:
        def resolve(name: str, pos: int) -> tuple[Field, Callable[[dict[str, Any]], Any]]:
            rel, f = self.path(q, name, pos)
            if rel is None:
                return f, lambda r, n=f.name: r.get(n)
            table, ref, n = self.tables[rel.reference_to or ""], rel.name, f.name

            def get(r: dict[str, Any]) -> Any:
                parent = table.get(r.get(ref) or "")
                return None if parent is None or parent["IsDeleted"] else parent.get(n)
            return f, get
        return resolve

    def path(self, q: soql.Query, name: str, pos: int) -> tuple[Field | None, Field]:
        head, _, tail = name.partition(".")
        fields = SCHEMA[q.obj]
        if not tail:
            f = fields.get(head.lower())
            if f is None:
                raise soql.no_such_column(q.text, pos, name, q.obj)
            return None, f
        rel = next((f for f in fields.values() if (f.relationship or "").lower() == head.lower()), None)
        if rel is None or "." in tail:
            raise soql.bad_relationship(q.text, pos, head)
        f = SCHEMA[rel.reference_to or ""].get(tail.lower())
        if f is None:
            raise soql.no_such_column(q.text, pos + len(head) + 1, tail, rel.reference_to or "")
        return rel, f

    def query(self, text: str, include_deleted: bool, batch: int) -> tuple[str, Locator]:
        """Run a query; returns its locator id and snapshot. Raises :class:`soql.SoqlError`."""
        q = soql.parse(text)
        resolve = self._resolver(q)
        selected, seen = [], set()
        for name in q.fields:
            rel, f = self.path(q, name, q.positions[name])
            key = ((rel.name if rel else ""), f.name)
            if key in seen:
                raise soql.duplicate_field(q.text, q.positions[name], name)
            seen.add(key)
            selected.append((rel, f))
        keep = soql.compile_where(q, q.where, resolve) if q.where is not None else None
        rows = [r for r in self.tables[q.obj].values()
                if (include_deleted or not r["IsDeleted"]) and (keep is None or keep(r))]
        for name, desc, nulls_last in reversed(q.order):
            _, get = resolve(name, q.positions[name])
            rows.sort(key=soql.sort_key(get, desc, nulls_last), reverse=desc)
        if q.limit is not None:
            rows = rows[:q.limit]
        rels = {rel.name: rel for rel, _ in selected if rel is not None}
        snapshot = [(r, {n: self.live(rel.reference_to or "", r.get(n)) for n, rel in rels.items()}) for r in rows]
        loc = Locator(q.obj, snapshot, selected, batch, self.clock.monotonic())
        loc_id = self.new_id("QueryLocator")
        self.locators[loc_id] = loc
        while len(self.locators) > MAX_LOCATORS:
            self.locators.popitem(last=False)
        return loc_id, loc

    def locator(self, loc_id: str) -> Locator | None:
        now = self.clock.monotonic()
        for key in [k for k, v in self.locators.items() if now - v.touched > LOCATOR_IDLE]:
            del self.locators[key]
        loc = self.locators.get(loc_id)
        if loc is not None:
            loc.touched = now
        return loc

    def render(self, loc: Locator, rec: dict[str, Any], parents: dict[str, dict[str, Any] | None],
               version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": _attributes(loc.obj, rec["Id"], version)}
        for rel, f in loc.selected:
            if rel is None:
                out[f.name] = _wire(f, rec.get(f.name))
                continue
            parent = parents[rel.name]
            key = rel.relationship or rel.name
            if parent is None:
                out[key] = None
            else:
                node = out.setdefault(key, {"attributes": _attributes(rel.reference_to or "", parent["Id"], version)})
                node[f.name] = _wire(f, parent.get(f.name))
        return out

    def record(self, obj: str, rec: dict[str, Any], version: str) -> dict[str, Any]:
        """Every field of one record, as ``GET /sobjects/{obj}/{id}`` answers."""
        return {"attributes": _attributes(obj, rec["Id"], version),
                **{f.name: _wire(f, rec.get(f.name)) for f in SCHEMA[obj].values()}}


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()


def _attributes(obj: str, rid: str, version: str) -> dict[str, str]:
    return {"type": obj, "url": f"/services/data/v{version}/sobjects/{obj}/{rid}"}


def _wire(f: Field, value: Any) -> Any:
    return render_datetime(value) if f.type == "datetime" and value is not None else value

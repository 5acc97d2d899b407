"""Dataverse tables as the sandbox keeps them: columns, rows, row versions, tombstones, validation.

Every write takes the next value of one organisation-wide row version (Dataverse's
``versionnumber``), which is what change tracking pages and delta tokens count in. A table keeps
its live rows' versions sorted, so "rows changed after version V" is a bisect, and a tombstone per
deleted row, so deltas can report ``$deletedEntity`` entries.

Validation follows Dataverse's own messages and codes (``0x80044331`` string length and option
range, ``0x80060888`` unknown column, ``0x80048408`` status reason not of the state,
``0x80060892`` alternate key taken).
"""

from __future__ import annotations

import bisect
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from hub.testing.sandbox import Reject

__all__ = ["LEAD_STATES", "OPPORTUNITY_STATES", "TASK_STATES", "Column", "DataverseError", "Table", "Versions",
           "stamp"]


class DataverseError(Reject):
    """A Dataverse fault: HTTP status, ``0x…`` code and message (``{"error": {"code", "message"}}``)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(status, message, code=code)
        self.code = code


def _invalid(message: str, spaces: int = 1) -> DataverseError:
    """Dataverse's ValidationError (its length message has two spaces after the first sentence)."""
    return DataverseError(400, "0x80044331", "A validation error occurred." + " " * spaces + message)


def _literal(value: Any, edm: str) -> DataverseError:
    """The OData layer's refusal of a value of the wrong JSON type."""
    return DataverseError(400, "0x0", f"Cannot convert the literal '{value}' to the expected type '{edm}'.")


def stamp(dt: datetime) -> str:
    """Dataverse's timestamp form: second precision, UTC, ``Z``."""
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: str  # string | picklist | state | status | money | float | int | date | datetime | guid | lookup
    label: str = ""
    max_length: int | None = None
    options: frozenset[int] = frozenset()
    writable: bool = True
    target: str | None = None  # a lookup's entity set (for @odata.bind)


#: state -> (name, {status reason: label}, default status reason); stock values plus LeadHub's reasons
LEAD_STATES: dict[int, tuple[str, dict[int, str], int]] = {
    0: ("Open", {1: "New", 2: "Contacted", 582300000: "Marketing Qualified", 582300001: "Sales Qualified",
                 582300002: "Nurture"}, 1),
    1: ("Qualified", {3: "Qualified", 582300003: "Negotiating", 582300004: "Won"}, 3),
    2: ("Disqualified", {4: "Lost", 5: "Cannot Contact", 6: "No Longer Interested", 7: "Canceled"}, 4),
}
OPPORTUNITY_STATES: dict[int, tuple[str, dict[int, str], int]] = {
    0: ("Open", {1: "In Progress", 2: "On Hold"}, 1),
    1: ("Won", {3: "Won"}, 3),
    2: ("Lost", {4: "Canceled", 5: "Out-Sold"}, 4),
}
TASK_STATES: dict[int, tuple[str, dict[int, str], int]] = {
    0: ("Open", {2: "Not Started", 3: "In Progress", 4: "Waiting on someone else", 7: "Deferred"}, 2),
    1: ("Completed", {5: "Completed"}, 5),
    2: ("Canceled", {6: "Canceled"}, 6),
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONEY = 922_337_203_685_477


class Versions:
    """The organisation's row version counter."""

    def __init__(self) -> None:
        self.current = 1_000_000

    def next(self) -> int:
        self.current += 1
        return self.current


@dataclass
class Table:
    """One Dataverse table: its columns, live rows (by primary key) and change-tracking indexes."""

    logical: str  # "lead"
    entity_set: str  # "leads"
    key: str  # "leadid"
    columns: dict[str, Column]
    versions: Versions
    states: dict[int, tuple[str, dict[int, str], int]] | None = None
    alternate_keys: tuple[str, ...] = ()
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    _live: list[int] = field(default_factory=list)  # versions of live rows, ascending
    _by_version: dict[int, str] = field(default_factory=dict)
    _dead: list[tuple[int, str]] = field(default_factory=list)  # (version, id) tombstones, ascending
    _alt: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._alt = {k: {} for k in self.alternate_keys}

    # -- reading -----------------------------------------------------------------------
    def find(self, key: str | None = None, **alternate: str) -> dict[str, Any] | None:
        if key is not None:
            return self.rows.get(key.lower())
        (name, value), = alternate.items()
        rid = self._alt.get(name, {}).get(value)
        return self.rows.get(rid) if rid else None

    def changed(self, after: int, cap: int, last: int) -> Iterator[dict[str, Any]]:
        """Live rows with ``after < version <= cap``, ascending by version, starting after ``last``."""
        i = bisect.bisect_right(self._live, max(after, last))
        while i < len(self._live) and self._live[i] <= cap:
            yield self.rows[self._by_version[self._live[i]]]
            i += 1

    def deleted(self, after: int, cap: int, last: int) -> Iterator[tuple[int, str]]:
        """Tombstones with ``after < version <= cap``, ascending, starting after ``last``."""
        i = bisect.bisect_right(self._dead, (max(after, last), "\uffff"))
        while i < len(self._dead) and self._dead[i][0] <= cap:
            yield self._dead[i]
            i += 1

    def column(self, name: str) -> Column:
        col = self.columns.get(name)
        if col is None:
            raise DataverseError(400, "0x80060888", f"Could not find a property named '{name}' on type "
                                                    f"'Microsoft.Dynamics.CRM.{self.logical}'.")
        return col

    # -- writing -----------------------------------------------------------------------
    def check(self, values: Mapping[str, Any], row: dict[str, Any] | None, rid: str) -> dict[str, Any]:
        """Validated, normalised values for a create (``row`` None) or an update of ``row``."""
        clean: dict[str, Any] = {}
        for name, value in values.items():
            col = self.column(name)
            if not col.writable:
                continue  # Dataverse ignores read-only columns in a write
            clean[name] = self._value(col, value)
        for name in self.alternate_keys:
            value = clean.get(name)
            owner = self._alt[name].get(value) if value else None
            if owner is not None and owner != rid:
                label = self.columns[name].label
                raise DataverseError(400, "0x80060892",
                                     f"A record that has the attribute values {label} already exists. The "
                                     f"entity key {label} Key requires that this set of attributes contains "
                                     "unique values. Select unique values and try again.")
        if self.states is not None:
            self._check_state(clean, row, rid)
        return clean

    def _value(self, col: Column, value: Any) -> Any:
        if value is None:
            return None
        if col.kind == "string":
            if not isinstance(value, str):
                raise _literal(value, "Edm.String")
            if col.max_length and len(value) > col.max_length:
                raise _invalid(f"The length of the '{col.name}' attribute of the '{self.logical}' entity "
                               f"exceeded the maximum allowed length of '{col.max_length}'.", spaces=2)
            return value
        if col.kind in ("picklist", "state", "status", "int"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise _literal(value, "Edm.Int32")
            if col.kind == "picklist" and value not in col.options:
                raise self._range(value, col.name)
            return value
        if col.kind in ("money", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _literal(value, "Edm.Decimal")
            if col.kind == "money" and abs(value) > _MONEY:
                raise self._range(value, col.name)
            return float(value)
        if col.kind == "datetime":
            try:
                if not isinstance(value, str):
                    raise ValueError(value)
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise _literal(value, "Edm.DateTimeOffset") from None
            return value
        if col.kind == "date":
            try:
                if not isinstance(value, str) or not _DATE.match(value):
                    raise ValueError(value)
                date.fromisoformat(value)
            except ValueError:
                raise _literal(value, "Edm.Date") from None
        return value

    def _range(self, value: Any, column: str) -> DataverseError:
        return _invalid(f"The value {value} of '{column}' on record of type '{self.logical}' is outside the "
                        "valid range.")

    def _check_state(self, clean: dict[str, Any], row: dict[str, Any] | None, rid: str) -> None:
        assert self.states is not None
        state = clean.get("statecode", row["statecode"] if row else 0)
        if state not in self.states:
            raise self._range(state, "statecode")
        name, reasons, default = self.states[state]
        if "statuscode" not in clean and ("statecode" in clean or row is None):
            clean["statuscode"] = default
        status = clean.get("statuscode", row["statuscode"] if row else default)
        if status not in reasons:
            owner = self.logical.capitalize()
            raise DataverseError(400, "0x80048408", f"{status} is not a valid status code for state code "
                                                    f"{owner}State.{name} on {self.logical} with Id {rid}.")
        clean.setdefault("statecode", state)

    def write(self, rid: str | None, clean: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Create (``rid`` not yet a row) or update a row with checked values; stamps version and times."""
        rid = (rid or str(uuid.uuid4())).lower()
        row = self.rows.get(rid)
        if row is None:
            row = {c: None for c in self.columns}
            row[self.key] = rid
            row["createdon"] = stamp(now)
            if self.states is not None:
                row["statecode"], row["statuscode"] = 0, self.states[0][2]
            self.rows[rid] = row
        else:
            self._unindex(row)
        for name in self.alternate_keys:
            if name in clean and row.get(name):
                self._alt[name].pop(row[name], None)
        row.update(clean)
        for name in self.alternate_keys:
            if row.get(name):
                self._alt[name][row[name]] = rid
        row["modifiedon"] = stamp(now)
        row["versionnumber"] = v = self.versions.next()
        self._live.append(v)  # versions only grow, so the list stays sorted
        self._by_version[v] = rid
        return row

    def delete(self, rid: str) -> bool:
        row = self.rows.pop(rid.lower(), None)
        if row is None:
            return False
        self._unindex(row)
        for name in self.alternate_keys:
            if row.get(name):
                self._alt[name].pop(row[name], None)
        self._dead.append((self.versions.next(), row[self.key]))
        return True

    def _unindex(self, row: dict[str, Any]) -> None:
        v = row["versionnumber"]
        i = bisect.bisect_left(self._live, v)
        if i < len(self._live) and self._live[i] == v:
            del self._live[i]
        self._by_version.pop(v, None)

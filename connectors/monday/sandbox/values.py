"""monday column values: what each column type accepts on write, how it is stored, what it reads as.

A stored value is what monday returns in ``value`` (a JSON document per type:
a status column holds ``{"index": 7, ...}``, an email column ``{"email", "text"}``);
``text`` is derived from it. :func:`coerce` takes the JSON ``create_item`` /
``change_multiple_column_values`` accept per type and refuses anything else with
monday's ``ColumnValueException`` (its generic "invalid value…" message, or the
status/dropdown label messages); an empty string, ``null`` or ``{}`` clears a column.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from graphql import GraphQLError

__all__ = ["Column", "fail", "is_email", "coerce", "stored", "text"]

_EMAIL = re.compile(r"^[^@\s\"]+@[^@\s\"]+\.[A-Za-z]{2,}$")
_COUNTRIES = frozenset({"AT", "AU", "BE", "CA", "CH", "CZ", "DE", "DK", "ES", "FI", "FR", "GB", "IE", "IT", "NL",
                        "NO", "PL", "PT", "SE", "US"})  # the phone column's countryShortName (a subset)
_DOCS = "https://developer.monday.com/api-reference/reference/column-types-reference"


def fail(message: str, code: str, **error_data: Any) -> GraphQLError:
    """A GraphQL error in monday's shape (``extensions.code``, ``error_data``)."""
    ext: dict[str, Any] = {"code": code, "status_code": 200}
    if error_data:
        ext["error_data"] = error_data
    return GraphQLError(message, extensions=ext)


def is_email(value: str) -> bool:
    """Whether monday's email column would take ``value`` as an address."""
    return bool(_EMAIL.match(value))


@dataclass
class Column:
    id: str
    title: str
    type: str
    settings: dict[str, Any] = field(default_factory=dict)
    archived: bool = False
    description: str | None = None

    @property
    def settings_str(self) -> str:
        return json.dumps(self.settings, separators=(",", ":"))

    def labels(self) -> dict[int, str]:
        """Status labels by index, or dropdown labels by id."""
        raw = self.settings.get("labels") or {}
        if isinstance(raw, list):
            return {int(opt["id"]): opt["name"] for opt in raw}
        return {int(k): v for k, v in raw.items()}


def coerce(board: Any, values: Any, users: Mapping[int, Any], labels_if_missing: bool = False) -> dict[str, Any]:
    """The stored form of a ``column_values`` argument; refuses the whole argument on any bad value."""
    if isinstance(values, str):
        try:
            values = json.loads(values or "{}")
        except ValueError:
            raise fail("Syntax error in JSON input", "JsonParseException", json=values[:200]) from None
    if not isinstance(values, dict):
        raise fail("column_values must be a JSON object", "JsonParseException")
    out: dict[str, Any] = {}
    for cid, raw in values.items():
        if cid == "name":
            if not isinstance(raw, str) or not raw.strip():
                raise fail("Item name can't be blank", "InvalidArgumentException")
            out["name"] = raw
            continue
        col = board.column(cid)
        if col is None:
            raise fail("This column ID doesn't exist for the board", "InvalidColumnIdException",
                       column_id=cid, board_id=board.id)
        out[cid] = None if raw in (None, "", {}) else stored(col, raw, users, labels_if_missing)
    return out

def stored(col: Column, raw: Any, users: Mapping[int, Any], labels_if_missing: bool = False) -> Any:
    """The stored form of one column's write value, or ``ColumnValueException``."""
    def bad() -> GraphQLError:
        return fail(f"invalid value, please check our API documentation for the correct data structure "
                    f"for this column. {_DOCS}", "ColumnValueException", column_id=col.id,
                    column_type=col.type, column_value=json.dumps(raw, ensure_ascii=False)[:200])

    t = col.type
    if t in ("text", "long_text"):
        text = raw.get("text") if isinstance(raw, dict) else raw
        if not isinstance(text, (str, int, float)):
            raise bad()
        return {"text": str(text)} if t == "long_text" else str(text)
    if t == "numbers":
        try:
            number = float(str(raw).strip())
        except ValueError:
            raise bad() from None
        if not math.isfinite(number):
            raise bad()
        return str(raw).strip()
    if t == "email":
        email, text = (raw.get("email"), raw.get("text")) if isinstance(raw, dict) else (str(raw).split(" ") + [""])[:2]
        if not isinstance(email, str) or not is_email(email):
            raise bad()
        return {"email": email, "text": text or email}
    if t == "phone":
        phone, country = (raw.get("phone"), raw.get("countryShortName")) if isinstance(raw, dict) \
            else (str(raw).rsplit(" ", 1) + [None])[:2]
        if not isinstance(phone, str) or not re.fullmatch(r"\+?[\d\s().-]{4,}", phone):
            raise bad()
        if country is not None and country not in _COUNTRIES:
            raise bad()
        return {"phone": phone, "countryShortName": country}
    if t == "date":
        day = raw.get("date") if isinstance(raw, dict) else raw
        try:
            date.fromisoformat(str(day))
        except ValueError:
            raise bad() from None
        return {"date": str(day), "icon": None}
    if t == "status":
        return {"index": _status_index(col, raw, labels_if_missing, bad), "post_id": None}
    if t == "dropdown":
        return {"ids": _dropdown_ids(col, raw, labels_if_missing, bad)}
    if t == "people":
        people = raw.get("personsAndTeams") if isinstance(raw, dict) else \
            [{"id": p.strip(), "kind": "person"} for p in str(raw).split(",") if p.strip()]
        if not isinstance(people, list):
            raise bad()
        out = []
        for p in people:
            pid = str((p or {}).get("id", ""))
            if not pid.isdigit() or (p.get("kind", "person") == "person" and int(pid) not in users):
                raise fail(f"The person with id {pid} was not found", "ColumnValueException",
                           column_id=col.id, column_type=col.type)
            out.append({"id": int(pid), "kind": p.get("kind", "person")})
        return {"personsAndTeams": out}
    raise fail(f"Updating columns of type {t} is not supported via the API", "ColumnValueException",
               column_id=col.id, column_type=t)

def _status_index(col: Column, raw: Any, create: bool, bad: Any) -> int:
    labels = col.labels()
    if isinstance(raw, dict) and "index" in raw:
        if int(raw["index"]) not in labels:
            raise bad()
        return int(raw["index"])
    label = raw.get("label") if isinstance(raw, dict) else raw
    if not isinstance(label, str):
        raise bad()
    for index, name in labels.items():
        if name == label:
            return index
    if create:
        index = max([*labels, 10]) + 1
        col.settings.setdefault("labels", {})[str(index)] = label
        return index
    shown = ", ".join(f"{k}: {v}" for k, v in sorted(labels.items()))
    raise fail(f"This status label doesn't exist, possible statuses are: {{{shown}}}",
               "ColumnValueException", column_id=col.id, column_type="status")

def _dropdown_ids(col: Column, raw: Any, create: bool, bad: Any) -> list[int]:
    labels = col.labels()
    if isinstance(raw, dict) and "ids" in raw:
        ids = [int(i) for i in raw["ids"]]
        if any(i not in labels for i in ids):
            raise bad()
        return ids
    names = raw.get("labels") if isinstance(raw, dict) else [s.strip() for s in str(raw).split(",")]
    if not isinstance(names, list):
        raise bad()
    by_name = {v: k for k, v in labels.items()}
    ids = []
    for name in names:
        if name not in by_name:
            if not create:
                raise fail(f"The dropdown label '{name}' does not exist, possible labels are: "
                           f"[{', '.join(labels.values())}]", "ColumnValueException",
                           column_id=col.id, column_type="dropdown")
            new_id = max([*labels, 0]) + 1
            col.settings.setdefault("labels", []).append({"id": new_id, "name": name})
            labels[new_id], by_name[name] = name, new_id
        ids.append(by_name[name])
    return ids

def text(col: Column, value: Any, users: Mapping[int, Any]) -> str:
    """The ``text`` monday shows for a stored value."""
    if value is None:
        return ""
    t = col.type
    if t == "email":
        return value.get("text") or value["email"]
    if t == "phone":
        return value["phone"]
    if t == "date":
        return value["date"]
    if t == "status":
        return col.labels().get(value["index"], "")
    if t == "dropdown":
        labels = col.labels()
        return ", ".join(labels.get(i, "") for i in value["ids"])
    if t == "people":
        return ", ".join(users[p["id"]]["name"] for p in value["personsAndTeams"] if p["id"] in users)
    if t == "long_text":
        return value["text"]
    return str(value)


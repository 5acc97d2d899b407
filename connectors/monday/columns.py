"""monday column values: plain values to the JSON each column type takes on write, and back on read.

The connector works on plain values keyed by column title (``"Status": "Won"``,
``"Owner": "60000011"``, ``"Deal value": "1200"``), so the hub's maps stay
declarative; only here do they meet monday's per-type JSON::

    email    {"email": "a@b.de", "text": "a@b.de"}        phone   {"phone": "+49…", "countryShortName": "DE"}
    status   {"label": "Won"}                             dropdown {"labels": ["Referral"]}
    people   {"personsAndTeams": [{"id": 1, "kind": "person"}]}
    numbers  "1200"                                       date    {"date": "2026-03-31"}
    text     "Acme"                                       long_text {"text": "…"}

An empty string clears a column. Reads take ``value`` (a JSON string) where it
carries more than ``text`` (ids, the address, the number as typed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Column", "to_wire", "from_wire", "country_of"]

#: calling code -> ISO country, for the phone column's countryShortName
_CALLING = {"1": "US", "31": "NL", "32": "BE", "33": "FR", "34": "ES", "39": "IT", "41": "CH", "43": "AT",
            "44": "GB", "45": "DK", "46": "SE", "47": "NO", "48": "PL", "49": "DE", "351": "PT", "353": "IE",
            "358": "FI", "420": "CZ", "61": "AU"}


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a board, as ``boards { columns { id title type settings_str } }`` gives it."""

    id: str
    title: str
    type: str
    settings: str = "{}"


def country_of(phone: str) -> str | None:
    """The ISO country of an international number (``+49 30 …`` → ``DE``), else None."""
    if not phone.startswith("+"):
        return None
    digits = "".join(c for c in phone if c.isdigit())
    return next((_CALLING[digits[:n]] for n in (3, 2, 1) if digits[:n] in _CALLING), None)


def to_wire(column: Column, value: Any) -> Any:
    """A plain value in the JSON ``column_values`` takes for this column's type ("" clears)."""
    if value is None or value == "":
        return ""
    text = str(value)
    match column.type:
        case "email":
            return {"email": text, "text": text}
        case "phone":
            country = country_of(text)
            return {"phone": text, **({"countryShortName": country} if country else {})}
        case "status":
            return {"label": text}
        case "dropdown":
            return {"labels": [text]}
        case "people":
            return {"personsAndTeams": [{"id": int(text), "kind": "person"}]}
        case "date":
            return {"date": text}
        case "long_text":
            return {"text": text}
        case _:
            return text


def from_wire(column: Column, text: str | None, value: str | None) -> str | None:
    """A column value as read (``text`` and the JSON ``value``) → the plain value the maps speak."""
    raw = json.loads(value) if isinstance(value, str) and value else (value or None)
    if column.type == "people":
        people = (raw or {}).get("personsAndTeams") or []
        persons = [p for p in people if p.get("kind", "person") == "person"]
        return str(persons[0]["id"]) if persons else None
    if column.type == "numbers" and isinstance(raw, str):  # the number as typed; text may carry a unit
        return raw or None
    if isinstance(raw, dict) and column.type in ("email", "phone", "date"):
        return raw.get({"email": "email", "phone": "phone", "date": "date"}[column.type]) or None
    return text or None

"""Who may take a lead right now, and in which territory a lead lies — pure functions.

Every check returns ``None`` (fine) or a one-line reason, which the routing
decision stores per candidate: ``away until 2026-08-14``, ``cap reached: 10/10
today``, ``not in territory (lead FR 75001)``, ``at capacity: 40/40 open
leads``, ``had this lead before``.

Caps count assignments in calendar windows of the person's own calendar time
zone (the process's default calendar, else UTC): this hour, today (from local
midnight), this week (from Monday 00:00).

Postcode ranges compare normalised postcodes (upper case, letters and digits
only) against bounds that are prefixes, both ends included: ``10000``–``14999``
holds ``10115`` and ``14999`` but not ``15000``; ``EC1``–``EC4`` holds
``EC1A 1BB`` and ``EC4M 7RF`` but not ``EC5``. A territory's specificity ranks
its people: a postcode match (3) before a region match (2) before a country
match (1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from hub.process import Calendar, Person

__all__ = [
    "WINDOWS",
    "window_starts",
    "cap_reason",
    "availability",
    "normalise_postcode",
    "postcode_in",
    "TerritoryDef",
    "territory_matches",
    "specificity",
]

WINDOWS = ("hour", "day", "week")
_WINDOW_WORDS = {"hour": "this hour", "day": "today", "week": "this week"}


def window_starts(now: datetime, tz: tzinfo = timezone.utc) -> dict[str, datetime]:
    """The start of this hour, day and week (Monday) at ``now`` in ``tz``, as UTC instants."""
    local = now.astimezone(tz)
    hour = local.replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    week = day - timedelta(days=day.weekday())
    return {name: start.astimezone(timezone.utc)
            for name, start in (("hour", hour), ("day", day), ("week", week))}


def cap_reason(counts: Mapping[str, int], caps: Mapping[str, int | None], *,
               whose: str = "cap") -> str | None:
    """``"cap reached: 10/10 today"`` for the first window at or over its cap, else ``None``."""
    for window in WINDOWS:
        cap = caps.get(window)
        if cap is not None and counts.get(window, 0) >= cap:
            return f"{whose} reached: {counts.get(window, 0)}/{cap} {_WINDOW_WORDS[window]}"
    return None


def availability(person: Person, calendar: Calendar | None, now: datetime, *,
                 working_hours_only: bool = False) -> str | None:
    """Why ``person`` cannot take a lead at ``now`` (out of office; off hours if asked), else ``None``."""
    tz = calendar.tz if calendar is not None else timezone.utc
    local = now.astimezone(tz)
    today = local.date()
    for span in person.out_of_office:
        if today in span:
            return f"away until {span.end.isoformat()}"
    if working_hours_only and calendar is not None:
        if not calendar.is_working_day(today):
            holiday = calendar.holiday(today)
            return f"not a working day ({holiday})" if holiday else "not a working day"
        opens, closes = calendar.hours
        if not opens <= local.time() < closes:
            return f"outside working hours ({calendar.working_hours} {calendar.timezone})"
    return None


_NOT_ALNUM = re.compile(r"[^0-9A-Z]")


def normalise_postcode(value: Any) -> str:
    """``"ec1a 1bb"`` → ``"EC1A1BB"``; ``"94105-1234"`` → ``"941051234"``."""
    return _NOT_ALNUM.sub("", str(value).upper()) if value is not None else ""


def postcode_in(postcode: str, start: str, end: str) -> bool:
    """Is the normalised ``postcode`` within the prefix bounds ``start``–``end`` (both included)?"""
    code, lo, hi = normalise_postcode(postcode), normalise_postcode(start), normalise_postcode(end)
    if not code:
        return False
    return code[:len(lo)] >= lo and code[:len(hi)] <= hi


@dataclass(frozen=True, slots=True)
class TerritoryDef:
    """A named territory: countries, regions (a lead's ``region``/``state``) and postcode ranges."""

    name: str
    countries: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    postcodes: tuple[tuple[str, str, str], ...] = ()  # (country, from, to)


def _lead_value(lead: Any, *names: str) -> str:
    for name in names:
        value = lead.get(name) if hasattr(lead, "get") else None
        if value not in (None, ""):
            return str(value)
    return ""


def territory_matches(lead: Any, territories: Iterable[TerritoryDef]) -> dict[str, int]:
    """Territory names the lead lies in, each with its specificity (3 postcode, 2 region, 1 country)."""
    country = _lead_value(lead, "country").upper()
    region = _lead_value(lead, "region", "state").upper()
    postcode = _lead_value(lead, "postcode", "postal_code", "zip")
    out: dict[str, int] = {}
    for t in territories:
        if postcode and any(c == country and postcode_in(postcode, lo, hi) for c, lo, hi in t.postcodes):
            out[t.name] = 3
        elif region and region in t.regions:
            out[t.name] = 2
        elif country and country in t.countries:
            out[t.name] = 1
    if country:
        out.setdefault(country, 1)  # a bare country code in a person's territories
    return out


def specificity(person: Person, matches: Mapping[str, int]) -> int:
    """How closely ``person``'s territories fit the lead (0: not at all)."""
    return max((matches.get(t.upper(), 0) for t in person.territories), default=0)

"""The process file: statuses, SLAs, transitions, roles, team and calendars, validated.

A company states its lead process in one YAML file (``examples/process.yaml``;
the built-in default is ``hub/default_process.yaml``, the nine statuses of
``process.md``). Sections: ``custom_fields``, ``roles``, ``statuses``,
``transitions``, ``team``, ``calendars``, ``default_calendar`` and ``rules``
(free-form, one config mapping per rule name; each rule validates its own).

Durations are a whole number and a unit: ``90m``, ``24h``, ``5d`` (minutes,
hours, days); nothing else, no signs, no fractions. A status's ``sla`` is either
one duration (shorthand for ``{due: …}``) or a ladder of steps from
:data:`SLA_STEPS`, e.g. ``{remind: 5d, escalate: 7d, stall: 10d}``. With
``business_hours: true`` on a status its durations count working time in the
owner's calendar: ``m``/``h`` inside working hours, ``d`` as working days.

:func:`validate_process` reports every problem at once, each with the file's
line and a field path such as ``transitions[3].to``. Problems whose message
starts with ``"warning:"`` do not stop :func:`load_process`.

Line numbers come from :mod:`hub.yamlsource`, shared with :mod:`hub.config`.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from dataclasses import dataclass
from datetime import date, time, timedelta
from functools import cache, cached_property
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hub.errors import ConfigError, Problem
from hub.model import LEAD_FIELDS, Transition
from hub.yamlsource import Loc, YamlSource, format_loc, hint, problems_from_error, read_yaml

__all__ = [
    "Duration",
    "DurationField",
    "parse_duration",
    "SLA_STEPS",
    "StatusDef",
    "TransitionDef",
    "DateRange",
    "Person",
    "Calendar",
    "Process",
    "load_process",
    "validate_process",
    "default_process",
    "is_warning",
]

log = logging.getLogger(__name__)


_DURATION = re.compile(r"(\d+)\s*([mhd])")
_MINUTES = {"m": 1, "h": 60, "d": 24 * 60}


@dataclass(frozen=True, slots=True)
class Duration:
    """A positive span, written ``<whole number><m|h|d>`` (see the module docstring)."""

    amount: int
    unit: Literal["m", "h", "d"]

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    @property
    def delta(self) -> timedelta:
        """The wall-clock span (for business-hours statuses, ask the calendar instead)."""
        return timedelta(minutes=self.amount * _MINUTES[self.unit])


def parse_duration(value: object) -> Duration:
    """``"24h"`` → ``Duration(24, "h")``; a ``ValueError`` saying what is wrong otherwise."""
    if isinstance(value, Duration):
        return value
    text = value.strip() if isinstance(value, str) else str(value)
    match = _DURATION.fullmatch(text)
    if match is None:
        if re.fullmatch(r"-\s*\d+\s*[mhd]?", text):
            raise ValueError(f"duration {value!r} is negative; it must be positive")
        raise ValueError(f"cannot read {value!r} as a duration: write a whole number and a unit "
                         "m, h or d, e.g. 90m, 24h, 5d")
    if int(match[1]) == 0:
        raise ValueError(f"duration {value!r} is zero; it must be positive")
    return Duration(int(match[1]), match[2])  # type: ignore[arg-type]


DurationField = Annotated[Duration, PlainValidator(parse_duration), PlainSerializer(str)]

#: SLA steps, with what the SLA rule does when each runs out: ``due`` the status's deadline,
#: ``remind`` nudge the owner, ``escalate`` tell the owner's manager, ``stall`` flag the lead
#: Stalled, ``review`` a periodic review (Nurture), ``requalify`` an automatic requalification.
SLA_STEPS = ("due", "remind", "escalate", "stall", "review", "requalify")
SlaStep = Literal["due", "remind", "escalate", "stall", "review", "requalify"]
_LADDER = ("remind", "due", "escalate", "stall")  # steps that must fire in this order
_BOOL = TypeAdapter(bool)


def _field_spec(spec: str) -> str:
    return "|".join(part.strip() for part in spec.split("|"))


#: lead field names; ``"email|phone"`` means at least one of them
FieldSpecs = tuple[Annotated[str, AfterValidator(_field_spec)], ...]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, str_strip_whitespace=True)


class StatusDef(_Frozen):
    """One status: who owns it, its SLA ladder, what must be recorded in it."""

    name: str = Field(min_length=1)
    owner: str | None = None  # a role
    description: str = ""
    business_hours: bool = False
    sla: dict[SlaStep, DurationField] = Field(default_factory=dict)
    required: FieldSpecs = ()
    final: bool = False

    @field_validator("sla", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value is None:
            return {}
        return value if isinstance(value, dict) else {"due": parse_duration(value)}

    @field_validator("sla")
    @classmethod
    def _ladder_in_order(cls, sla: dict[str, Duration], info: ValidationInfo) -> dict[str, Duration]:
        steps = [s for s in _LADDER if s in sla]
        business = info.data.get("business_hours", False)
        for before, after in pairwise(steps):
            a, b = sla[before], sla[after]
            # working days and working hours do not convert: compare only like with like
            if (not business or a.unit == b.unit) and b.delta <= a.delta:
                raise ValueError(f"{after} ({b}) must come later than {before} ({a})")
        return sla


class TransitionDef(_Frozen):
    """An allowed move as written in the file (``from``/``to``); see :class:`hub.model.Transition`."""

    source: str = Field(alias="from")
    target: str = Field(alias="to")
    requires: FieldSpecs = ()
    reopen: bool = False

    def to_model(self) -> Transition:
        return Transition(self.source, self.target, self.requires, self.reopen)


class DateRange(_Frozen):
    """Days ``from`` … ``to``, both included."""

    start: date = Field(alias="from")
    end: date = Field(alias="to")

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.end < self.start:
            raise ValueError(f"ends ({self.end}) before it starts ({self.start})")
        return self

    def __contains__(self, day: date) -> bool:
        return self.start <= day <= self.end


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class Person(_Frozen):
    """A team member. ``manager`` is the manager's email; ``calendar`` names a calendar."""

    email: str
    name: str = ""
    role: str
    manager: str | None = None
    territories: tuple[str, ...] = ()  # country codes or region names
    capacity: int | None = Field(default=None, ge=0)  # open leads they can hold
    calendar: str | None = None
    out_of_office: tuple[DateRange, ...] = ()

    @field_validator("email", "manager")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.fullmatch(value):
            raise ValueError(f"{value!r} is not an email address")
        return value.lower() if value else value

    @field_validator("territories")
    @classmethod
    def _upper(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.upper() for v in values)

    def away_on(self, day: date) -> bool:
        return any(day in span for span in self.out_of_office)


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = {f"{d}day": d[:3] for d in ("mon", "tues", "wednes", "thurs", "fri", "satur", "sun")}
_HOURS = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")


class Calendar(_Frozen):
    """A region's business calendar: time zone, working days and hours, public holidays."""

    timezone: str
    working_days: tuple[str, ...] = Field(default=_DAYS[:5], min_length=1)
    working_hours: str = "09:00-17:00"
    country: str | None = None  # public holidays from the ``holidays`` package
    subdivision: str | None = None
    closed: tuple[date, ...] = ()  # extra closed days (company holidays)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name, e.g. Europe/Berlin)") from None
        return value

    @field_validator("working_days", mode="before")
    @classmethod
    def _days(cls, values: Any) -> Any:
        if not isinstance(values, list | tuple):
            return values
        days = [_FULL_DAYS.get(str(v).lower(), str(v).lower()) for v in values]
        bad = [v for v, d in zip(values, days) if d not in _DAYS]
        if bad:
            raise ValueError(f"unknown day(s) {', '.join(map(repr, bad))}; use {', '.join(_DAYS)}")
        return tuple(sorted(set(days), key=_DAYS.index))

    @field_validator("working_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        match = _HOURS.fullmatch(value)
        try:
            opens, closes = time(int(match[1]), int(match[2])), time(int(match[3]), int(match[4]))
        except (TypeError, ValueError):  # no match, or 25:00
            raise ValueError(f"invalid working hours {value!r}: write HH:MM-HH:MM (09:00-17:00)") from None
        if closes <= opens:
            raise ValueError(f"invalid working hours {value!r}: closing time must be after opening time")
        return f"{opens:%H:%M}-{closes:%H:%M}"

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in holidays.list_supported_countries():
            raise ValueError(f"unknown country {value!r} for public holidays (use an ISO 3166 code, e.g. DE)")
        return value.upper() if value else value

    @field_validator("subdivision")
    @classmethod
    def _subdivision(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or "country" not in info.data:
            return value  # "country" is missing from data when it was invalid: already reported
        country = info.data["country"]
        if country is None:
            raise ValueError("a subdivision needs a country")
        known = holidays.list_supported_countries()[country]
        if value not in known:
            raise ValueError(f"unknown subdivision {value!r} of {country}{hint(value, known)}")
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def hours(self) -> tuple[time, time]:
        """Opening and closing time of a working day."""
        opens, closes = self.working_hours.split("-")
        return time.fromisoformat(opens), time.fromisoformat(closes)

    @cached_property
    def _holidays(self) -> holidays.HolidayBase | None:
        return holidays.country_holidays(self.country, subdiv=self.subdivision) if self.country else None

    def holiday(self, day: date) -> str | None:
        """The name of the public holiday or closure on ``day``, if any."""
        if day in self.closed:
            return "closed"
        return self._holidays.get(day) if self._holidays is not None else None

    def is_working_day(self, day: date) -> bool:
        return _DAYS[day.weekday()] in self.working_days and self.holiday(day) is None


class Process(_Frozen):
    """A validated process file. Build one with :func:`load_process` or :func:`default_process`."""

    custom_fields: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    statuses: tuple[StatusDef, ...] = Field(min_length=1)
    transition_defs: tuple[TransitionDef, ...] = Field(default=(), alias="transitions")
    team: tuple[Person, ...] = ()
    calendars: dict[str, Calendar] = Field(default_factory=dict)
    default_calendar: str | None = None
    rules: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # a section whose entries are all commented out reads as null
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k in ("statuses", "default_calendar")}
        return data

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Process:
        if info.context and info.context.get("structure_only"):
            return self
        errors = [(loc, msg) for loc, msg in _cross_check(self.model_dump(mode="json", by_alias=True))
                  if not msg.startswith("warning:")]
        if errors:
            raise ValueError("; ".join(f"{format_loc(loc)}: {msg}" for loc, msg in errors))
        return self

    @cached_property
    def transitions(self) -> tuple[Transition, ...]:
        """The allowed moves, ready for :func:`hub.model.check_transition`."""
        return tuple(t.to_model() for t in self.transition_defs)

    @property
    def required(self) -> dict[str, tuple[str, ...]]:
        """Required fields per status, shaped like :data:`hub.model.REQUIRED_FIELDS`."""
        return {s.name: s.required for s in self.statuses}

    @property
    def status_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.statuses)

    @property
    def final_statuses(self) -> frozenset[str]:
        return frozenset(s.name for s in self.statuses if s.final)

    def status(self, name: str) -> StatusDef:
        """The status called ``name``; ``KeyError`` if the process has none."""
        for s in self.statuses:
            if s.name == name:
                return s
        raise KeyError(f"no status {name!r} in this process")

    def person(self, email: str) -> Person | None:
        """The team member with this email (any case), or ``None``."""
        email = email.lower()
        return next((p for p in self.team if p.email == email), None)

    def manager_of(self, email: str) -> Person | None:
        """The manager of the team member ``email``, or ``None`` if either is unknown."""
        person = self.person(email)
        return self.person(person.manager) if person and person.manager else None

    def calendar(self, name: str | None = None) -> Calendar:
        """The calendar called ``name`` (``None``: the default calendar); ``KeyError`` if none."""
        key = name if name is not None else self.default_calendar
        if key is None or key not in self.calendars:
            raise KeyError(f"no calendar {key!r} in this process" if key else "no default calendar")
        return self.calendars[key]


def is_warning(problem: Problem) -> bool:
    return problem.message.startswith("warning:")


def _items(raw: dict[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    seq = raw.get(key)
    return [(i, x) for i, x in enumerate(seq) if isinstance(x, dict)] if isinstance(seq, list) else []


def _strings(raw: dict[str, Any], key: str) -> list[tuple[int, str]]:
    seq = raw.get(key)
    return [(i, x) for i, x in enumerate(seq) if isinstance(x, str)] if isinstance(seq, list) else []


def _true(value: Any) -> bool:
    try:
        return _BOOL.validate_python(value)
    except ValidationError:
        return False


def _lower(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) else None


def _cross_check(raw: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Checks across sections, on the raw data so a broken item elsewhere hides nothing."""
    out: list[tuple[Loc, str]] = []
    statuses = _items(raw, "statuses")
    names: dict[str, int] = {}
    for i, s in statuses:
        name = s.get("name")
        if isinstance(name, str) and name in names:
            first = f"statuses[{names[name]}]"
            out.append((("statuses", i, "name"), f"duplicate status {name!r} (first at {first})"))
        elif isinstance(name, str):
            names[name] = i
    finals = {s["name"] for _, s in statuses if isinstance(s.get("name"), str) and _true(s.get("final"))}

    def duplicates(key: str, what: str) -> set[str]:
        seen: set[str] = set()
        for j, value in _strings(raw, key):
            if value in seen:
                out.append(((key, j), f"duplicate {what} {value!r}"))
            seen.add(value)
        return seen

    roles = duplicates("roles", "role")
    custom = duplicates("custom_fields", "custom field")
    for j, value in _strings(raw, "custom_fields"):
        if value in LEAD_FIELDS:
            out.append((("custom_fields", j), f"{value!r} is already a lead field"))
    known_fields = LEAD_FIELDS | custom

    def check_fields(loc: Loc, specs: Any) -> None:
        for j, spec in enumerate(specs if isinstance(specs, list) else []):
            for name in spec.split("|") if isinstance(spec, str) else ():
                name = name.strip()
                if name not in known_fields:
                    why = f"{name!r} is not a lead field{hint(name, known_fields, show=False)}"
                    out.append((loc + (j,), f"{why}; declare custom fields under custom_fields"))

    team = _items(raw, "team")
    held = {p.get("role") for _, p in team}
    calendars = raw.get("calendars") if isinstance(raw.get("calendars"), dict) else {}
    for i, s in statuses:
        owner = s.get("owner")
        if isinstance(owner, str) and owner not in roles:
            out.append((("statuses", i, "owner"), f"unknown role {owner!r}{hint(owner, roles)}"))
        elif isinstance(owner, str) and team and owner not in held:
            out.append((("statuses", i, "owner"), f"no one in the team has role {owner!r}"))
        check_fields(("statuses", i, "required"), s.get("required"))
        if _true(s.get("business_hours")) and not calendars:
            out.append((("statuses", i, "business_hours"), "business hours need a calendar under calendars"))

    edges: dict[str, set[str]] = {}
    for i, t in _items(raw, "transitions"):
        src, dst = t.get("from"), t.get("to")
        for key, value in (("from", src), ("to", dst)):
            if isinstance(value, str) and value not in names:
                out.append((("transitions", i, key), f"unknown status {value!r}{hint(value, names)}"))
        check_fields(("transitions", i, "requires"), t.get("requires"))
        if not (isinstance(src, str) and isinstance(dst, str)):
            continue
        if src == dst:
            out.append((("transitions", i), f"{src!r} cannot move to itself"))
        elif dst in edges.get(src, ()):
            out.append((("transitions", i), f"duplicate transition {src!r} → {dst!r}"))
        edges.setdefault(src, set()).add(dst)
        reopen = _true(t.get("reopen"))
        if src in finals and not reopen:
            out.append((("transitions", i), f"{src!r} is final: a move out of it needs reopen: true"))
        elif reopen and src in names and src not in finals:
            why = f"{src!r} is not final; reopen is for moves out of final statuses"
            out.append((("transitions", i, "reopen"), why))

    emails = {_lower(p.get("email")): i for i, p in reversed(team)}
    managers = {_lower(p.get("email")): _lower(p.get("manager")) for _, p in team}
    for i, p in team:
        email, manager = _lower(p.get("email")), _lower(p.get("manager"))
        role, cal = p.get("role"), p.get("calendar")
        if email is not None and emails[email] != i:
            out.append((("team", i, "email"), f"{email!r} is already in the team (team[{emails[email]}])"))
        if isinstance(role, str) and role not in roles:
            out.append((("team", i, "role"), f"unknown role {role!r}{hint(role, roles)}"))
        if manager is not None and manager == email:
            out.append((("team", i, "manager"), "a person cannot be their own manager"))
        elif manager is not None and manager not in emails:
            out.append((("team", i, "manager"), f"manager {manager!r} is not in the team"))
        elif manager is not None:
            chain, current = [email], manager
            while current is not None and current not in chain:
                chain.append(current)
                current = managers.get(current)
            if current == email and email == min(chain):  # report each loop once
                loop = " → ".join([*chain, email])
                out.append((("team", i, "manager"), f"management chain loops: {loop}"))
        if isinstance(cal, str) and cal not in calendars:
            out.append((("team", i, "calendar"), f"unknown calendar {cal!r}{hint(cal, calendars)}"))
    default = raw.get("default_calendar")
    if isinstance(default, str) and default not in calendars:
        out.append((("default_calendar",), f"unknown calendar {default!r}{hint(default, calendars)}"))

    if names:
        start = next(iter(names))
        reached, queue = {start}, deque([start])
        while queue:
            for nxt in edges.get(queue.popleft(), ()):
                if nxt in names and nxt not in reached:
                    reached.add(nxt)
                    queue.append(nxt)
        for name, i in names.items():
            if name not in reached:
                out.append((("statuses", i, "name"),
                            f"warning: status {name!r} cannot be reached from {start!r}"))
            elif name not in finals and not edges.get(name):
                out.append((("statuses", i, "name"), f"warning: open status {name!r} has no transition out"))
    return out


def _check(source: YamlSource) -> tuple[Process | None, list[Problem]]:
    raw = source.data if source.data is not None else {}
    if not isinstance(raw, dict):
        return None, [source.problem((), "a process file is a mapping: statuses, transitions, team…")]
    process, problems = None, []
    try:
        process = Process.model_validate(raw, context={"structure_only": True})
    except ValidationError as exc:
        problems += problems_from_error(exc, source, model=Process)
    problems += [source.problem(loc, msg) for loc, msg in _cross_check(raw)]
    return process, problems


def validate_process(path: Path | str) -> list[Problem]:
    """Every problem in the process file at ``path`` (warnings included), in line order."""
    source, problems = read_yaml(path)
    if source is not None:
        problems += _check(source)[1]
    return sorted(problems, key=lambda p: p.line or 0)


def load_process(path: Path | str) -> Process:
    """Read and validate a process file; ``ConfigError`` listing every error if it is invalid."""
    source, problems = read_yaml(path)
    process = None
    if source is not None:
        process, more = _check(source)
        problems += more
    errors = sorted((p for p in problems if not is_warning(p)), key=lambda p: p.line or 0)
    if errors or process is None:
        raise ConfigError(errors)
    for warning in problems:
        log.warning("%s", warning)
    return process


@cache
def default_process() -> Process:
    """The built-in process of ``process.md`` (``hub/default_process.yaml``)."""
    with resources.as_file(resources.files("hub") / "default_process.yaml") as path:
        return load_process(path)

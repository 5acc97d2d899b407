"""Conditions in the process file: CEL expressions, compiled once, evaluated sandboxed.

Routing filters, score rules, pause and governance checks are written in the Common
Expression Language (CEL, through ``common-expression-language``): never Python ``eval``,
never a home-made parser. An expression sees two variables:

* ``lead`` — the lead's fields by name: every first-class field (``lead.country``,
  ``lead.score``…) and every custom field (``lead.segment``; also ``lead.custom.segment``).
  Dates (``expected_close``, ``next_action``) are timestamps at midnight UTC; unset fields
  are ``null``. A custom field the lead does not have is absent: test it with ``has(lead.x)``.
* ``now`` — the engine's current time, a timestamp: ``lead.next_action > now + duration("168h")``.

:class:`Condition` is a pydantic-ready type: a rule's config declares ``when: Condition`` and a
syntax error, or an unknown variable, is a config error with the file's line. At run time an
expression that cannot be evaluated on a lead (``null > 10``, a missing custom field) is
*false* for :meth:`Condition.test`; :meth:`Condition.evaluate` raises :class:`ConditionError`.

Cost: an expression that reads only ``lead.<field>`` gets just those fields converted
(:attr:`Condition.fields`); converting a whole lead costs tens of microseconds. ``matches()``
compiles its regular expression on every evaluation in this CEL implementation (0.1–1 ms), so
prefer ``contains``/``startsWith``/``endsWith`` and ``["a", "b"].exists(w, lead.x.contains(w))``
in conditions evaluated for every lead.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timezone
from typing import Any

import cel
from pydantic_core import core_schema

from hub.model import LEAD_FIELDS, Lead

__all__ = ["Condition", "ConditionError", "lead_env", "env_values", "field_values"]

VARIABLES = ("lead", "now")
#: CEL's standard functions (macros such as ``has``/``exists``/``map`` never show up as calls).
FUNCTIONS = frozenset({
    "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string", "bytes",
    "bool", "timestamp", "duration", "type", "dyn", "max", "min", "getDate", "getDayOfMonth", "getDayOfWeek",
    "getDayOfYear", "getFullYear", "getHours", "getMilliseconds", "getMinutes", "getMonth", "getSeconds",
})
_UNDEFINED = re.compile(r"Undefined variable or function: '([^']+)'")
_LEAD = re.compile(r"\blead\b")
_LEAD_FIELD = re.compile(r"\blead\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_RUNTIME_ERRORS = (TypeError, KeyError, ValueError, RuntimeError, OverflowError, ZeroDivisionError)


class ConditionError(Exception):
    """A condition could not be evaluated on a lead (wrong types, a missing field…)."""


def _value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)
    if isinstance(v, date):
        return datetime.combine(v, time(), timezone.utc)
    if isinstance(v, dict):
        return {str(k): _value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    return v


def env_values(lead: Lead) -> dict[str, Any]:
    """The lead as CEL sees it: first-class fields, custom fields flattened in, and ``custom``."""
    custom = {str(k): _value(v) for k, v in lead.custom.items()}
    data = {**custom}
    for name in LEAD_FIELDS:
        data[name] = _value(getattr(lead, name))
    data["custom"] = custom
    return data


def field_values(lead: Lead, fields: frozenset[str]) -> dict[str, Any]:
    """Just ``fields`` of the lead as CEL sees them (absent when the lead has no such field)."""
    out: dict[str, Any] = {}
    for name in fields:
        if name in LEAD_FIELDS:
            out[name] = _value(getattr(lead, name))
        elif name == "custom":
            out[name] = {str(k): _value(v) for k, v in lead.custom.items()}
        elif name in lead.custom:
            out[name] = _value(lead.custom[name])
    return out


def lead_env(lead: Lead, now: datetime, **extra: Any) -> cel.Context:
    """One evaluation context for ``lead`` at ``now`` (build once per lead, test many conditions)."""
    return cel.Context({"lead": env_values(lead), "now": _value(now), **extra})


class Condition:
    """A compiled CEL expression. ``Condition("lead.country == 'DE'")``; raises ``ValueError`` if bad."""

    __slots__ = ("source", "_program", "fields")

    def __init__(self, source: str, *, variables: tuple[str, ...] = VARIABLES):
        if not isinstance(source, str) or not source.strip():
            raise ValueError("a condition is a non-empty CEL expression, e.g. lead.country == \"DE\"")
        self.source = source.strip()
        try:
            self._program = cel.compile(self.source)
        except (ValueError, RuntimeError) as exc:
            detail = " ".join(str(exc).split("\n")[0].split())
            raise ValueError(f"invalid CEL expression {self.source!r}: {detail}") from None
        self._check_names(variables)
        #: The lead fields the expression reads (``None``: it uses ``lead`` some other way), so an
        #: evaluation need only convert those: building a CEL map costs per key, not per use.
        self.fields: frozenset[str] | None = None
        used = _LEAD_FIELD.findall(self.source)
        if len(used) == len(_LEAD.findall(self.source)):
            self.fields = frozenset(used)

    def _check_names(self, variables: tuple[str, ...]) -> None:
        unknown = [f for f in self._program.functions() if f[0].isalpha() and f not in FUNCTIONS]
        if unknown:
            raise ValueError(f"unknown function {unknown[0]!r} in {self.source!r}")
        blank = {name: None for name in LEAD_FIELDS} | {"custom": {}}
        trial = cel.Context({"lead": blank, "now": datetime.now(timezone.utc),
                             **{v: None for v in variables if v not in VARIABLES}})
        try:
            self._program.execute(trial)
        except RuntimeError as exc:
            match = _UNDEFINED.search(str(exc))
            if match and match[1] in self._program.variables() and match[1] not in variables:
                raise ValueError(f"unknown name {match[1]!r} in {self.source!r}: "
                                 f"conditions can use {', '.join(variables)}") from None
        except _RUNTIME_ERRORS:
            pass  # null fields in the trial: only unknown names matter here

    @classmethod
    def parse(cls, value: Any) -> Condition:
        return value if isinstance(value, Condition) else cls(value)

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse, serialization=core_schema.plain_serializer_function_ser_schema(str))

    def evaluate(self, env: cel.Context | dict[str, Any]) -> Any:
        """The expression's value; :class:`ConditionError` if it cannot be computed."""
        try:
            return self._program.execute(env)
        except _RUNTIME_ERRORS as exc:
            raise ConditionError(f"{self.source}: {' '.join(str(exc).split())[:200]}") from None

    def test(self, env: cel.Context | dict[str, Any]) -> bool:
        """True only when the expression evaluates to ``true``; an evaluation error is false."""
        try:
            return self._program.execute(env) is True
        except _RUNTIME_ERRORS:
            return False

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        return f"Condition({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Condition) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

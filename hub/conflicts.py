"""Conflict rules per field: which value wins when CRMs disagree.

Set in the hub config, one rule per canonical (or custom) field, ``"*"`` for the rest::

    conflict_rules:
      "*": most_recent              # the default: the latest edit wins
      phone: prefer sales           # sales' value unless sales has none, then the latest edit
      owner: source sales           # only sales may change it (anyone may fill a blank)
      title: most_recent

Whatever the rule, a blank never overwrites a value, and ``status`` is not
decided here: it moves only along the process's transitions (an illegal move is
kept as a conflict, see :mod:`hub.sync`).

A decision compares two :class:`Claim`\\ s: the lead's current value (with who
set it and when, the lead's *provenance*) and a value a CRM reports. The
timestamp of a CRM's claim is its record's last-modified time. Every decision
returns a one-line reason; the sync stores it with the write it causes, the dry
run prints it, and a lost claim is kept in ``conflicts`` (resolved).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from hub.model import blank

__all__ = ["Claim", "FieldRule", "Decision", "Resolver"]


class FieldRule(BaseModel):
    """``most_recent``, ``prefer <connection>`` (unless blank) or ``source <connection>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: Literal["most_recent", "prefer", "source"] = "most_recent"
    source: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        words = data.replace("unless blank", "").split()
        if words == ["most_recent"] or words == ["most", "recent"]:
            return {"rule": "most_recent"}
        if len(words) == 2 and words[0] in ("prefer", "source"):
            return {"rule": words[0], "source": words[1]}
        raise ValueError(f"cannot read rule {data!r}: write most_recent, 'prefer <connection>' or "
                         "'source <connection>'")

    @model_validator(mode="after")
    def _needs_source(self) -> FieldRule:
        if self.rule != "most_recent" and not self.source:
            raise ValueError(f"rule {self.rule!r} names a connection: '{self.rule} <connection>'")
        if self.rule == "most_recent" and self.source:
            raise ValueError("most_recent names no connection")
        return self

    def __str__(self) -> str:
        return self.rule if self.rule == "most_recent" else f"{self.rule} {self.source}"


@dataclass(frozen=True, slots=True)
class Claim:
    """A value and who holds it: a connection name, ``rule:<name>``, or ``hub``; ``at`` when it was set."""

    by: str
    value: Any
    at: datetime | None


@dataclass(frozen=True, slots=True)
class Decision:
    incoming_wins: bool
    reason: str


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else "an unknown time"


class Resolver:
    """Decides per field with the configured rules; ``rules["*"]`` (default most_recent) for the rest."""

    def __init__(self, rules: Mapping[str, FieldRule] | None = None):
        self.rules = dict(rules or {})
        self.default = self.rules.pop("*", FieldRule())

    def rule(self, field: str) -> FieldRule:
        return self.rules.get(field, self.default)

    def decide(self, field: str, current: Claim, incoming: Claim,
               held_by: Callable[[str], Any] = lambda _conn: None) -> Decision:
        """Does ``incoming`` replace ``current``? ``held_by(conn)``: ``conn``'s value, for ``prefer``."""
        rule = self.rule(field)
        if blank(incoming.value):
            return Decision(False, f"{field}: never overwrite a value with a blank")
        if blank(current.value):
            return Decision(True, f"{field}: {incoming.by} fills a blank")
        if rule.rule == "source":
            if incoming.by == rule.source:
                return Decision(True, f"{field}: {rule.source} is its source of truth")
            return Decision(False, f"{field}: {rule.source} is its source of truth, not {incoming.by}")
        if rule.rule == "prefer":
            if incoming.by == rule.source:
                return Decision(True, f"{field}: prefer {rule.source} unless blank")
            if current.by == rule.source or not blank(held_by(rule.source)):
                return Decision(False, f"{field}: prefer {rule.source} unless blank, and {rule.source} "
                                       "has a value")
        prefix = f"{field}: prefer {rule.source}, which is blank, so most recent" if rule.rule == "prefer" \
            else f"{field}: most recent"
        if current.at is None or (incoming.at is not None and incoming.at >= current.at):
            return Decision(True, f"{prefix}: {incoming.by} edited it at {_when(incoming.at)}, after "
                                  f"{current.by} at {_when(current.at)}")
        return Decision(False, f"{prefix}: {current.by} edited it at {_when(current.at)}, after "
                               f"{incoming.by} at {_when(incoming.at)}")

    def pick(self, field: str, claims: list[Claim]) -> tuple[Claim | None, str]:
        """The winning claim among several (for back-filling a changed rule), and why."""
        best: Claim | None = None
        reason = f"{field}: no value anywhere"
        held = {c.by: c.value for c in claims}
        for claim in claims:
            if best is None:
                if not blank(claim.value):
                    best, reason = claim, f"{field}: only {claim.by} has a value"
                continue
            d = self.decide(field, best, claim, lambda conn: held.get(conn))
            best, reason = (claim if d.incoming_wins else best), d.reason
        return best, reason

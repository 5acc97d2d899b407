"""The canonical lead model: statuses, transitions, fields, required fields.

Pure: no I/O, no knowledge of any CRM or of the store. Everything else in LeadHub
speaks in these terms; connectors translate to and from them.

The nine statuses below are the *default* process (``process.md``). A company's
process file may rename nothing but may drop statuses or add transitions; the
structures here (:class:`Transition`, :data:`REQUIRED_FIELDS`) are what
:mod:`hub.process` fills from that file.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Status",
    "FINAL_STATUSES",
    "Transition",
    "DEFAULT_TRANSITIONS",
    "REQUIRED_FIELDS",
    "LEAD_FIELDS",
    "Lead",
    "TransitionCheck",
    "check_transition",
    "missing_fields",
    "blank",
    "new_lead_id",
    "fields_hash",
    "utcnow",
]


class Status(StrEnum):
    """The nine canonical lead statuses, in the order of the normal flow."""

    LEAD = "Lead"
    MQL = "MQL"
    SAL = "SAL"
    SQL = "SQL"
    OPPORTUNITY = "Opportunity"
    NEGOTIATION = "Negotiation"
    CLOSED_WON = "Closed Won"
    CLOSED_LOST = "Closed Lost"
    NURTURE = "Nurture"


#: Statuses a lead only leaves through an explicit reopening rule.
FINAL_STATUSES = frozenset({Status.CLOSED_WON, Status.CLOSED_LOST})


@dataclass(frozen=True, slots=True)
class Transition:
    """An allowed move between two statuses.

    ``requires`` names lead fields that must be filled for this move (on top of
    the target status's own required fields), e.g. a SAL rejection back to
    marketing needs ``rejection_reason``. ``reopen`` marks a move out of a final
    status: it is only applied when made by a rule that says it reopens.
    """

    source: str
    target: str
    requires: tuple[str, ...] = ()
    reopen: bool = False


def _t(source: Status, target: Status, *requires: str, reopen: bool = False) -> Transition:
    return Transition(str(source), str(target), tuple(requires), reopen)


S = Status
DEFAULT_TRANSITIONS: tuple[Transition, ...] = (
    _t(S.LEAD, S.MQL),
    _t(S.LEAD, S.NURTURE),
    _t(S.LEAD, S.CLOSED_LOST, "loss_reason"),
    _t(S.MQL, S.SAL),
    _t(S.MQL, S.NURTURE),
    _t(S.MQL, S.LEAD, "rejection_reason"),
    _t(S.SAL, S.SQL),
    _t(S.SAL, S.MQL, "rejection_reason"),  # rejected back to marketing, with a reason
    _t(S.SAL, S.NURTURE, "rejection_reason"),
    _t(S.SAL, S.CLOSED_LOST, "loss_reason"),
    _t(S.SQL, S.OPPORTUNITY),
    _t(S.SQL, S.NURTURE),
    _t(S.SQL, S.CLOSED_LOST, "loss_reason"),
    _t(S.OPPORTUNITY, S.NEGOTIATION),
    _t(S.OPPORTUNITY, S.CLOSED_WON),
    _t(S.OPPORTUNITY, S.CLOSED_LOST, "loss_reason"),
    _t(S.OPPORTUNITY, S.NURTURE),
    _t(S.NEGOTIATION, S.CLOSED_WON),
    _t(S.NEGOTIATION, S.CLOSED_LOST, "loss_reason"),
    _t(S.NEGOTIATION, S.OPPORTUNITY),
    _t(S.NEGOTIATION, S.NURTURE),
    _t(S.NURTURE, S.MQL),  # requalified
    _t(S.NURTURE, S.SAL),
    _t(S.NURTURE, S.CLOSED_LOST, "loss_reason"),
    _t(S.CLOSED_LOST, S.NURTURE, reopen=True),
    _t(S.CLOSED_LOST, S.MQL, reopen=True),
    _t(S.CLOSED_WON, S.OPPORTUNITY, reopen=True),
)

#: Fields that must be set for a lead to be complete in each status (process.md).
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    S.LEAD: ("last_name", "company", "email|phone", "source"),
    S.MQL: ("segment", "company_size", "industry", "role"),
    S.SAL: (),
    S.SQL: ("need", "budget", "timeline"),
    S.OPPORTUNITY: ("value", "probability", "expected_close"),
    S.NEGOTIATION: ("next_action",),
    S.CLOSED_WON: (),
    S.CLOSED_LOST: ("loss_reason",),
    S.NURTURE: (),
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_lead_id() -> str:
    """A new hub lead id: a UUID4 in hex, short enough for every CRM's text field."""
    return uuid.uuid4().hex


class Lead(BaseModel):
    """One person the company is trying to sell to, in canonical terms.

    Field names are the vocabulary shared by connectors (field maps), rules and
    the process file. ``custom`` holds install-specific fields by name, and also
    the qualification fields (``segment``, ``need``…) when no first-class field
    exists for them.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    id: str = Field(default_factory=new_lead_id)
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    domain: str | None = None
    title: str | None = None
    country: str | None = None
    source: str | None = None
    owner: str | None = None  # the owner's email: the one key every CRM can map
    status: str = Status.LEAD.value
    status_since: datetime | None = None
    score: float | None = None
    value: float | None = None
    currency: str | None = None
    probability: float | None = None
    expected_close: date | None = None
    next_action: date | None = None
    loss_reason: str | None = None
    rejection_reason: str | None = None
    custom: dict[str, Any] = Field(default_factory=dict)

    def get(self, name: str) -> Any:
        """A field by name, looking in ``custom`` for names that are not first-class."""
        if name in LEAD_FIELDS:
            return getattr(self, name)
        return self.custom.get(name)

    def canonical(self) -> dict[str, Any]:
        """The lead's data fields as plain JSON-able values (no id, no status_since)."""
        data = self.model_dump(mode="json", exclude={"id", "status_since"})
        return data


#: First-class lead field names.
LEAD_FIELDS = frozenset(Lead.model_fields) - {"custom"}


def blank(value: Any) -> bool:
    """No value: ``None`` or a string of only whitespace (a blank never overwrites a value)."""
    return value is None or (isinstance(value, str) and not value.strip())


def missing_fields(lead: Lead, required: tuple[str, ...]) -> list[str]:
    """The required fields a lead lacks. ``"a|b"`` means at least one of them."""
    missing = []
    for spec in required:
        options = spec.split("|")
        if all(blank(lead.get(name)) for name in options):
            missing.append(spec.replace("|", " or "))
    return missing


@dataclass(frozen=True, slots=True)
class TransitionCheck:
    """The verdict on a status move: ``allowed`` and, when not, ``reason``.

    ``incomplete`` lists required fields still missing: the move stands but the
    lead is marked incomplete (governance turns that into a task).
    """

    allowed: bool
    reason: str = ""
    incomplete: tuple[str, ...] = ()


def check_transition(
    lead: Lead,
    target: str,
    *,
    transitions: tuple[Transition, ...] = DEFAULT_TRANSITIONS,
    required: dict[str, tuple[str, ...]] = REQUIRED_FIELDS,
    reopen: bool = False,
) -> TransitionCheck:
    """May ``lead`` move to ``target``? Pure; the caller records the outcome."""
    source = lead.status
    if source == target:
        return TransitionCheck(True)
    match = next((t for t in transitions if t.source == source and t.target == target), None)
    if match is None:
        return TransitionCheck(False, f"{source} → {target} is not an allowed transition")
    if match.reopen and not reopen:
        return TransitionCheck(False, f"{source} is final; only a reopening rule may move it to {target}")
    needs = missing_fields(lead, match.requires)
    if needs:
        return TransitionCheck(False, f"{source} → {target} needs {', '.join(needs)}")
    incomplete = tuple(missing_fields(lead, required.get(target, ())))
    return TransitionCheck(True, incomplete=incomplete)


def fields_hash(fields: dict[str, Any]) -> str:
    """A stable hash of canonical field values, used to recognise the hub's own writes.

    Blank strings and ``None`` hash alike so a CRM that returns ``""`` for an
    unset property does not look like a change.
    """
    norm = {k: v for k, v in sorted(fields.items()) if not blank(v)}
    blob = json.dumps(norm, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]

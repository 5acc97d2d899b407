"""Governance: every status's required fields are recorded, and the process's own checks hold.

A status change is never blocked for missing fields (the sync keeps the move and the history
row lists them as ``incomplete``); this rule turns the gap into work. For each lead it finds

* the fields its status requires (``statuses[].required``: a Closed Lost needs ``loss_reason``,
  an Opportunity ``value``, ``probability``, ``expected_close``, a Negotiation ``next_action``…),
* the fields the move into the status required (``transitions[].requires``: a SAL rejection
  back to MQL or Nurture needs ``rejection_reason``),
* every check under ``checks`` whose CEL condition holds (a violation when *true*).

A lead with violations is flagged ``incomplete`` (the note lists them) and its owner gets one
task naming them; when the list changes the old task is closed and a new one made; when all is
fixed the flag is cleared and the task closed. :func:`open_violations` lists the open ones
(the library behind a future ``leadhub status``).

Config (``rules.governance``)::

    statuses: [Opportunity, Negotiation, Closed Lost]   # default: every status
    checks:
      - status: Negotiation                             # or "*" for every status
        when: 'lead.next_action != null && lead.next_action > now + duration("168h")'
        message: next-action date more than 7 days out
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from hub.actions import Action, LeadFlag
from hub.conditions import Condition
from hub.engine import Rule, RuleConfig, RuleContext
from hub.model import Lead, missing_fields
from hub.process import Loc
from hub.store import LeadRow, Store

__all__ = ["Check", "GovernanceConfig", "GovernanceRule", "Violation", "open_violations", "RULES"]

FLAG = "incomplete"


class Check(BaseModel):
    """A process check: ``when`` (CEL) true on a lead in ``status`` is a violation with ``message``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: str = "*"
    when: Condition
    message: str


class GovernanceConfig(RuleConfig):
    statuses: list[str] | None = None
    checks: list[Check] = Field(default_factory=list)


class GovernanceRule(Rule):
    """Flags leads whose status lacks what it requires, with a task for the owner (module docstring)."""

    name = "governance"
    order = 50
    Config = GovernanceConfig

    def check(self) -> list[tuple[Loc, str]]:
        names, out = set(self.process.status_names), []
        for i, status in enumerate(self.config.statuses or ()):
            if status not in names:
                out.append((("statuses", i), f"unknown status {status!r}"))
        for i, c in enumerate(self.config.checks):
            if c.status != "*" and c.status not in names:
                out.append((("checks", i, "status"), f"unknown status {c.status!r}"))
        return out

    def violations(self, ctx: RuleContext, lead: Lead) -> list[str]:
        """What is wrong with the lead in its current status, one message per problem."""
        if self.config.statuses is not None and lead.status not in self.config.statuses:
            return []
        missing = missing_fields(lead, self.process.required.get(lead.status, ()))
        history = ctx.history(lead.id)
        if history and history[-1].to_status == lead.status and history[-1].from_status:
            move = next((t for t in self.process.transitions
                         if t.source == history[-1].from_status and t.target == lead.status), None)
            if move is not None:
                missing += [m for m in missing_fields(lead, move.requires) if m not in missing]
        found = [f"missing {', '.join(missing)}"] if missing else []
        for c in self.config.checks:
            if c.status in ("*", lead.status) and ctx.test(c.when, lead):
                found.append(c.message)
        return found

    def evaluate(self, ctx: RuleContext, lead: Lead) -> Iterable[Action]:
        found = self.violations(ctx, lead)
        flag = ctx.flags(lead.id).get(FLAG)
        note = "; ".join(found)
        if not found:
            if flag is None:
                return []
            return [Action.unflag(FLAG, reason=f"{lead.status} is complete again"),
                    Action.close_tasks(task_kind="violation", reason=f"{lead.status} is complete again")]
        if flag is not None and flag.note == note and flag.status == lead.status:
            return []
        inputs = {"status": lead.status, "violations": found, "owner": lead.owner}
        actions = []
        if flag is not None:
            actions += [Action.unflag(FLAG, reason="what is missing changed", inputs=inputs),
                        Action.close_tasks(task_kind="violation", reason="what is missing changed")]
        since = lead.status_since.isoformat() if lead.status_since else ""
        actions += [
            Action.flag(FLAG, note=note, reason=f"{lead.status}: {note}", inputs=inputs),
            Action.create_task(f"Complete {lead.status}: {note}", assignee=lead.owner, task_kind="violation",
                               reason=f"{lead.status}: {note}", inputs=inputs,
                               key=f"{lead.status}@{since}:{note}"),
        ]
        return actions

    def describe(self, ctx: RuleContext, lead: Lead) -> list[str]:
        found = self.violations(ctx, lead)
        return [f"governance: {'; '.join(found)}"] if found else []


@dataclass(frozen=True, slots=True)
class Violation:
    """An open governance violation: which lead, its status and owner, what is wrong, since when."""

    lead_id: str
    status: str
    owner: str | None
    problems: str
    since: datetime | None


def open_violations(store: Store, *, owner: str | None = None) -> list[Violation]:
    """Every lead currently flagged ``incomplete``, oldest first (optionally one owner's)."""
    f, L = LeadFlag.__table__, LeadRow.__table__
    q = (sa.select(f.c.lead_id, L.c.status, L.c.owner, f.c.note, f.c.since)
         .join(L, L.c.id == f.c.lead_id).where(f.c.flag == FLAG))
    if owner is not None:
        q = q.where(sa.func.lower(L.c.owner) == owner.lower())
    with Session(store.engine) as s:
        return [Violation(*row) for row in s.execute(q.order_by(f.c.since, f.c.lead_id)).all()]


RULES = (GovernanceRule,)

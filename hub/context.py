"""What a rule may read while it evaluates a lead: :class:`RuleContext`.

The engine builds one context per run and points it at each batch of leads. Everything here is
read-only — queries return plain rows, never session objects — except a rule's own small memory
(:meth:`RuleContext.state` / :meth:`RuleContext.keep`), which the engine saves with the lead's
actions (and drops in a dry run). Per-lead look-ups (history, links, flags, relations) are
fetched for the whole batch on first use: one query per batch, not one per lead.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import cel
import sqlalchemy as sa
from sqlmodel import Session

from hub.actions import LeadFlag, LeadRelation, RuleAction
from hub.calendar import BusinessClock, Clock, WallClock
from hub.conditions import Condition, field_values, lead_env
from hub.model import Lead
from hub.process import Calendar, Person, Process
from hub.store import LeadRow, Link, StatusChange, lead_from_row

if TYPE_CHECKING:
    from hub.engine import Rule

__all__ = ["RuleContext", "FlagInfo"]


@dataclass(frozen=True, slots=True)
class FlagInfo:
    """A flag on a lead: which rule set it, why, in which status, since when."""

    flag: str
    rule: str
    note: str
    status: str | None
    since: datetime | None


class RuleContext:
    """The process, the engine's ``now``, calendars and read-only queries; see :mod:`hub.engine`."""

    def __init__(self, process: Process, now: datetime, dry_run: bool = False):
        self.process = process
        self.now = now
        self.dry_run = dry_run
        self.rule: Rule | None = None  # the rule being evaluated (set by the engine)
        self.state_book: dict[str, Any] = {}  # the current lead's rule memories (set by the engine)
        self._s: Session | None = None
        self._ids: list[str] = []
        self._cache: dict[str, dict[str, Any]] = {}
        self._owners: dict[str, int] | None = None
        self._clocks: dict[tuple[str, str | None], BusinessClock] = {}
        self._env: tuple[Lead, cel.Context] | None = None

    @property
    def state_session(self) -> Session:
        """The batch's session, for rules that keep state tables of their own.

        Routing (rotation, caps, its audit trail) and dedup (the blocking-key index)
        must read and write that state in the same transaction as the batch's
        actions, under one lock, or two leads routed at once could overdraw a cap.
        Write only to your rule's own tables here; every change to a lead goes
        through actions, so it is stored, explained and sent to the CRMs.
        """
        if self._s is None:
            raise RuntimeError("no batch is open (the engine calls begin_batch before evaluating)")
        return self._s

    def begin_batch(self, session: Session, lead_ids: list[str]) -> None:
        self._s, self._ids, self._cache, self._env = session, lead_ids, {}, None

    # -- people and calendars ---------------------------------------------------------------
    def person(self, email: str | None) -> Person | None:
        return self.process.person(email) if email else None

    def calendar_for(self, lead: Lead) -> Calendar | None:
        """The owner's calendar, else the process's default calendar, else ``None``."""
        person = self.person(lead.owner)
        name = person.calendar if person and person.calendar else self.process.default_calendar
        return self.process.calendars.get(name) if name else None

    def clock_for(self, lead: Lead, status: str | None = None) -> Clock:
        """Business time in the owner's calendar if the status counts it, else wall time."""
        try:
            business = self.process.status(status or lead.status).business_hours
        except KeyError:
            business = False
        calendar = self.calendar_for(lead) if business else None
        if calendar is None:
            return WallClock()
        person = self.person(lead.owner)
        name = person.calendar if person and person.calendar else self.process.default_calendar
        key = (str(name), person.email if person and person.out_of_office else None)
        if key not in self._clocks:
            self._clocks[key] = BusinessClock(calendar, days_off=person.out_of_office if key[1] else ())
        return self._clocks[key]

    # -- per-lead look-ups, fetched for the whole batch -------------------------------------
    def _grouped(self, name: str, table: Any, column: str, order: Any = None) -> dict[str, Any]:
        if name not in self._cache:
            q = sa.select(table).where(table.c[column].in_(self._ids))
            if order is not None:
                q = q.order_by(*order)
            groups: dict[str, list[Any]] = defaultdict(list)
            for row in self._s.execute(q).all():
                groups[getattr(row, column)].append(row)
            self._cache[name] = groups
        return self._cache[name]

    def history(self, lead_id: str) -> list[Any]:
        """The lead's status changes, oldest first (rows: ``from_status``, ``to_status``, ``at``, ``by``)."""
        t = StatusChange.__table__
        return list(self._grouped("history", t, "lead_id", (t.c.at, t.c.id)).get(lead_id, ()))

    def links(self, lead_id: str) -> list[Any]:
        """The lead's CRM records (rows: ``connection``, ``object``, ``remote_id``, ``deleted_at``)."""
        return list(self._grouped("links", Link.__table__, "lead_id").get(lead_id, ()))

    def relations(self, lead_id: str) -> list[Any]:
        """Relations from this lead (rows with ``other_id``, ``relation``, ``rule``, ``at``)."""
        return list(self._grouped("relations", LeadRelation.__table__, "lead_id").get(lead_id, ()))

    def note_relation(self, lead_id: str, row: Any) -> None:
        """Keep the batch's view current after the engine adds a relation."""
        self.relations(lead_id)
        self._cache["relations"][lead_id].append(row)

    def merged_leads(self) -> set[str]:
        """Leads of this batch that were merged into another lead (the engine skips them)."""
        groups = self._grouped("relations", LeadRelation.__table__, "lead_id")
        return {lid for lid, rows in groups.items() if any(r.relation == "merged_into" for r in rows)}

    def flags(self, lead_id: str) -> dict[str, FlagInfo]:
        """The lead's flags by name."""
        if "flags" not in self._cache:
            groups: dict[str, dict[str, FlagInfo]] = defaultdict(dict)
            t = LeadFlag.__table__
            for r in self._s.execute(sa.select(t).where(t.c.lead_id.in_(self._ids))).all():
                groups[r.lead_id][r.flag] = FlagInfo(r.flag, r.rule, r.note, r.status, r.since)
            self._cache["flags"] = groups
        return self._cache["flags"][lead_id]

    def past_actions(self, lead_id: str, rule: str | None = None) -> list[Any]:
        """Actions stored for the lead in earlier runs (one query per call: use sparingly)."""
        t = RuleAction.__table__
        q = sa.select(t).where(t.c.lead_id == lead_id)
        if rule is not None:
            q = q.where(t.c.rule == rule)
        return list(self._s.execute(q.order_by(t.c.id)).all())

    # -- wider queries ------------------------------------------------------------------------
    def open_leads_by_owner(self) -> dict[str, int]:
        """Leads not in a final status, per owner email; kept current as this run assigns owners."""
        if self._owners is None:
            t = LeadRow.__table__
            q = (sa.select(t.c.owner, sa.func.count()).where(t.c.owner.is_not(None),
                 t.c.status.not_in(sorted(self.process.final_statuses))).group_by(t.c.owner))
            self._owners = defaultdict(int, {o.lower(): n for o, n in self._s.execute(q).all()})
        return self._owners

    def count_owner_change(self, old: Lead, new: Lead) -> None:
        """Keep :meth:`open_leads_by_owner` current (called by the engine when it changes a lead)."""
        if self._owners is None:
            return
        finals = self.process.final_statuses
        if old.owner and old.status not in finals:
            self._owners[old.owner.lower()] -= 1
        if new.owner and new.status not in finals:
            self._owners[new.owner.lower()] += 1

    def leads(self, *where: Any, limit: int = 100) -> list[Lead]:
        """Leads matching SQLAlchemy conditions on ``LeadRow`` columns, e.g. ``LeadRow.domain == d``."""
        t = LeadRow.__table__
        return [lead_from_row(r) for r in self._s.execute(sa.select(t).where(*where).limit(limit)).all()]

    def query(self, statement: sa.Select) -> list[Any]:
        """Any read-only SELECT (as rows); anything else is refused."""
        if not isinstance(statement, sa.Select):
            raise TypeError("a rule may only read: pass a SELECT")
        return list(self._s.execute(statement).all())

    # -- conditions ------------------------------------------------------------------------
    def env(self, lead: Lead) -> cel.Context:
        """The CEL context for ``lead`` at ``now``, built once per lead version."""
        if self._env is None or self._env[0] is not lead:  # holding the lead keeps its id unique
            self._env = (lead, lead_env(lead, self.now))
        return self._env[1]

    def test(self, condition: Condition, lead: Lead) -> bool:
        """Does ``condition`` hold for ``lead`` now? (An evaluation error is false.)"""
        if condition.fields is None:
            return condition.test(self.env(lead))
        return condition.test({"lead": field_values(lead, condition.fields), "now": self.now})

    # -- the rule's own memory ---------------------------------------------------------------
    def state(self, lead: Lead) -> dict[str, Any]:
        """What the current rule kept for this lead last time (``{}`` if nothing)."""
        return dict(self.state_book.get(self.rule.name, {}))

    def keep(self, lead: Lead, data: dict[str, Any]) -> None:
        """Replace the current rule's memory for this lead (JSON-able; ``{}`` forgets)."""
        if data:
            self.state_book[self.rule.name] = dict(data)
        else:
            self.state_book.pop(self.rule.name, None)

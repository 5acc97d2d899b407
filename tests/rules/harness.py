"""Shared test harness for the built-in rules: a migrated store per test and one-rule engine runs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

from hub.actions import LeadFlag, RuleAction, Task
from hub.engine import Engine, EngineOutcome, Rule
from hub.model import Lead
from hub.process import Process, load_process
from hub.store import LeadRow, StatusChange, Store, row_values

REPO = Path(__file__).resolve().parents[2]
EXAMPLE: Process = load_process(REPO / "examples" / "process.yaml")
JONAS, SOFIA, CLAIRE, LENA = ("jonas.keller@brightfield.example", "sofia.brandt@brightfield.example",
                              "claire.dubois@brightfield.example", "lena.vogel@brightfield.example")


def add(store: Store, *leads: Lead, at: datetime | None = None) -> None:
    with store.session() as s:
        for lead in leads:
            s.add(LeadRow(**row_values(lead), created_at=at or lead.status_since, updated_at=at or lead.status_since))
            s.flush()
            if lead.status_since is not None:
                s.add(StatusChange(lead_id=lead.id, from_status=None, to_status=lead.status, at=lead.status_since,
                                   by="connection:crm"))


def change(store: Store, lead_id: str, when: datetime | None = None, **fields) -> None:
    """Edit a lead as a sync would (``updated_at`` moves, so the engine looks again)."""
    from hub.model import utcnow

    with store.session() as s:
        row = s.get(LeadRow, lead_id)
        for k, v in fields.items():
            if k in LeadRow.model_fields:
                setattr(row, k, v)
            else:
                row.custom = {**row.custom, k: v}
        row.updated_at = utcnow()


def run(store: Store, rule: Rule, now: datetime, process: Process | None = None, **kw) -> EngineOutcome:
    return Engine(store, process or rule.process, [rule]).run(now, keep_actions=True, **kw)


def kinds(out: EngineOutcome) -> list[str]:
    return [a.kind for a in out.actions if a.applied]


def tasks(store: Store, state: str | None = "open") -> list[Task]:
    with Session(store.engine) as s:
        q = sa.select(Task).order_by(Task.id)
        if state is not None:
            q = q.where(Task.state == state)
        return list(s.exec(q).scalars())


def flags(store: Store, lead_id: str) -> dict[str, LeadFlag]:
    with Session(store.engine) as s:
        return {f.flag: f for f in s.exec(sa.select(LeadFlag).where(LeadFlag.lead_id == lead_id)).scalars()}


def actions(store: Store) -> list[RuleAction]:
    with Session(store.engine) as s:
        return list(s.exec(sa.select(RuleAction).order_by(RuleAction.id)).scalars())

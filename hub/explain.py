"""A lead's whole story, in order: what ``leadhub explain LEAD`` prints.

:func:`story` gathers, for one lead: when it was created, every status change (who moved it,
from which CRM, what was still missing), every rule action (routing decisions, scores, SLA
reminders and escalations, flags, links and merges — with its one-line reason, and why it was
refused if it was; a routing decision also lists every candidate and why each was passed over),
conflicts a CRM reported, merges into or out of the lead, each rule task's life in the CRM it
went to (created there, closed in the hub, closed there, or refused with the CRM's words), and
each merge asked of a CRM with its outcome; sorted by time. :func:`current` adds the state now:
flags, open tasks, and each rule's own description
(SLA clocks with their deadlines, the score and where it comes from, governance gaps).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlmodel import Session

from hub.actions import LeadFlag, LeadRelation, RuleAction, RuleLead, Task
from hub.context import RuleContext
from hub.model import utcnow
from hub.store import Conflict, LeadRow, StatusChange, Store, lead_from_row

if TYPE_CHECKING:
    from hub.engine import Engine

__all__ = ["Entry", "find_lead", "story", "current", "format_story"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a lead's story: when, what kind of event, who did it, and the text."""

    at: datetime | None
    what: str
    by: str
    text: str


def find_lead(store: Store, ref: str) -> str | None:
    """A lead id from an id, a unique id prefix (8+ characters) or an email address."""
    t = LeadRow.__table__
    with Session(store.engine) as s:
        if s.get(LeadRow, ref) is not None:
            return ref
        if "@" in ref:
            q = sa.select(t.c.id).where(sa.func.lower(t.c.email) == ref.lower()).limit(2)
            ids = s.execute(q).scalars().all()
        elif len(ref) >= 8:
            ids = s.execute(sa.select(t.c.id).where(t.c.id.startswith(ref)).limit(2)).scalars().all()
        else:
            ids = []
    return ids[0] if len(ids) == 1 else None


def _params(kind: str, p: dict) -> str:
    if kind == "set_status":
        return f"→ {p.get('status')}" + (" (reopening)" if p.get("reopen") else "")
    if kind == "assign_owner":
        return f"owner → {p.get('owner')}"
    if kind == "set_fields":
        return ", ".join(f"{k}={v}" for k, v in p.get("fields", {}).items())
    if kind in ("create_task", "escalate"):
        return f"{p.get('title')} → {p.get('assignee') or p.get('to') or 'unassigned'}"
    if kind in ("flag", "unflag"):
        return str(p.get("flag"))
    if kind == "link":
        return f"{p.get('relation')} of {p.get('other')}"
    if kind == "merge":
        return f"into {p.get('into')}"
    return ", ".join(f"{k}={v}" for k, v in p.items() if v is not None)


def _candidates(candidates: list[dict]) -> str:
    """``a@x chosen; b@x: cap reached: 2/2 today; …`` (the last word on each person)."""
    last: dict[str, dict] = {}
    for c in candidates:
        last[c.get("email", "?")] = c
    return "; ".join(f"{email} chosen" if c.get("chosen") else f"{email}: {c.get('skipped')}"
                     for email, c in last.items())


def _task_life(t: Task) -> list[tuple[datetime | None, str]]:
    """A rule task in the CRM it went to: created there, closed in the hub, closed there, refusals."""
    title = f"[{t.kind}] {t.title!r} → {t.assignee or 'unassigned'}"
    out: list[tuple[datetime | None, str]] = []
    if t.remote_id:
        out.append((t.pushed_at, f"{title}: created as task {t.remote_id} in {t.connection}"))
    elif t.push_error:
        out.append((t.created_at, f"{title}: {t.connection} refused it, retried every run: {t.push_error}"))
    if t.state != "open":
        out.append((t.closed_at, f"{title}: {t.state} in the hub"))
        if t.remote_closed_at and t.close_error:
            out.append((t.remote_closed_at, f"{title}: nothing to close in {t.connection}: {t.close_error}"))
        elif t.remote_closed_at:
            out.append((t.remote_closed_at, f"{title}: closed in {t.connection}"))
        elif t.close_error:
            out.append((t.closed_at, f"{title}: {t.connection} refused to close it, retried: {t.close_error}"))
    return out


def _crm_merges(s: Session, lead_id: str) -> list[tuple[datetime | None, str, str]]:
    """Merges of this lead's records asked of a CRM by the dedup rule, with their outcome."""
    try:
        from rules.dedup.tables import MergeRequest
    except ImportError:  # the dedup rule is not installed
        return []
    out = []
    for m in s.exec(sa.select(MergeRequest).where(sa.or_(MergeRequest.survivor_id == lead_id,
                                                        MergeRequest.merged_id == lead_id))
                    .order_by(MergeRequest.id)).scalars():
        what = (f"record {m.merged_remote_id} into {m.survivor_remote_id or '(no record)'} "
                f"(leads {m.merged_id} into {m.survivor_id}): {m.state}")
        out.append((m.updated_at or m.at, m.connection, what + (f" — {m.message}" if m.message else "")))
    return out


def story(store: Store, lead_id: str) -> list[Entry]:
    """Everything that happened to the lead, oldest first."""
    out: list[tuple[datetime | None, int, Entry]] = []

    def add(at: datetime | None, what: str, by: str, text: str) -> None:
        out.append((at, len(out), Entry(at, what, by, text)))

    with Session(store.engine) as s:
        row = s.get(LeadRow, lead_id)
        if row is None:
            return []
        add(row.created_at, "created", "", "the hub first saw this lead")
        for h in s.exec(sa.select(StatusChange).where(StatusChange.lead_id == lead_id)).scalars():
            text = f"{h.from_status} → {h.to_status}" if h.from_status else f"entered as {h.to_status}"
            if h.incomplete:
                text += f" (incomplete: {', '.join(h.incomplete)})"
            add(h.at, "status", h.by, text)
        for a in s.exec(sa.select(RuleAction).where(RuleAction.lead_id == lead_id)).scalars():
            text = f"{a.kind} {_params(a.kind, a.params)}: {a.reason}"
            if not a.applied:
                text += f" — REFUSED: {a.outcome}"
            elif a.outcome:
                text += f" ({a.outcome})"
            add(a.at, "rule", f"rule:{a.rule}", text)
            if a.kind == "assign_owner" and a.inputs.get("candidates"):
                add(a.at, "rule", f"rule:{a.rule}", "  candidates: " + _candidates(a.inputs["candidates"]))
        for c in s.exec(sa.select(Conflict).where(Conflict.lead_id == lead_id)).scalars():
            add(c.at, "conflict", f"connection:{c.connection}",
                f"{c.field}: hub {c.hub_value!r}, CRM {c.remote_value!r} — {c.reason}")
        for r in s.exec(sa.select(LeadRelation).where(LeadRelation.other_id == lead_id)).scalars():
            what = f"lead {r.lead_id} is {r.relation.replace('_', ' ')} this lead"
            add(r.at, "relation", f"rule:{r.rule}", what)
        for t in s.exec(sa.select(Task).where(Task.lead_id == lead_id).order_by(Task.id)).scalars():
            for at, text in _task_life(t):
                add(at, "task", f"connection:{t.connection}" if t.connection else f"rule:{t.rule}", text)
        for at, conn, text in _crm_merges(s, lead_id):
            add(at, "merge", f"connection:{conn}", text)
    out.sort(key=lambda x: (x[0] is None, x[0] or datetime.min, x[1]))
    return [e for _, _, e in out]


def current(store: Store, lead_id: str, engine: Engine | None = None,
            now: datetime | None = None) -> list[str]:
    """The lead's state now: flags, open tasks and each rule's description of it."""
    lines: list[str] = []
    with Session(store.engine) as s:
        row = s.get(LeadRow, lead_id)
        if row is None:
            return lines
        for f in s.exec(sa.select(LeadFlag).where(LeadFlag.lead_id == lead_id)).scalars():
            lines.append(f"flag {f.flag} (rule {f.rule}, since {f.since:%Y-%m-%d %H:%M}): {f.note}")
        for t in s.exec(sa.select(Task).where(Task.lead_id == lead_id, Task.state == "open")
                        .order_by(Task.id)).scalars():
            due = f", due {t.due_at:%Y-%m-%d %H:%M}" if t.due_at else ""
            lines.append(f"open task [{t.kind}] {t.title} → {t.assignee or 'unassigned'}{due}")
        if engine is not None:
            lead = lead_from_row(row)
            book = s.get(RuleLead, lead_id)
            ctx = RuleContext(engine.process, now or utcnow())
            ctx.begin_batch(s, [lead_id])
            for rule in engine.rules:
                ctx.rule, ctx.state_book = rule, dict(book.state) if book else {}
                lines += rule.describe(ctx, lead)
            if book is not None and book.due_at is not None:
                lines.append(f"next rule check due {book.due_at:%Y-%m-%d %H:%M} UTC")
    return lines


def format_story(store: Store, lead_id: str, engine: Engine | None = None,
                 now: datetime | None = None) -> list[str]:
    """The printable story: a header, one line per entry, then the state now."""
    lead = store.get_lead(lead_id)
    if lead is None:
        return [f"no lead {lead_id}"]
    name = " ".join(x for x in (lead.first_name, lead.last_name) if x) or "(no name)"
    since = f" since {lead.status_since:%Y-%m-%d %H:%M} UTC" if lead.status_since else ""
    score = lead.score if lead.score is not None else "-"
    lines = [f"lead {lead.id}: {name}, {lead.company or '-'} <{lead.email or lead.phone or '-'}>",
             f"  status {lead.status}{since}; owner {lead.owner or 'none'}; score {score}"]
    for e in story(store, lead_id):
        when = f"{e.at:%Y-%m-%d %H:%M}" if e.at else "????-??-?? ??:??"
        by = f" [{e.by}]" if e.by else ""
        lines.append(f"{when}  {e.what:<8}{by} {e.text}")
    now_lines = current(store, lead_id, engine, now)
    if now_lines:
        lines.append("now:")
        lines += [f"  {x}" for x in now_lines]
    return lines

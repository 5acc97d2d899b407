"""Applying actions to the store: the only place rule decisions become writes.

One :class:`Applier` serves one batch of leads inside the batch's transaction. Each ``_<kind>``
method returns ``(applied, outcome, lead)``: ``applied`` is ``None`` when the action would
change nothing (it is then not recorded), ``False`` when it is refused (``outcome`` says why),
``True`` when done. Changed leads are written back in bulk at the end of the batch, and every
field a CRM carries is queued through :func:`hub.outbox.enqueue` for each connection where the
lead has a live link.

``merge`` (the survivor keeps its own values, fills its blanks from the merged lead, and takes
over the merged lead's links where it has none in that CRM object yet; the merged lead is
related ``merged_into`` the survivor and no longer evaluated) is the default; a routing/dedup
rule needing more can do it through further actions.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlmodel import Session

from hub import outbox
from hub.actions import Action, LeadFlag, LeadRelation, RuleAction, Task
from hub.context import FlagInfo, RuleContext
from hub.model import LEAD_FIELDS, Lead, check_transition, utcnow
from hub.store import LeadRow, Link, StatusChange, lead_from_row, row_values

if TYPE_CHECKING:
    from hub.engine import Engine, EngineOutcome, Rule

__all__ = ["Applier", "LeadMoved"]

Result = tuple[bool | None, str | None, Lead]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class LeadMoved(Exception):
    """A lead of the batch changed in the store after the engine read it: redo the batch."""
_NOT_SETTABLE = frozenset({"id", "status", "owner", "status_since", "custom"})


def _json(v: Any) -> Any:
    return v.isoformat() if isinstance(v, (date, datetime)) else v


class Applier:
    """Applies one batch's actions and writes them back; see the module docstring."""

    def __init__(self, engine: Engine, session: Session, ctx: RuleContext, out: EngineOutcome,
                 wall: datetime):
        self.engine, self.s, self.ctx, self.out, self.wall = engine, session, ctx, out, wall
        self.process = engine.process
        self._actions: list[dict[str, Any]] = []
        self._tasks: list[dict[str, Any]] = []
        self._history: list[dict[str, Any]] = []
        self._updates: list[dict[str, Any]] = []
        self._dirty: dict[str, set[str]] = {}
        self._by: dict[str, list[str]] = {}  # lead → the rules that changed it
        self.changes: list[tuple[Lead, dict[str, Any]]] = []  # for ``hub_lead_changed`` after the commit
        self._merged: set[str] = set()
        self.written_at = utcnow()  # ``updated_at`` of every lead this batch changes
        self._survivors: dict[str, tuple[datetime, dict[str, Any], dict[str, Any]]] = {}

    def apply(self, rule: Rule, lead: Lead, action: Action) -> Result:
        return getattr(self, f"_{action.kind}")(rule, lead, action.params)

    def record(self, row: dict[str, Any]) -> None:
        self._actions.append(row)

    def merged(self, lead_id: str) -> bool:
        return lead_id in self._merged

    def _changed(self, old: Lead, new: Lead, names: set[str], rule: Rule) -> Lead:
        self._dirty.setdefault(new.id, set()).update(names)
        rules = self._by.setdefault(new.id, [])
        if rule.name not in rules:
            rules.append(rule.name)
        self.ctx.count_owner_change(old, new)
        return new

    # -- state actions ----------------------------------------------------------------------
    def _assign_owner(self, rule: Rule, lead: Lead, p: dict[str, Any]) -> Result:
        owner = p["owner"]
        if lead.owner and lead.owner.lower() == owner:
            return None, None, lead
        if self.process.team and self.process.person(owner) is None:
            return False, f"{owner} is not in the process's team", lead
        return True, None, self._changed(lead, lead.model_copy(update={"owner": owner}), {"owner"}, rule)

    def _set_status(self, rule: Rule, lead: Lead, p: dict[str, Any]) -> Result:
        target = p["status"]
        if target == lead.status:
            return None, None, lead
        if target not in self.process.status_names:
            return False, f"no status {target!r} in the process", lead
        verdict = check_transition(lead, target, transitions=self.process.transitions,
                                   required=self.process.required, reopen=bool(p.get("reopen")))
        if not verdict.allowed:
            return False, verdict.reason, lead
        self._history.append({"lead_id": lead.id, "from_status": lead.status, "to_status": target,
                              "at": self.ctx.now, "by": f"rule:{rule.name}", "connection": None,
                              "incomplete": list(verdict.incomplete)})
        new = lead.model_copy(update={"status": target, "status_since": self.ctx.now})
        outcome = f"incomplete: {', '.join(verdict.incomplete)}" if verdict.incomplete else None
        return True, outcome, self._changed(lead, new, {"status"}, rule)

    def _set_fields(self, rule: Rule, lead: Lead, p: dict[str, Any]) -> Result:
        fields = p["fields"]
        bad = sorted(set(fields) & _NOT_SETTABLE)
        if bad:
            return False, f"set_fields cannot set {', '.join(bad)}", lead
        data = lead.model_dump()
        custom = dict(lead.custom)
        changed = set()
        for name, value in fields.items():
            current = data.get(name) if name in LEAD_FIELDS else custom.get(name)
            if _json(current) == _json(value):
                continue
            changed.add(name)
            if name in LEAD_FIELDS:
                data[name] = value
            else:
                custom[name] = value
        if not changed:
            return None, None, lead
        try:
            new = Lead.model_validate({**data, "custom": custom})
        except ValidationError as exc:
            return False, " ".join(str(exc).split())[:300], lead
        return True, None, self._changed(lead, new, changed, rule)

    def _flag(self, rule: Rule, lead: Lead, p: dict[str, Any]) -> Result:
        flags = self.ctx.flags(lead.id)
        if p["flag"] in flags:
            return None, None, lead
        self.s.execute(sa.insert(LeadFlag.__table__).values(lead_id=lead.id, flag=p["flag"], rule=rule.name,
                                                            note=p.get("note", ""), status=lead.status,
                                                            since=self.ctx.now))
        flags[p["flag"]] = FlagInfo(p["flag"], rule.name, p.get("note", ""), lead.status, self.ctx.now)
        return True, None, lead

    def _unflag(self, rule: Rule, lead: Lead, p: dict[str, Any]) -> Result:
        flags = self.ctx.flags(lead.id)
        if p["flag"] not in flags:
            return None, None, lead
        t = LeadFlag.__table__
        self.s.execute(sa.delete(t).where(t.c.lead_id == lead.id, t.c.flag == p["flag"]))
        del flags[p["flag"]]
        return True, None, lead

    def _relate(self, rule: Rule, lead: Lead, other: str, relation: str) -> str | None:
        if other == lead.id:
            return "a lead cannot be related to itself"
        if self.s.get(LeadRow, other) is None:
            return f"no lead {other}"
        return None

    def _link(self, rule: Rule, lead: Lead, p: dict[str, Any]) -> Result:
        other, relation = p["other"], p.get("relation", "duplicate")
        if any(r.other_id == other and r.relation == relation for r in self.ctx.relations(lead.id)):
            return None, None, lead
        problem = self._relate(rule, lead, other, relation)
        if problem:
            return False, problem, lead
        self._add_relation(rule, lead.id, other, relation)
        return True, None, lead

    def _add_relation(self, rule: Rule, lead_id: str, other: str, relation: str) -> None:
        self.s.execute(sa.insert(LeadRelation.__table__).values(
            lead_id=lead_id, other_id=other, relation=relation, rule=rule.name, at=self.ctx.now))
        self.ctx.note_relation(lead_id, _Rel(other, relation, rule.name, self.ctx.now))

    def _merge(self, rule: Rule, lead: Lead, p: dict[str, Any]) -> Result:
        into = p["into"]
        problem = self._relate(rule, lead, into, "merged_into")
        if problem:
            return False, problem, lead
        survivor_row = self.s.get(LeadRow, into)
        survivor = lead_from_row(survivor_row)
        data, custom = survivor.model_dump(), dict(survivor.custom)
        filled = set()
        # survivorship decided per field by the rule (source of truth, else most recent non-blank)
        for name, value in (p.get("fields") or {}).items():
            if name in {"id", "status", "status_since", "owner"} or value in (None, ""):
                continue
            current = data.get(name) if name in LEAD_FIELDS else custom.get(name)
            if _json(current) != _json(value):
                if name in LEAD_FIELDS:
                    data[name] = value
                else:
                    custom[name] = value
                filled.add(name)
        for name in LEAD_FIELDS - {"id", "status", "status_since", "owner"}:
            if data.get(name) in (None, "") and getattr(lead, name) not in (None, ""):
                data[name] = getattr(lead, name)
                filled.add(name)
        for name, value in lead.custom.items():
            if custom.get(name) in (None, "") and value not in (None, ""):
                custom[name] = value
                filled.add(name)
        if filled:
            merged = Lead.model_validate({**data, "custom": custom})
            values = row_values(merged)
            for k, v in values.items():
                setattr(survivor_row, k, v)
            survivor_row.updated_at = utcnow()
            self.s.flush()
            # other rules may change the survivor in this same batch: their bulk update must start
            # from the merged row, not from the row as the batch first read it
            first = {k: values[k] for k in filled if k in values}
            extra = {k: custom[k] for k in filled if k not in values}
            self._survivors[into] = (survivor_row.updated_at, first, extra)
        taken = {(ln.connection, ln.object) for ln in self.s.execute(
            sa.select(Link).where(Link.lead_id == into)).scalars()}
        moved, kept = [], []
        for ln in self.s.execute(sa.select(Link).where(Link.lead_id == lead.id)).scalars():
            if (ln.connection, ln.object) in taken:
                kept.append(ln.connection)
                continue
            ln.lead_id = into
            taken.add((ln.connection, ln.object))
            moved.append(ln)
        self.s.flush()
        live = sa.select(Link).where(Link.lead_id == into, Link.deleted_at.is_(None))
        for ln in self.s.execute(live).scalars():
            names = self._carried(ln.connection, filled | ({"status", "owner"} if ln in moved else set()))
            if names:
                fields = {n: _json(survivor_row.__dict__.get(n)) for n in names}
                outbox.enqueue(self.s, connection=ln.connection, object=ln.object, lead_id=into,
                               remote_id=ln.remote_id, fields=fields)
        self._add_relation(rule, lead.id, into, "merged_into")
        self._merged.add(lead.id)
        self.ctx.count_owner_change(lead, lead.model_copy(update={"owner": None}))
        outcome = None
        if kept:
            outcome = f"kept own links in {', '.join(sorted(kept))} (survivor already linked there)"
        return True, outcome, lead

    # -- work for people ----------------------------------------------------------------------
    def _task(self, rule: Rule, lead: Lead, kind: str, title: str, assignee: str | None,
              due_at: str | None) -> None:
        self._tasks.append(dict(lead_id=lead.id, rule=rule.name, kind=kind, assignee=assignee, title=title,
                                due_at=datetime.fromisoformat(due_at) if due_at else None,
                                created_at=self.ctx.now, state="open", closed_at=None))

    def _create_task(self, rule: Rule, lead: Lead, p: dict[str, Any]) -> Result:
        self._task(rule, lead, p.get("task_kind") or "todo", p["title"], p.get("assignee"), p.get("due_at"))
        return True, None, lead

    def _close_tasks(self, rule: Rule, lead: Lead, p: dict[str, Any]) -> Result:
        t = Task.__table__
        where = [t.c.lead_id == lead.id, t.c.rule == rule.name, t.c.state == "open"]
        if p.get("task_kind"):
            where.append(t.c.kind == p["task_kind"])
        self.s.flush()
        pending = [row for row in self._tasks if row["lead_id"] == lead.id and row["rule"] == rule.name
                   and row["state"] == "open" and p.get("task_kind") in (None, row["kind"])]
        close = sa.update(t).where(*where).values(state="done", closed_at=self.ctx.now)
        done = self.s.execute(close).rowcount
        for row in pending:
            row["state"], row["closed_at"] = "done", self.ctx.now
        if not done and not pending:
            return None, None, lead
        return True, f"closed {done + len(pending)} task(s)", lead

    def _escalate(self, rule: Rule, lead: Lead, p: dict[str, Any]) -> Result:
        if not p.get("to"):
            return False, "no one to escalate to (the owner has no manager in the team)", lead
        self._task(rule, lead, "escalation", p["title"], p["to"], None)
        return True, None, lead

    # -- writing back -------------------------------------------------------------------------
    def _carried(self, connection: str, names: set[str]) -> set[str]:
        carried = self.engine.carried.get(connection)
        return set(names) if carried is None else names & carried

    def finish_lead(self, original: Lead, lead: Lead, read_updated_at: datetime | None) -> bool:
        """Queue a changed lead's row update and its outbox writes; ``True`` if it changed."""
        names = self._dirty.pop(lead.id, None)
        by = self._by.pop(lead.id, [])
        if not names or lead.id in self._merged:
            return False
        diff = {n: (_json(original.get(n)), _json(lead.get(n))) for n in sorted(names)}
        self.changes.append((lead, {"fields": diff, "connection": None,
                                    "by": ",".join(f"rule:{r}" for r in by)}))
        self._updates.append({"_id": lead.id, "_old": read_updated_at or _EPOCH,
                              "v_updated_at": self.written_at,
                              **{f"v_{k}": v for k, v in row_values(lead).items()}})
        for ln in self.ctx.links(lead.id):
            wanted = self._carried(ln.connection, names)
            if ln.deleted_at is None and wanted:
                outbox.enqueue(self.s, connection=ln.connection, object=ln.object, lead_id=lead.id,
                               remote_id=ln.remote_id, fields={n: _json(lead.get(n)) for n in sorted(wanted)})
        return True

    def flush(self) -> None:
        """Write the batch's rows in bulk (the caller commits, or rolls back for a dry run).

        A lead row is only overwritten if it is still as the engine read it (same ``updated_at``);
        otherwise :class:`LeadMoved` is raised, so the caller rolls back and redoes the batch
        instead of losing a change a sync made meanwhile.
        """
        for upd in self._updates:
            if upd["_id"] in self._survivors:
                at, first, extra = self._survivors[upd["_id"]]
                upd["_old"] = at
                upd.update({f"v_{k}": v for k, v in first.items()})
                if extra:
                    upd["v_custom"] = {**(upd.get("v_custom") or {}), **extra}
        if self._updates:
            t = LeadRow.__table__
            cols = [k[2:] for k in self._updates[0] if k.startswith("v_")]
            stmt = (sa.update(t).where(t.c.id == sa.bindparam("_id"),
                                       sa.func.coalesce(t.c.updated_at, _EPOCH) == sa.bindparam("_old"))
                    .values({c: sa.bindparam(f"v_{c}") for c in cols}))
            done = self.s.connection().execute(stmt, self._updates).rowcount
            if done != len(self._updates):
                raise LeadMoved(f"{len(self._updates) - done} lead(s) changed while the rules ran")
        for row in self._actions:
            row["run_id"] = self.out.run_id
        for table, rows in ((StatusChange.__table__, self._history), (Task.__table__, self._tasks),
                            (RuleAction.__table__, self._actions)):
            if rows:
                self.s.execute(sa.insert(table), rows)


class _Rel:
    """A relation added in this batch, shaped like a ``lead_relations`` row."""

    __slots__ = ("other_id", "relation", "rule", "at")

    def __init__(self, other_id: str, relation: str, rule: str, at: datetime):
        self.other_id, self.relation, self.rule, self.at = other_id, relation, rule, at

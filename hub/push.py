"""Pushing one connection's outbox: handoffs, minimal writes, the write ledger.

Before writing, the pusher

* **hands off** leads that became eligible for the connection (their canonical
  status is in its ``statuses``) and have never had a record there: one create
  row each, once — a lead whose record there was deleted is not re-created;
* turns each open outbox row into the **smallest write**: the fields whose value
  the CRM would hold after the write (the connector's encode + decode) differs
  from what it holds now (``links.synced``). A row left with nothing to write is
  done without a call; a hub-id stamp is always written;
* **dismisses** rows for records that are gone (a tombstoned link) or leads merged
  into another.

After the CRM answers, each confirmed write updates ``links.synced`` (the ledger)
in the same transaction that marks the row done, so the next pull recognises the
hub's own write; a rejected row is kept with the CRM's verbatim error and retried
on every later run; a row whose batch failed transiently stays pending.

:meth:`Pusher.plan` builds the same writes without sending them (``leadhub sync --dry-run``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session

from hub import outbox
from hub.actions import LeadRelation
from hub.model import blank, fields_hash
from hub.pull import jsonable
from hub.records import WriteOp
from hub.store import LeadRow, Link, OutboxRow, RecordIssue, lead_from_row

if TYPE_CHECKING:
    from threading import Event

    from hub.sync import Connection, Syncer, SyncOutcome

__all__ = ["PlannedWrite", "Pusher"]


@dataclass
class PlannedWrite:
    """One write to one CRM record: what a dry run prints and what a push then sends."""

    connection: str
    action: str  # create | update | stamp
    lead_id: str
    remote_id: str | None
    changes: dict[str, list[Any]] = field(default_factory=dict)  # field -> [CRM's value now, value written]
    reasons: dict[str, str] = field(default_factory=dict)  # field (or "*") -> the rule that decided it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> tuple[str, str, str, tuple[str, ...]]:
        return self.connection, self.action, self.lead_id, tuple(sorted(self.changes))


class Pusher:
    def __init__(self, syncer: Syncer, conn: Connection, out: SyncOutcome):
        self.syncer, self.conn, self.out = syncer, conn, out
        self.cn = conn.connector

    # -- handoffs ---------------------------------------------------------------------------
    def handoffs(self, s: Session) -> int:
        """Queue a create for each eligible lead that never had a record in this connection."""
        conn = self.conn
        if not conn.statuses or not conn.writes:
            return 0
        obj = self.cn.lead_object
        has_link = sa.select(Link.lead_id).where(Link.connection == conn.name, Link.object == obj)
        created = sa.select(OutboxRow.lead_id).where(OutboxRow.connection == conn.name,
                                                     OutboxRow.remote_id.is_(None))
        merged = sa.select(LeadRelation.lead_id).where(LeadRelation.relation == "merged_into")
        eligible = s.execute(sa.select(LeadRow.id, LeadRow.status).where(
            LeadRow.status.in_(list(conn.statuses)), LeadRow.id.not_in(has_link), LeadRow.id.not_in(created),
            LeadRow.id.not_in(merged)).order_by(LeadRow.id)).all()
        now = self.syncer.clock()
        rows = [dict(connection=conn.name, object=obj, lead_id=lead_id, remote_id=None, fields={},
                     reasons={"*": f"handoff: {status} leads flow into {conn.name}"}, state="pending",
                     attempts=0, created_at=now, updated_at=now) for lead_id, status in eligible]
        if rows:
            s.execute(sa.insert(OutboxRow.__table__), rows)
        self.out.handed_off += len(rows)
        return len(rows)

    # -- building writes ----------------------------------------------------------------------
    def _ops(self, s: Session, rows: list[OutboxRow]) -> list[tuple[OutboxRow, WriteOp | None, PlannedWrite | None]]:
        """Each row with its write, or ``None`` (nothing to write: done, or dismissed with a reason)."""
        cn, conn = self.cn, self.conn
        ids = [row.lead_id for row in rows]
        leads = {r.id: lead_from_row(r) for r in s.exec(sa.select(LeadRow).where(LeadRow.id.in_(ids))).scalars()}
        links = {ln.lead_id: ln for ln in s.exec(sa.select(Link).where(
            Link.connection == conn.name, Link.object == cn.lead_object, Link.lead_id.in_(ids))).scalars()}
        merged = set(s.exec(sa.select(LeadRelation.lead_id).where(
            LeadRelation.lead_id.in_(ids), LeadRelation.relation == "merged_into")).scalars())
        out = []
        for row in rows:
            lead, link = leads.get(row.lead_id), links.get(row.lead_id)
            if lead is None or row.lead_id in merged:
                out.append((row, None, None))
                row.last_error = "the lead was merged into another"
                continue
            if link is not None and link.deleted_at is not None:
                out.append((row, None, None))
                row.last_error = f"the record was deleted in {conn.name}"
                continue
            remote_id = link.remote_id if link else row.remote_id
            reasons = dict(row.reasons or {})
            if remote_id is None:
                values = {n: lead.get(n) for n in cn.mapped_fields}
                after = jsonable(cn.mapped(values, None))
                changes = {n: [None, v] for n, v in after.items() if not blank(v)}
                plan = PlannedWrite(conn.name, "create", lead.id, None, changes, reasons)
                out.append((row, WriteOp(lead.id, values, None, cn.lead_object), plan))
                continue
            held = dict(link.synced or {}) if link else {}
            values = {n: lead.get(n) for n in row.fields if n in cn.mapped_fields}
            after = jsonable(cn.mapped(values, remote_id))
            changes = {n: [held.get(n), v] for n, v in after.items() if n not in held or held[n] != v}
            stamp = "hub_id" in reasons
            if not changes and not stamp:
                out.append((row, None, None))  # the CRM already holds every value: nothing to send
                continue
            fields = {n: values[n] for n in changes}
            plan = PlannedWrite(conn.name, "update" if changes else "stamp", lead.id, remote_id, changes,
                                {n: r for n, r in reasons.items() if n in changes or (n == "hub_id" and stamp)})
            out.append((row, WriteOp(lead.id, fields, remote_id, cn.lead_object), plan))
        return out

    def plan(self, s: Session) -> list[PlannedWrite]:
        """The writes a push would make now, computed in ``s`` (which the caller rolls back)."""
        self.handoffs(s)
        s.flush()
        plans: list[PlannedWrite] = []
        for _row, _, plan in self._ops(s, outbox.open_rows(s, self.conn.name)):
            if plan is not None:
                plans.append(plan)
        return plans

    # -- pushing --------------------------------------------------------------------------------
    def push(self, progress: Callable[[str, int], None] | None = None, stop: Event | None = None,
             record: list[PlannedWrite] | None = None) -> None:
        store, cn, conn, out = self.syncer.store, self.cn, self.conn, self.out
        with store.session() as s:
            self.handoffs(s)
        chunk = max(cn.limits.batch_size, 1) * 5
        last_id = 0
        while not (stop and stop.is_set()):
            with store.session() as s:
                rows = outbox.open_rows(s, conn.name, limit=chunk, after_id=last_id)
                if not rows:
                    return
                last_id = rows[-1].id
                built = self._ops(s, rows)
                for row, op, _ in built:  # nothing to send: settle it now
                    if op is None:
                        if row.last_error:
                            outbox.dismiss(s, row.id, row.last_error)
                            out.dismissed += 1
                        else:
                            outbox.mark_done(row)
                            out.skipped += 1
            ops = [(row, op, plan) for row, op, plan in built if op is not None]
            results = {r.hub_id: r for r in cn.write([op for _, op, _ in ops])} if ops else {}
            now = self.syncer.clock()
            with store.session() as s:
                fresh = {r.id: r for r in s.exec(sa.select(OutboxRow).where(
                    OutboxRow.id.in_([row.id for row, _, _ in ops]))).scalars()}
                done_links = {ln.lead_id: ln for ln in s.exec(sa.select(Link).where(
                    Link.connection == conn.name, Link.object == cn.lead_object,
                    Link.lead_id.in_([op.hub_id for _, op, _ in ops]))).scalars()}
                for row, op, plan in ops:
                    row = fresh[row.id]
                    res = results.get(op.hub_id)
                    if res is None or (not res.ok and res.retryable):
                        continue  # stays pending; retried next run
                    if not res.ok:
                        outbox.mark_failed(row, res.error or "rejected")
                        out.rejected += 1
                        s.add(RecordIssue(run_id=out.run_id, connection=conn.name, remote_id=op.remote_id,
                                          lead_id=op.hub_id, kind="rejected", message=res.error or "", at=now))
                        continue
                    outbox.mark_done(row)
                    out.pushed += 1
                    out.created_remote += op.remote_id is None
                    if record is not None:
                        record.append(plan)
                    self._record(s, op, res.remote_id or op.remote_id, done_links)
            if progress:
                progress("push", len(rows))

    def _record(self, s: Session, op: WriteOp, remote_id: str | None, links: dict[str, Link]) -> None:
        """Remember what the remote now holds, so the next pull sees no change (no echo)."""
        cn = self.cn
        if remote_id is None:
            return
        link = links.get(op.hub_id)
        if link is None:
            link = Link(lead_id=op.hub_id, connection=self.conn.name, object=cn.lead_object, remote_id=remote_id,
                        synced={}, remote_modified=self.syncer.clock())
            links[op.hub_id] = link
        if op.fields:
            state = {**(link.synced or {}), **jsonable(cn.mapped(op.fields, op.remote_id))}
            link.synced, link.synced_hash = state, fields_hash(state)
        s.add(link)

"""A sync cycle: pull every connection, then push every connection, and keep the books.

The sync engine knows neither the CRMs (connectors) nor the process rules (the
rule engine); it moves canonical changes between CRMs through one store::

    pull:  for each connection that reads, for each page of changes:
               in ONE transaction: apply every record (hub.pull), queue the writes it causes,
               store the cursor after the page
    push:  for each connection that writes: hand off newly eligible leads, turn open
           outbox rows into minimal writes, send them in vendor batches (hub.push)

Pulling everything before pushing anything means a cycle decides each field once,
with every CRM's news in hand, and the dry run (:meth:`Syncer.plan`) can predict
the writes exactly: it runs the same pull and push planning in one transaction it
rolls back, sending nothing.

Promises, each tested:

* nothing lost — a page, the writes it causes and its cursor commit together; a
  crash re-reads at most one page, and re-reading is harmless;
* nothing duplicated — a record is found by its link, its hub id, or its person's
  match keys; writes are upserts keyed by the hub id; a handoff happens once;
* no echoes, no ping-pong — the ledger (``links.synced``) holds what each CRM has
  as the hub last wrote or read it: a pulled record equal to it is no change, and
  a write the CRM already holds is not sent, so a second cycle with no outside
  edits writes nothing;
* conflicts are decided per field by the configured rule, status only moves along
  allowed transitions (an illegal move is kept as a conflict), a blank never
  overwrites a value;
* bad input is isolated — a malformed field is logged with its record, a rejected
  write keeps the CRM's verbatim error and is retried every run, the rest goes on;
* a stop request (``stop`` event) ends the cycle after the current page or batch,
  committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from threading import Event
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from hub import outbox
from hub.actions import LeadRelation
from hub.conflicts import Claim, Resolver
from hub.connector import Connector
from hub.errors import ConnectorError
from hub.model import DEFAULT_TRANSITIONS, LEAD_FIELDS, REQUIRED_FIELDS, Lead, Status, blank, utcnow
from hub.pull import PageApplier, jsonable
from hub.push import PlannedWrite, Pusher
from hub.store import Cursor, LeadRow, Link, OutboxRow, Run, Store, lead_from_row, row_values

__all__ = ["BackfillOutcome", "Connection", "SyncOutcome", "Syncer", "PlannedWrite", "jsonable"]

Progress = Callable[[str, int], None]
#: the main flow; a status earlier in it is "behind" a later one
_FLOW = [s.value for s in Status][:7]


@dataclass
class Connection:
    """A configured connection: a name, a live connector, its role, direction and handoff statuses."""

    name: str
    connector: Connector
    role: str = ""
    direction: str = "both"  # read | write | both
    statuses: tuple[str, ...] | None = None  # leads in these statuses are created here (handoff)

    @property
    def reads(self) -> bool:
        return self.direction in ("read", "both")

    @property
    def writes(self) -> bool:
        return self.direction in ("write", "both")


@dataclass
class SyncOutcome:
    """What one run did for one connection; printed by ``leadhub sync`` and stored in the run log."""

    connection: str
    run_id: int | None = None
    pulled: int = 0
    created: int = 0
    matched: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    malformed: int = 0
    conflicts: int = 0
    conflicts_resolved: int = 0
    handed_off: int = 0
    pushed: int = 0
    created_remote: int = 0
    skipped: int = 0
    dismissed: int = 0
    rejected: int = 0
    tasks_pushed: int = 0
    tasks_closed: int = 0  # closed in the hub, now closed in the CRM (or found deleted there)
    tasks_failed: int = 0
    api_calls: int = 0
    pull_calls: int = 0
    push_calls: int = 0
    throttled: int = 0
    seconds: float = 0.0
    stopped: bool = False
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BackfillOutcome:
    leads: int = 0
    changed: int = 0
    queued: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class Syncer:
    """Runs sync cycles against one store.

    ``carried``: connection → the canonical fields its connector maps (writes to a
    connection missing here carry every changed field); ``writable``: connections
    that take writes; ``rules``: the conflict rules; ``order``: the process's statuses.
    """

    def __init__(self, store: Store, *, transitions=DEFAULT_TRANSITIONS, required=REQUIRED_FIELDS,
                 hook: Any = None, initial_status: str = Status.LEAD.value, resolver: Resolver | None = None,
                 carried: Mapping[str, Iterable[str]] | None = None, writable: Iterable[str] | None = None,
                 clock: Callable[[], datetime] = utcnow):
        self.store = store
        self.transitions = transitions
        self.required = required
        self.hook = hook  # a pluggy hook relay (pm.hook), or None
        self.initial_status = initial_status
        self.resolver = resolver or Resolver()
        self._carried = {k: frozenset(v) for k, v in (carried or {}).items()}
        self._writable = None if writable is None else set(writable)
        self._conns: dict[str, Connection] = {}
        self.clock = clock

    def carried(self, connection: str) -> frozenset[str] | set[str]:
        if connection not in self._carried and connection in self._conns:
            # asked lazily: a connector may need a call to know its fields (monday discovers its columns)
            self._carried[connection] = frozenset(self._conns[connection].connector.mapped_fields)
        return self._carried.get(connection, _EVERYTHING)

    def writable(self, connection: str) -> bool:
        return self._writable is None or connection in self._writable

    @staticmethod
    def behind(status: str, than: str) -> bool:
        return status in _FLOW and than in _FLOW and _FLOW.index(status) < _FLOW.index(than)

    def learn(self, conns: Sequence[Connection]) -> None:
        """Know these connections (their fields are asked for lazily)."""
        for conn in conns:
            self._conns.setdefault(conn.name, conn)
            if self._writable is not None and conn.writes:
                self._writable.add(conn.name)

    # -- the cycle -------------------------------------------------------------------
    def cycle(self, conns: Sequence[Connection], *, push: bool = True,
              progress: Callable[[str, str, int], None] | None = None, stop: Event | None = None,
              record: list[PlannedWrite] | None = None) -> list[SyncOutcome]:
        """Pull every connection that reads, then push every one that writes; one failing CRM stops no other."""
        self.learn(conns)
        outs = [SyncOutcome(c.name) for c in conns]
        marks = {}
        for conn, out in zip(conns, outs):
            with self.store.session() as s:
                run = Run(connection=conn.name, started_at=utcnow())
                s.add(run)
                s.flush()
                out.run_id = run.id
            marks[conn.name] = (conn.connector.meter.calls, conn.connector.meter.throttled, time.monotonic())
            if self.hook:
                self.hook.hub_before_sync(connection=conn.name, run={"id": out.run_id})

        def cb(name: str) -> Progress | None:
            return (lambda phase, n: progress(name, phase, n)) if progress else None

        for conn, out in zip(conns, outs):
            if conn.reads and not _stopped(stop, out):
                before = conn.connector.meter.calls
                try:
                    self.pull(conn, out, cb(conn.name), stop)
                except ConnectorError as exc:
                    out.error = str(exc)
                out.pull_calls = conn.connector.meter.calls - before
        for conn, out in zip(conns, outs):
            if push and conn.writes and not _stopped(stop, out):
                before = conn.connector.meter.calls
                try:
                    Pusher(self, conn, out).push(cb(conn.name), stop, record)
                    if conn.connector.can_write_tasks and not _stopped(stop, out):
                        self._push_tasks(conn, out)
                    if self.hook and not _stopped(stop, out):
                        self.hook.hub_after_push(connection=conn.name, connector=conn.connector, store=self.store,
                                                 run={"id": out.run_id})
                except ConnectorError as exc:
                    out.error = "; ".join(filter(None, [out.error, str(exc)]))
                out.push_calls = conn.connector.meter.calls - before
        for conn, out in zip(conns, outs):
            calls, throttled, t0 = marks[conn.name]
            out.api_calls = conn.connector.meter.calls - calls
            out.throttled = conn.connector.meter.throttled - throttled
            out.seconds = round(time.monotonic() - t0, 3)
            with self.store.session() as s:
                run = s.get(Run, out.run_id)
                run.finished_at = utcnow()
                run.status = "error" if out.error else "stopped" if out.stopped else "ok"
                run.api_calls, run.error = out.api_calls, out.error
                run.counts = {k: v for k, v in out.as_dict().items()
                              if isinstance(v, int) and not isinstance(v, bool) and k != "run_id"}
            if self.hook:
                self.hook.hub_after_sync(connection=conn.name, run={"id": out.run_id}, outcome=out.as_dict())
        return outs

    def run(self, conn: Connection, *, push: bool = True, progress: Progress | None = None,
            stop: Event | None = None) -> SyncOutcome:
        """One cycle for one connection."""
        cb = (lambda _name, phase, n: progress(phase, n)) if progress else None
        return self.cycle([conn], push=push, progress=cb, stop=stop)[0]

    # -- pull --------------------------------------------------------------------------
    def pull(self, conn: Connection, out: SyncOutcome, progress: Progress | None = None,
             stop: Event | None = None, session: Session | None = None) -> None:
        """Every page of changes; each page commits with its cursor (or only flushes into ``session``)."""
        cn = conn.connector
        with nullcontext(session) if session is not None else Session(self.store.engine) as s:
            row = s.get(Cursor, (conn.name, cn.lead_object))
            cursor = dict(row.value) if row else None
        for page in cn.read_changes(cursor):
            # a real run commits each page with its cursor; the dry run only flushes into its session
            with nullcontext(session) if session is not None else self.store.session() as s:
                changed = PageApplier(self, s, conn, out).apply(page)
                s.merge(Cursor(connection=conn.name, object=cn.lead_object, value=page.cursor,
                               updated_at=utcnow()))
                s.flush()
            if session is not None:
                continue
            if self.hook:
                for lead, change in changed:
                    self.hook.hub_lead_changed(lead=lead, change=change)
            if progress:
                progress("pull", len(page.records))
            if _stopped(stop, out):
                return

    def _push_tasks(self, conn: Connection, out: SyncOutcome) -> None:
        """The rules' open tasks (SLA breaches, escalations…) into the owner's CRM, and the ones closed since
        closed there (see :mod:`hub.tasks_push`)."""
        from hub.tasks_push import preference, push_tasks

        done = push_tasks(self.store, conn.name, conn.connector, prefer=preference(self._conns.values()),
                          run_id=out.run_id)
        out.tasks_pushed += done.pushed
        out.tasks_closed += done.closed + done.gone
        out.tasks_failed += done.failed
        if done.error:
            out.error = "; ".join(filter(None, [out.error, f"tasks: {done.error}"]))

    def push(self, conn: Connection, out: SyncOutcome, progress: Progress | None = None,
             stop: Event | None = None, record: list[PlannedWrite] | None = None) -> None:
        """Hand off eligible leads and send ``conn``'s open outbox rows (see :mod:`hub.push`)."""
        self.learn([conn])
        Pusher(self, conn, out).push(progress, stop, record)

    # -- the dry run -----------------------------------------------------------------------
    def plan(self, conns: Sequence[Connection]) -> tuple[list[PlannedWrite], list[SyncOutcome]]:
        """What a cycle would write, per CRM and record, with the rule behind each field; nothing is kept.

        The CRMs are read (pages are fetched), the store is changed inside one
        transaction that is rolled back, and nothing is written to any CRM.
        """
        self.learn(conns)
        outs = [SyncOutcome(c.name) for c in conns]
        plans: list[PlannedWrite] = []
        with Session(self.store.engine, expire_on_commit=False) as s:
            try:
                for conn, out in zip(conns, outs):
                    if conn.reads:
                        try:
                            self.pull(conn, out, session=s)
                        except ConnectorError as exc:
                            out.error = str(exc)
                for conn, out in zip(conns, outs):
                    if conn.writes:
                        plans += Pusher(self, conn, out).plan(s)
            finally:
                s.rollback()
        return plans, outs

    # -- merges made in a CRM -----------------------------------------------------------------
    def merge_remote(self, s: Session, conn: Connection, link: Link, into: str, now: datetime) -> None:
        """``link``'s record was merged into record ``into`` in that CRM: their two leads become one."""
        survivor = s.exec(sa.select(Link).where(Link.connection == conn.name, Link.object == link.object,
                                                Link.remote_id == into)).scalars().first()
        if survivor is not None and survivor.lead_id != link.lead_id:
            self.merge_leads(s, link.lead_id, survivor.lead_id, by=f"connection:{conn.name}", now=now)

    def merge_leads(self, s: Session, loser_id: str, survivor_id: str, *, by: str, now: datetime) -> bool:
        """Make ``loser_id`` part of ``survivor_id``: blanks filled, links taken over, writes redirected."""
        exists = s.exec(sa.select(LeadRelation.id).where(
            LeadRelation.lead_id == loser_id, LeadRelation.relation == "merged_into")).first()
        loser_row, row = s.get(LeadRow, loser_id), s.get(LeadRow, survivor_id)
        if exists or loser_row is None or row is None:
            return False
        s.add(LeadRelation(lead_id=loser_id, other_id=survivor_id, relation="merged_into", rule=by, at=now))
        loser, survivor = lead_from_row(loser_row), lead_from_row(row)
        data = survivor.model_dump()
        filled = {k: v for k, v in loser.model_dump().items()
                  if k in LEAD_FIELDS and k not in ("id", "status", "status_since") and blank(data.get(k))
                  and not blank(v)}
        custom = {**{k: v for k, v in loser.custom.items() if not blank(v)}, **survivor.custom}
        merged = Lead.model_validate({**data, **filled, "custom": custom})
        for k, v in row_values(merged).items():
            setattr(row, k, v)
        row.updated_at = now
        own = {(ln.connection, ln.object): ln for ln in s.exec(sa.select(Link).where(
            Link.lead_id == survivor_id)).scalars()}
        for ln in s.exec(sa.select(Link).where(Link.lead_id == loser_id, Link.deleted_at.is_(None))).scalars():
            mine = own.get((ln.connection, ln.object))
            if mine is not None and mine.deleted_at is not None:
                s.delete(mine)  # a tombstone only guards against re-creating; the survivor now has a record there
                s.flush()
                mine = None
            if mine is None:
                ln.lead_id = survivor_id
        s.execute(sa.update(OutboxRow).where(OutboxRow.lead_id == loser_id,
                                             OutboxRow.state.in_(outbox.OPEN_STATES))
                  .values(state="dismissed", last_error=f"merged into lead {survivor_id}", updated_at=now))
        s.flush()
        # every CRM now holding the survivor (its own records and the ones it took over) converges on it
        values = jsonable(merged.model_dump())
        queue = []
        for ln in s.exec(sa.select(Link).where(Link.lead_id == survivor_id, Link.deleted_at.is_(None))).scalars():
            held = ln.synced or {}
            carried = self.carried(ln.connection)
            want = {n: values.get(n, merged.custom.get(n)) for n in held if n in carried}
            fields = {n: v for n, v in want.items() if not blank(v) and held[n] != v}
            if fields and self.writable(ln.connection):
                queue.append(dict(connection=ln.connection, object=ln.object, lead_id=survivor_id,
                                  remote_id=ln.remote_id, fields=fields,
                                  reasons={n: f"lead {loser_id} merged into {survivor_id} ({by})" for n in fields}))
        outbox.enqueue_many(s, queue)
        return True

    # -- back-filling a changed conflict rule -----------------------------------------------------
    def backfill(self, fields: Iterable[str] | None = None, *, dry_run: bool = False,
                 batch: int = 500) -> BackfillOutcome:
        """Re-decide ``fields`` (default: those with a configured rule) for every lead held by two or
        more CRMs, from each CRM's last known value, and queue the writes; match keys are recomputed too."""
        names = list(fields) if fields is not None else sorted(self.resolver.rules)
        out = BackfillOutcome()
        last = ""
        while True:
            with Session(self.store.engine, expire_on_commit=False) as s:
                rows = list(s.exec(sa.select(LeadRow).where(LeadRow.id > last).order_by(LeadRow.id)
                                   .limit(batch)).scalars())
                if not rows:
                    return out
                last = rows[-1].id
                links: dict[str, list[Link]] = {}
                for ln in s.exec(sa.select(Link).where(Link.lead_id.in_([r.id for r in rows]),
                                                       Link.deleted_at.is_(None))).scalars():
                    links.setdefault(ln.lead_id, []).append(ln)
                queue: list[dict[str, Any]] = []
                for row in rows:
                    out.leads += 1
                    if self._backfill_lead(row, links.get(row.id, []), names, queue, out):
                        out.changed += 1
                outbox.enqueue_many(s, queue)
                out.queued += len(queue)
                if dry_run:
                    s.rollback()
                else:
                    s.commit()

    def _backfill_lead(self, row: LeadRow, links: list[Link], names: list[str], queue: list[dict[str, Any]],
                       out: BackfillOutcome) -> bool:
        lead = lead_from_row(row)
        values = row_values(lead)
        keys_changed = any(getattr(row, k) != values[k] for k in ("email_key", "phone_key", "name_key"))
        data, prov = jsonable(lead.model_dump()), dict(row.provenance or {})
        updates: dict[str, Any] = {}
        for name in names:
            claims = [Claim(ln.connection, (ln.synced or {}).get(name), ln.remote_modified) for ln in links
                      if name in (ln.synced or {})]
            if len(claims) < 2:
                continue
            best, reason = self.resolver.pick(name, sorted(claims, key=lambda c: c.at or _EPOCH))
            if best is None:
                continue
            current = data.get(name) if name in LEAD_FIELDS else lead.custom.get(name)
            if best.value != current:
                updates[name] = best.value
                prov[name] = [best.by, best.at.isoformat() if best.at else None]
            for ln in links:
                if (name in self.carried(ln.connection) and self.writable(ln.connection)
                        and (ln.synced or {}).get(name) != best.value):
                    queue.append(dict(connection=ln.connection, object=ln.object, lead_id=row.id,
                                      remote_id=ln.remote_id, fields={name: best.value},
                                      reasons={name: f"back-filled: {reason}"}))
                    out.reasons[reason] = out.reasons.get(reason, 0) + 1
        if updates:
            custom = {**lead.custom, **{k: v for k, v in updates.items() if k not in LEAD_FIELDS}}
            lead = Lead.model_validate({**lead.model_dump(), **{k: v for k, v in updates.items()
                                                                if k in LEAD_FIELDS}, "custom": custom})
            values = row_values(lead)
            row.provenance, row.updated_at = prov, self.clock()
        if updates or keys_changed:
            for k, v in values.items():
                setattr(row, k, v)
            return True
        return False


class _Everything(frozenset):
    def __contains__(self, item: object) -> bool:
        return True


_EVERYTHING = _Everything()
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _stopped(stop: Event | None, out: SyncOutcome) -> bool:
    if stop is not None and stop.is_set():
        out.stopped = True
    return out.stopped

"""One sync cycle for one connection: pull changes in, push the outbox out, log the run.

The sync engine knows neither the CRM (that is the connector) nor the process
rules (that is the engine); it moves canonical changes and keeps the books::

    pull:  for each page from connector.read_changes(cursor):
               in ONE transaction: apply every record, then store the cursor after the page
    push:  open outbox rows -> connector.write() in vendor batches -> mark done / failed

Promises, each tested:

* nothing lost — a page and its cursor commit together; a crash re-reads at most
  one page, and re-reading is harmless (below);
* nothing duplicated — a record is found by its link, else by the hub id it
  carries; writes are upserts keyed by the hub id;
* no echoes — a record whose canonical fields hash equal to what the hub last
  wrote or read (``links.synced_hash``) is no change, so a second sync with no
  outside edits makes no writes;
* status only moves along allowed transitions — an illegal move is stored as a
  conflict with both values, never applied;
* bad input is isolated — a malformed field or unmapped status is logged with
  the record's id, the record's readable fields still apply, and the run goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from hub import outbox
from hub.connector import Connector, Page, RemoteRecord, WriteOp
from hub.errors import ConnectorError
from hub.model import (
    DEFAULT_TRANSITIONS,
    LEAD_FIELDS,
    REQUIRED_FIELDS,
    Lead,
    Status,
    check_transition,
    fields_hash,
    utcnow,
)
from hub.store import (
    Conflict,
    Cursor,
    LeadRow,
    Link,
    OutboxRow,
    RecordIssue,
    Run,
    StatusChange,
    Store,
    lead_from_row,
    row_values,
)

__all__ = ["Connection", "SyncOutcome", "Syncer", "jsonable"]


@dataclass
class _NewRows:
    """Rows a page creates, inserted in bulk (parents first) at the end of the page."""

    leads: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)

    def write(self, s: Session) -> None:
        for model, rows in ((LeadRow, self.leads), (Link, self.links), (StatusChange, self.history),
                            (OutboxRow, self.outbox), (RecordIssue, self.issues)):
            if rows:
                s.execute(sa.insert(model.__table__), rows)

Progress = Callable[[str, int], None]


@dataclass
class Connection:
    """A configured connection: a name, a live connector, its role and direction."""

    name: str
    connector: Connector
    role: str = ""
    direction: str = "both"  # read | write | both

    @property
    def reads(self) -> bool:
        return self.direction in ("read", "both")

    @property
    def writes(self) -> bool:
        return self.direction in ("write", "both")


@dataclass
class SyncOutcome:
    """What one run did; printed by ``leadhub sync`` and stored in the run log."""

    connection: str
    run_id: int | None = None
    pulled: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    malformed: int = 0
    conflicts: int = 0
    pushed: int = 0
    rejected: int = 0
    api_calls: int = 0
    pull_calls: int = 0
    push_calls: int = 0
    throttled: int = 0
    seconds: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _json_value(v: Any) -> Any:
    return v.isoformat() if isinstance(v, (date, datetime)) else v


def jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: _json_value(v) for k, v in fields.items()}


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


class Syncer:
    """Runs sync cycles against one store. ``process`` supplies transitions and required fields."""

    def __init__(self, store: Store, *, transitions=DEFAULT_TRANSITIONS, required=REQUIRED_FIELDS,
                 hook: Any = None, initial_status: str = Status.LEAD.value):
        self.store = store
        self.transitions = transitions
        self.required = required
        self.hook = hook  # a pluggy hook relay (pm.hook), or None
        self.initial_status = initial_status

    # -- the cycle -------------------------------------------------------------------
    def run(self, conn: Connection, *, push: bool = True, progress: Progress | None = None) -> SyncOutcome:
        out = SyncOutcome(conn.name)
        meter = conn.connector.meter
        start_calls, start_throttled, t0 = meter.calls, meter.throttled, time.monotonic()
        with self.store.session() as s:
            run = Run(connection=conn.name, started_at=utcnow())
            s.add(run)
            s.flush()
            out.run_id = run.id
        if self.hook:
            self.hook.hub_before_sync(connection=conn.name, run={"id": out.run_id})
        try:
            if conn.reads:
                self.pull(conn, out, progress)
            out.pull_calls = meter.calls - start_calls
            if push and conn.writes:
                self.push(conn, out, progress)
            out.push_calls = meter.calls - start_calls - out.pull_calls
        except ConnectorError as exc:
            out.error = str(exc)
        finally:
            out.api_calls = meter.calls - start_calls
            out.throttled = meter.throttled - start_throttled
            out.seconds = round(time.monotonic() - t0, 3)
            with self.store.session() as s:
                run = s.get(Run, out.run_id)
                run.finished_at, run.status = utcnow(), "error" if out.error else "ok"
                run.api_calls, run.error = out.api_calls, out.error
                run.counts = {k: v for k, v in out.as_dict().items() if isinstance(v, int) and k != "run_id"}
        if self.hook:
            self.hook.hub_after_sync(connection=conn.name, run={"id": out.run_id}, outcome=out.as_dict())
        return out

    # -- pull --------------------------------------------------------------------------
    def pull(self, conn: Connection, out: SyncOutcome, progress: Progress | None = None) -> None:
        cn = conn.connector
        with Session(self.store.engine) as s:
            row = s.get(Cursor, (conn.name, cn.lead_object))
            cursor = dict(row.value) if row else None
        for page in cn.read_changes(cursor):
            changed: list[tuple[Lead, dict[str, Any]]] = []
            with self.store.session() as s:
                self._apply_page(s, conn, page, out, changed)
                s.merge(Cursor(connection=conn.name, object=cn.lead_object, value=page.cursor,
                               updated_at=utcnow()))
            if self.hook:
                for lead, change in changed:
                    self.hook.hub_lead_changed(lead=lead, change=change)
            if progress:
                progress("pull", len(page.records))

    def _apply_page(self, s: Session, conn: Connection, page: Page, out: SyncOutcome,
                    changed: list[tuple[Lead, dict[str, Any]]]) -> None:
        """Apply one page: a few queries per page, bulk inserts for new leads, never a query per record."""
        cn = conn.connector
        records = list({r.remote_id: r for r in page.records}.values())  # last version wins
        out.pulled += len(page.records)
        ids = [r.remote_id for r in records]
        hub_ids = [r.hub_id for r in records if r.hub_id]
        links = {ln.remote_id: ln for ln in s.exec(sa.select(Link).where(
            Link.connection == conn.name, Link.object == cn.lead_object, Link.remote_id.in_(ids))).scalars()}
        wanted = {ln.lead_id for ln in links.values()} | set(hub_ids)
        leads = {row.id: row for row in s.exec(sa.select(LeadRow).where(LeadRow.id.in_(wanted))).scalars()}
        linked = set(s.exec(sa.select(Link.lead_id).where(
            Link.connection == conn.name, Link.object == cn.lead_object, Link.lead_id.in_(hub_ids))).scalars())
        now = utcnow()
        new = _NewRows()
        touched: list[dict[str, Any]] = []
        for rec in records:
            for problem in rec.problems:
                out.malformed += 1
                new.issues.append(dict(run_id=out.run_id, connection=conn.name, remote_id=rec.remote_id,
                                       kind="malformed", message=problem, at=now))
            link = links.get(rec.remote_id)
            if rec.deleted:
                if link and link.deleted_at is None:
                    link.deleted_at = now
                    out.deleted += 1
                continue
            fields = jsonable(rec.fields)
            digest = fields_hash(fields)
            if link is not None:
                if link.synced_hash == digest and link.deleted_at is None:
                    out.unchanged += 1
                    touched.append({"lid": link.id, "rm": rec.modified})
                    continue
                row = leads[link.lead_id]
                change = self._update(s, conn, row, link, rec, fields, out, now)
                link.synced_hash, link.remote_modified, link.deleted_at = digest, rec.modified, None
                if change:
                    out.updated += 1
                    changed.append((lead_from_row(row), change))
                else:
                    out.unchanged += 1
                continue
            hub_id = rec.hub_id
            if hub_id and hub_id in linked:
                # a second record carries an id already linked here (a copy, a re-import): a new person
                new.issues.append(dict(run_id=out.run_id, connection=conn.name, remote_id=rec.remote_id,
                                       lead_id=hub_id, kind="malformed", at=now,
                                       message=f"hub id {hub_id} is already linked to another record; "
                                               "it gets a new id"))
                hub_id = None
            if hub_id and hub_id in leads:  # a lead the hub knows, seen here for the first time
                row = leads[hub_id]
                change = self._update(s, conn, row, None, rec, fields, out, now)
                out.updated += 1
                lead = lead_from_row(row)
            else:
                lead = self._new_lead(rec, hub_id)
                new.leads.append({**row_values(lead), "created_at": now, "updated_at": now})
                new.history.append(dict(lead_id=lead.id, from_status=None, to_status=lead.status,
                                        at=rec.modified, by=f"connection:{conn.name}", connection=conn.name,
                                        incomplete=[]))
                out.created += 1
                change = {"fields": {}, "created": True}
            linked.add(lead.id)
            new.links.append(dict(lead_id=lead.id, connection=conn.name, object=cn.lead_object,
                                  remote_id=rec.remote_id, remote_modified=rec.modified, synced_hash=digest,
                                  synced=fields))
            changed.append((lead, {**change, "connection": conn.name}))
            if rec.hub_id != lead.id and conn.writes:
                # stamp the hub's id into the record so the link survives renames and re-imports
                new.outbox.append(dict(connection=conn.name, object=cn.lead_object, lead_id=lead.id,
                                       remote_id=rec.remote_id, fields={}, state="pending", attempts=0,
                                       created_at=now, updated_at=now))
        s.flush()
        new.write(s)
        if touched:
            s.connection().execute(sa.update(Link.__table__).where(Link.__table__.c.id == sa.bindparam("lid"))
                                   .values(remote_modified=sa.bindparam("rm")), touched)

    def _new_lead(self, rec: RemoteRecord, hub_id: str | None) -> Lead:
        first = {k: v for k, v in rec.fields.items() if k in LEAD_FIELDS and k != "status" and not _blank(v)}
        custom = {k: _json_value(v) for k, v in rec.fields.items() if k not in LEAD_FIELDS and not _blank(v)}
        return Lead(**({"id": hub_id} if hub_id else {}), **first, custom=custom,
                    status=rec.fields.get("status") or self.initial_status, status_since=rec.modified)

    def _update(self, s: Session, conn: Connection, row: LeadRow, link: Link | None, rec: RemoteRecord,
                fields: dict[str, Any], out: SyncOutcome, now: datetime) -> dict[str, Any]:
        """Apply the fields that changed remotely since the last sync; returns what changed."""
        before = self._synced_fields(s, link)
        lead = lead_from_row(row)
        diff: dict[str, tuple[Any, Any]] = {}
        data = lead.model_dump()
        for name, value in fields.items():
            if name == "status" or (before is not None and before.get(name) == value):
                continue
            if _blank(value):
                continue  # never overwrite a value with a blank
            current = _json_value(data.get(name) if name in LEAD_FIELDS else lead.custom.get(name))
            if current != value:
                diff[name] = (current, value)
        if diff:
            custom = dict(lead.custom)
            updates = {}
            for name, (_, value) in diff.items():
                if name in LEAD_FIELDS:
                    updates[name] = value
                else:
                    custom[name] = value
            lead = Lead.model_validate({**lead.model_dump(), **updates, "custom": custom})
        target = rec.fields.get("status")
        if target and target != lead.status and (before is None or before.get("status") != target):
            verdict = check_transition(lead, target, transitions=self.transitions, required=self.required)
            if verdict.allowed:
                diff["status"] = (lead.status, target)
                s.add(StatusChange(lead_id=lead.id, from_status=lead.status, to_status=target, at=rec.modified,
                                   by=f"connection:{conn.name}", connection=conn.name,
                                   incomplete=list(verdict.incomplete)))
                lead.status, lead.status_since = target, rec.modified
            else:
                out.conflicts += 1
                s.add(Conflict(lead_id=lead.id, connection=conn.name, field="status", hub_value=lead.status,
                               remote_value=target, reason=verdict.reason, at=now))
        if diff:
            for k, v in row_values(lead).items():
                setattr(row, k, v)
            row.updated_at = now
            s.add(row)
        if link is not None:
            self._remember(s, link, fields)
        return {"fields": diff, "connection": conn.name} if diff else {}

    @staticmethod
    def _synced_fields(s: Session, link: Link | None) -> dict[str, Any] | None:
        """The remote's state as the hub last wrote or read it (field-level change detection)."""
        return None if link is None else dict(link.synced or {})

    @staticmethod
    def _remember(s: Session, link: Link, fields: dict[str, Any]) -> None:
        link.synced = dict(fields)

    # -- push --------------------------------------------------------------------------
    def push(self, conn: Connection, out: SyncOutcome, progress: Progress | None = None) -> None:
        cn = conn.connector
        chunk = max(cn.limits.batch_size, 1) * 5
        last_id = 0
        while True:
            with Session(self.store.engine) as s:
                rows = outbox.open_rows(s, conn.name, limit=chunk, after_id=last_id)
                if not rows:
                    return
                last_id = rows[-1].id
                leads = {r.id: lead_from_row(r) for r in s.exec(sa.select(LeadRow).where(
                    LeadRow.id.in_([row.lead_id for row in rows]))).scalars()}
                links = {ln.lead_id: ln for ln in s.exec(sa.select(Link).where(
                    Link.connection == conn.name, Link.object == cn.lead_object,
                    Link.lead_id.in_(list(leads)))).scalars()}
            ops = []
            for row in rows:
                lead = leads[row.lead_id]
                link = links.get(row.lead_id)
                remote_id = link.remote_id if link else row.remote_id
                if remote_id is None:  # a create: send everything the connection carries
                    names = cn.mapped_fields
                else:
                    names = tuple(row.fields)
                values = {n: (lead.get(n)) for n in names}
                ops.append(WriteOp(lead.id, values, remote_id, cn.lead_object))
            results = cn.write(ops)
            by_id = {r.hub_id: r for r in results}
            now = utcnow()
            with self.store.session() as s:
                fresh = {r.id: r for r in s.exec(sa.select(OutboxRow).where(
                    OutboxRow.id.in_([row.id for row in rows]))).scalars()}
                done_links = {ln.lead_id: ln for ln in s.exec(sa.select(Link).where(
                    Link.connection == conn.name, Link.object == cn.lead_object,
                    Link.lead_id.in_([op.hub_id for op in ops]))).scalars()}
                for row, op in zip(rows, ops):
                    row = fresh[row.id]
                    res = by_id.get(op.hub_id)
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
                    self._record_write(s, conn, op, res.remote_id or op.remote_id, done_links)
            if progress:
                progress("push", len(rows))

    def _record_write(self, s: Session, conn: Connection, op: WriteOp, remote_id: str | None,
                      links: dict[str, Link]) -> None:
        """Remember what the remote now holds, so the next pull sees no change (no echo)."""
        cn = conn.connector
        if remote_id is None:
            return
        link = links.get(op.hub_id)
        if link is None:
            link = Link(lead_id=op.hub_id, connection=conn.name, object=cn.lead_object, remote_id=remote_id,
                        synced={})
            links[op.hub_id] = link
        if op.fields:
            state = {**(link.synced or {}), **jsonable(cn.mapped(op.fields))}
            link.synced, link.synced_hash = state, fields_hash(state)
        s.add(link)

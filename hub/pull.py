"""Applying one pulled page to the store: identity, conflict rules, propagation, tombstones.

For each record of a page (a few queries per page, never one per record):

1. **Identity.** Its link; else the hub id it carries; else a lead with the same
   normalised email, phone, or domain + name that has no record in this CRM yet
   (:mod:`hub.identity`); else a new lead. A record seen for the first time gets
   its link and, if it lacks it, the hub id stamped back (outbox).
2. **Fields.** Only fields the CRM changed since the hub last wrote or read them
   (``links.synced``) are candidates; each is decided by the field's conflict rule
   (:mod:`hub.conflicts`) against the lead's value and its provenance. A winning
   value is applied and queued for every other CRM that holds the lead and
   carries the field; a losing one is queued back to this CRM with the rule's
   reason, and kept in ``conflicts`` (resolved), so the CRMs converge.
3. **Status** moves only along the process's transitions. An illegal move the CRM
   made is a conflict, kept open and not applied; a record seen for the first time
   whose status is behind the lead's is simply brought forward.
4. **Deletes and merges** leave a tombstone on the link (never re-created); the
   lead's open writes to that CRM are dismissed; a record merged into another
   record makes their two leads one (the survivor's lead keeps the other's links),
   and a record that absorbed a lead's old record (it carries the lead's hub id)
   takes over the tombstoned link: the link is remapped, not duplicated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session

from hub import outbox
from hub.conflicts import Claim
from hub.identity import KEY_KINDS, find_matches, match_keys
from hub.model import LEAD_FIELDS, Lead, blank, check_transition, fields_hash
from hub.records import Page, RemoteRecord
from hub.store import Conflict, LeadRow, Link, OutboxRow, RecordIssue, StatusChange, lead_from_row, row_values

if TYPE_CHECKING:
    from hub.sync import Connection, Syncer, SyncOutcome

__all__ = ["PageApplier", "jsonable"]

Changed = list[tuple[Lead, dict[str, Any]]]


def _json_value(v: Any) -> Any:
    return v.isoformat() if isinstance(v, (date, datetime)) else v


def jsonable(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _json_value(v) for k, v in fields.items()}


def _at(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


@dataclass
class _NewRows:
    """Rows a page creates, inserted in bulk (parents first) at the end of the page."""

    leads: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)

    def write(self, s: Session) -> None:
        for model, rows in ((LeadRow, self.leads), (Link, self.links), (StatusChange, self.history),
                            (RecordIssue, self.issues)):
            if rows:
                s.execute(sa.insert(model.__table__), rows)


class PageApplier:
    """Applies pages of one connection within the caller's session (the caller commits, or not)."""

    def __init__(self, syncer: Syncer, s: Session, conn: Connection, out: SyncOutcome):
        self.syncer, self.s, self.conn, self.out = syncer, s, conn, out
        self.cn = conn.connector
        self.carried = syncer.carried(conn.name)

    def apply(self, page: Page) -> Changed:
        s, conn, cn, out = self.s, self.conn, self.cn, self.out
        obj = cn.lead_object
        records = list({r.remote_id: r for r in page.records}.values())  # last version wins
        out.pulled += len(page.records)
        links = {ln.remote_id: ln for ln in s.exec(sa.select(Link).where(
            Link.connection == conn.name, Link.object == obj,
            Link.remote_id.in_([r.remote_id for r in records]))).scalars()}
        fresh = [r for r in records if r.remote_id not in links and not r.deleted]
        keys = {r.remote_id: match_keys(r.fields) for r in fresh}
        matches = find_matches(s, conn.name, obj, keys.values()) if fresh else {}
        hub_ids = {r.hub_id for r in fresh if r.hub_id}
        wanted = {ln.lead_id for ln in links.values()} | hub_ids | set(matches.values())
        self.leads = {row.id: row for row in s.exec(sa.select(LeadRow).where(LeadRow.id.in_(wanted))).scalars()}
        here = list(s.exec(sa.select(Link).where(
            Link.connection == conn.name, Link.object == obj, Link.lead_id.in_(wanted))).scalars())
        self.linked_here = {ln.lead_id for ln in here}
        self.dead = {ln.lead_id: ln for ln in here if ln.deleted_at is not None}  # may be re-linked (merges)
        self.others: dict[str, list[Link]] = {}
        for ln in s.exec(sa.select(Link).where(Link.lead_id.in_(wanted), Link.connection != conn.name,
                                                 Link.deleted_at.is_(None))).scalars():
            self.others.setdefault(ln.lead_id, []).append(ln)
        self.now = now = self.syncer.clock()
        self.queue: list[dict[str, Any]] = []
        self.gone: list[tuple[Link, str | None]] = []
        new = _NewRows()
        changed: Changed = []
        touched: list[dict[str, Any]] = []
        for rec in records:
            for problem in rec.problems:
                out.malformed += 1
                new.issues.append(dict(run_id=out.run_id, connection=conn.name, remote_id=rec.remote_id,
                                       kind="malformed", message=problem, at=now))
            link = links.get(rec.remote_id)
            if rec.deleted:
                if link is not None and link.deleted_at is None:
                    link.deleted_at, link.merged_into = now, rec.merged_into
                    self.gone.append((link, rec.merged_into))
                    self.dead[link.lead_id] = link
                    out.deleted += 1
                continue
            fields = jsonable(rec.fields)
            digest = fields_hash(fields)
            if link is not None:
                if link.synced_hash == digest and link.deleted_at is None:
                    out.unchanged += 1
                    touched.append({"lid": link.id, "rm": rec.modified})
                    continue
                change = self._apply(self.leads[link.lead_id], link, rec, fields)
                link.synced_hash, link.remote_modified, link.deleted_at, link.synced = \
                    digest, rec.modified, None, dict(fields)
                if change:
                    out.updated += 1
                    changed.append((lead_from_row(self.leads[link.lead_id]), change))
                else:
                    out.unchanged += 1
                continue
            row, how = self._identify(rec, keys[rec.remote_id], matches, new)
            if how == "relinked":  # the record that absorbed the lead's old one (a merge): the link follows it
                link = self.dead.pop(row.id)
                change = self._apply(row, None, rec, fields)
                link.remote_id, link.deleted_at, link.merged_into = rec.remote_id, None, None
                link.synced_hash, link.remote_modified, link.synced = digest, rec.modified, dict(fields)
                out.matched += 1
                changed.append((lead_from_row(row), {**change, "matched_by": how, "connection": conn.name}))
                continue
            if row is not None:
                change = self._apply(row, None, rec, fields)
                out.matched += 1
                out.updated += bool(change.get("fields"))
                lead = lead_from_row(row)
                change = {**change, "matched_by": how}
            else:
                lead = self._new_lead(rec, None if how == "copy" else rec.hub_id)
                new.leads.append({**row_values(lead), "created_at": now, "updated_at": now,
                                  "provenance": {k: [conn.name, rec.modified.isoformat()]
                                                 for k, v in fields.items() if not blank(v)}})
                new.history.append(dict(lead_id=lead.id, from_status=None, to_status=lead.status,
                                        at=rec.modified, by=f"connection:{conn.name}", connection=conn.name,
                                        incomplete=[]))
                out.created += 1
                change = {"fields": {}, "created": True}
            self.linked_here.add(lead.id)
            new.links.append(dict(lead_id=lead.id, connection=conn.name, object=obj, remote_id=rec.remote_id,
                                  remote_modified=rec.modified, synced_hash=digest, synced=fields))
            changed.append((lead, {**change, "connection": conn.name}))
            if rec.hub_id != lead.id and conn.writes:
                # stamp the hub's id into the record so the link survives renames and re-imports
                self._queue(conn.name, obj, lead.id, rec.remote_id, {}, {"hub_id": "stamp the hub's lead id"})
        s.flush()
        new.write(s)
        if touched:
            s.connection().execute(sa.update(Link.__table__).where(Link.__table__.c.id == sa.bindparam("lid"))
                                   .values(remote_modified=sa.bindparam("rm")), touched)
        outbox.enqueue_many(s, self.queue)
        self._bury()
        return changed

    # -- identity -------------------------------------------------------------------------
    def _identify(self, rec: RemoteRecord, keys: Any, matches: dict[tuple[str, str], str],
                  new: _NewRows) -> tuple[LeadRow | None, str]:
        hub_id = rec.hub_id
        if hub_id and hub_id in self.dead and hub_id in self.leads:
            return self.leads[hub_id], "relinked"
        if hub_id and hub_id in self.linked_here:
            # a second record carries an id already linked here (a copy, a re-import): a new person
            new.issues.append(dict(run_id=self.out.run_id, connection=self.conn.name, remote_id=rec.remote_id,
                                   lead_id=hub_id, kind="malformed", at=self.now,
                                   message=f"hub id {hub_id} is already linked to another record; "
                                           "it gets a new id"))
            return None, "copy"
        if hub_id and hub_id in self.leads:
            return self.leads[hub_id], "hub id"
        if hub_id:
            return None, "hub id"  # an id this hub does not know (another hub's, a purged lead): keep it
        for kind in KEY_KINDS:
            key = getattr(keys, kind)
            lead_id = matches.get((kind, key)) if key else None
            if lead_id and lead_id in self.dead and lead_id in self.leads:
                return self.leads[lead_id], "relinked"  # its record here was deleted: this one replaces it
            if lead_id and lead_id not in self.linked_here and lead_id in self.leads:
                return self.leads[lead_id], kind.removesuffix("_key")
        return None, "new"

    def _new_lead(self, rec: RemoteRecord, hub_id: str | None) -> Lead:
        first = {k: v for k, v in rec.fields.items() if k in LEAD_FIELDS and k != "status" and not blank(v)}
        custom = {k: _json_value(v) for k, v in rec.fields.items() if k not in LEAD_FIELDS and not blank(v)}
        return Lead(**({"id": hub_id} if hub_id else {}), **first, custom=custom,
                    status=rec.fields.get("status") or self.syncer.initial_status, status_since=rec.modified)

    # -- fields and status ------------------------------------------------------------------
    def _apply(self, row: LeadRow, link: Link | None, rec: RemoteRecord, fields: dict[str, Any]) -> dict[str, Any]:
        """Decide every field the CRM changed (or, first seen, holds); returns what changed on the lead."""
        conn, resolver = self.conn.name, self.syncer.resolver
        before = None if link is None else dict(link.synced or {})
        lead = lead_from_row(row)
        data = lead.model_dump()
        prov = dict(row.provenance or {})
        diff: dict[str, tuple[Any, Any]] = {}
        reasons: dict[str, str] = {}
        back: dict[str, str] = {}  # fields this CRM should take from the hub, and why
        peers = self.others.get(row.id, [])
        held = {ln.connection: ln.synced or {} for ln in peers}
        incoming_at = rec.modified
        for name, value in fields.items():
            if name == "status" or (before is not None and before.get(name) == value):
                continue
            current = _json_value(data.get(name) if name in LEAD_FIELDS else lead.custom.get(name))
            if current == value:
                continue
            by, at = prov.get(name) or ("hub", None)
            d = resolver.decide(name, Claim(by, current, _at(at)), Claim(conn, value, incoming_at),
                                lambda c, _n=name: held.get(c, {}).get(_n))
            if d.incoming_wins:
                diff[name], reasons[name] = (current, value), d.reason
                prov[name] = [conn, incoming_at.isoformat()]
            elif name in self.carried:
                back[name] = d.reason
                if before is not None and not blank(value):
                    self.s.add(Conflict(lead_id=row.id, connection=conn, field=name, hub_value=_str(current),
                                        remote_value=_str(value), reason=d.reason, at=self.now,
                                        resolved_at=self.now))
                    self.out.conflicts_resolved += 1
        if diff:
            custom, updates = dict(lead.custom), {}
            for name, (_, value) in diff.items():
                (updates if name in LEAD_FIELDS else custom)[name] = value
            lead = Lead.model_validate({**lead.model_dump(), **updates, "custom": custom})
        self._status(row, lead, before, fields.get("status"), rec, diff, reasons, back, prov)
        if diff:
            for k, v in row_values(lead).items():
                setattr(row, k, v)
            row.provenance, row.updated_at = prov, self.now
            self.s.add(row)
            for ln in peers:  # every other CRM holding the lead takes the change
                wanted = {n: diff[n][1] for n in diff if n in self.syncer.carried(ln.connection)}
                if wanted and self.syncer.writable(ln.connection):
                    self._queue(ln.connection, ln.object, row.id, ln.remote_id, wanted,
                                {n: f"{reasons[n]} (from {conn})" for n in wanted})
        if back and self.conn.writes:
            final = jsonable(lead.model_dump())
            values = {n: final.get(n, lead.custom.get(n)) for n in back}
            self._queue(conn, self.cn.lead_object, row.id, rec.remote_id, values, back)
        return {"fields": diff, "connection": conn} if diff else {}

    def _status(self, row: LeadRow, lead: Lead, before: dict[str, Any] | None, target: str | None,
                rec: RemoteRecord, diff: dict[str, tuple[Any, Any]], reasons: dict[str, str],
                back: dict[str, str], prov: dict[str, Any]) -> None:
        conn = self.conn.name
        if not target or target == lead.status or (before is not None and before.get("status") == target):
            return
        syncer = self.syncer
        verdict = check_transition(lead, target, transitions=syncer.transitions, required=syncer.required)
        if verdict.allowed:
            diff["status"], reasons["status"] = (lead.status, target), f"status: {conn} moved it, an allowed move"
            self.s.add(StatusChange(lead_id=lead.id, from_status=lead.status, to_status=target, at=rec.modified,
                                    by=f"connection:{conn}", connection=conn, incomplete=list(verdict.incomplete)))
            lead.status, lead.status_since = target, rec.modified
            prov["status"] = [conn, rec.modified.isoformat()]
        elif before is None and syncer.behind(target, lead.status):
            back["status"] = f"status: the hub has {lead.status}; {conn}'s record, first seen, was behind at {target}"
        else:
            self.out.conflicts += 1
            self.s.add(Conflict(lead_id=lead.id, connection=conn, field="status", hub_value=lead.status,
                                remote_value=target, reason=verdict.reason, at=self.now))

    # -- queue, tombstones, merges ------------------------------------------------------------
    def _queue(self, connection: str, obj: str, lead_id: str, remote_id: str | None, fields: dict[str, Any],
               reasons: dict[str, str]) -> None:
        self.queue.append(dict(connection=connection, object=obj, lead_id=lead_id, remote_id=remote_id,
                               fields=fields, reasons=reasons))

    def _bury(self) -> None:
        """Dismiss open writes to records that are gone; make merged records' leads one."""
        self.gone = [(ln, into) for ln, into in self.gone if ln.deleted_at is not None]  # not re-linked
        if not self.gone:
            return
        s = self.s
        self.out.dismissed += s.execute(sa.update(OutboxRow).where(
            OutboxRow.connection == self.conn.name, OutboxRow.state.in_(outbox.OPEN_STATES),
            OutboxRow.lead_id.in_([ln.lead_id for ln, _ in self.gone]))
            .values(state="dismissed", last_error=f"the record was deleted in {self.conn.name}",
                    updated_at=self.now)).rowcount
        for link, into in self.gone:
            if into:
                self.syncer.merge_remote(s, self.conn, link, into, self.now)


def _str(v: Any) -> str | None:
    return None if v is None else str(v)

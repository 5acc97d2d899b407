"""The merges the dedup rule decided, carried out in the CRMs that can merge.

When the dedup rule merges two hub leads that both had a record in one CRM, it leaves a
``dedup_merge_requests`` row (:func:`rules.dedup.incremental.request_crm_merges`, state
``requested``). After each connection's push in a sync cycle — the ``hub_after_push`` hook, which
the built-in ``rules`` plugin implements with :func:`after_push` — :func:`carry_out` works through
that connection's ``requested`` rows, oldest first, then its ``skipped`` ones, and settles each in its
own transaction:

* **nothing to merge** (``done``): the survivor had no record there, so the hub's merge moved the
  merged lead's record to it; or the merged record is gone already (deleted or merged in the CRM —
  after a crash that lost the CRM's answer, the next pull reports the merge and tombstones it);
* **the survivor has no live record there** (``failed``): there is nothing to merge into;
* **the connector cannot merge** (``unsupported``, set once, with why): both records stay, a person
  merges them in the CRM; nothing retries it;
* **the CRM is certain to refuse it** (``skipped``, with why): :meth:`hub.connector.Connector.merge_blocker`
  names a record the CRM will not merge, judged from what the hub last synced of it (``links.synced``,
  no call). Dynamics merges only active leads, and a lead that is Qualified (Opportunity,
  Negotiation, Closed Won) or Disqualified (Closed Lost) answers "master entity:lead-{id} is
  deactive" — every run, and nobody can fix it short of reopening a deal that is over. So the
  merge is not sent: the request becomes ``skipped`` once, its ``message`` naming the record, its
  hub lead and its status ("Dynamics merges only active leads; lead … is Disqualified (Closed
  Lost) — the survivor's record, hub lead …"), and both records stay (in the hub they are one lead
  already, which keeps both links). No ``record_issues`` row and no warning: there is nothing to
  act on. Each later run looks at the skipped requests again from the store alone (no call, no
  write while nothing changed): once the hub sees both records active again (reactivated in the
  CRM, or the hub wrote an open status there), the merge goes ahead as below. The hub does not
  reactivate a record to merge it: Dataverse documents no such path, reactivating a Qualified lead
  cuts it from its won deal's state, and a crash between reactivating and restoring would leave a
  closed lead open. A record closed after the hub's last pull is sent and refused: the connector
  raises :class:`hub.errors.MergeBlocked` for that answer, and the request is ``skipped`` the same
  way (not ``failed``, no record issue) until the next pull shows the record's state;
* **the survivor's record does not carry the hub's id yet** (its stamp is an open write; left
  ``requested``, ``message`` says why): the CRM keeps the survivor's values in a merge, and
  HubSpot's merged contact would otherwise carry the merged lead's id; the next run tries again.
  Other open writes do not wait: some can only succeed after the merge (HubSpot refuses to give the
  survivor the merged record's e-mail while that record holds it), and the next push re-sends them;
* otherwise ``connector.merge(survivor_remote_id, merged_remote_id, object)``:

  - it succeeds: ``done``; the merged record's link becomes a tombstone (``deleted_at``,
    ``merged_into`` = the survivor's remote id) and the merged lead's open writes to that CRM are
    dismissed, so nothing is ever written to the merged-away record. The next pull then reports the
    merge: Dynamics deactivates the merged lead (``masterid``: the tombstone is already there) and
    keeps the survivor's id; HubSpot makes a NEW contact that carries the survivor's hub id and
    reports both old ids merged into it, so :mod:`hub.pull` re-links the survivor's link to the new
    contact — one live link for the survivor lead, no new lead;
  - the CRM refuses it (a 4xx that is neither an authorisation, a timeout nor a rate limit, a
    :class:`hub.errors.RejectedRecord`, or a ``ValueError`` from the connector): ``failed`` with the
    CRM's words in ``message`` and a ``merge_rejected`` row in ``record_issues``; the next request
    goes on;
  - anything else (credentials refused, rate limit, timeouts, 5xx): this request and the rest stay
    ``requested`` for the next run, and the error is returned (the hook raises it, so the run shows
    it).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from hub import outbox
from hub.connector import Connector
from hub.errors import AuthError, ConnectorError, MergeBlocked, RateLimitError, RejectedRecord, TransientError
from hub.model import utcnow
from hub.store import Link, OutboxRow, RecordIssue, Store
from rules.dedup.tables import MergeRequest

__all__ = ["REQUESTED", "DONE", "FAILED", "UNSUPPORTED", "SKIPPED", "STATES", "MergeOutcome", "after_push",
           "carry_out", "refused"]

log = logging.getLogger(__name__)

REQUESTED, DONE, FAILED, UNSUPPORTED, SKIPPED = "requested", "done", "failed", "unsupported", "skipped"
#: every state of a merge request (see the module docstring)
STATES = (REQUESTED, DONE, FAILED, UNSUPPORTED, SKIPPED)
#: the states :func:`carry_out` looks at again on every run
_OPEN = (REQUESTED, SKIPPED)
#: 4xx answers that say nothing about the merge itself: credentials, proxies, timeouts, rate limits
_NOT_REFUSALS = frozenset({401, 403, 407, 408, 425, 429})
_WAIT = "wait"
_MERGE = "merge"


@dataclass
class MergeOutcome:
    """What one run did with one connection's merge requests."""

    connection: str
    done: int = 0  # merged in the CRM, or nothing was left to merge
    failed: int = 0  # refused by the CRM, or no survivor record to merge into
    unsupported: int = 0  # the connector cannot merge
    skipped: int = 0  # newly skipped: the CRM is certain to refuse it (an inactive record, see merge_blocker)
    waiting: int = 0  # left requested: the survivor's record does not carry the hub's id yet
    errors: list[str] = field(default_factory=list)  # "request <id>: <message>" for each failure
    error: str | None = None  # what stopped the run early; the rest stays requested
    api_calls: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Step:
    """What to do with one request: settle it (``state``), leave it waiting, or merge two records."""

    kind: str  # a state, _WAIT or _MERGE
    message: str | None = None
    survivor_remote_id: str | None = None
    merged_remote_id: str | None = None


def refused(exc: BaseException) -> bool:
    """True when the CRM refused this merge for good (retrying the same request cannot help)."""
    if isinstance(exc, (ValueError, RejectedRecord)):
        return True
    if isinstance(exc, (AuthError, RateLimitError, TransientError)) or not isinstance(exc, ConnectorError):
        return False
    return exc.status is not None and 400 <= exc.status < 500 and exc.status not in _NOT_REFUSALS


def after_push(connection: str, connector: Connector, store: Store, run: dict[str, Any]) -> MergeOutcome:
    """The ``hub_after_push`` work: :func:`carry_out`; an error that stopped it is raised for the run log."""
    out = carry_out(store, connection, connector, run_id=run.get("id"))
    if out.done or out.failed or out.unsupported or out.skipped:
        log.log(logging.WARNING if out.failed else logging.INFO,
                "%s: CRM merges: %d done, %d failed, %d unsupported, %d skipped, %d waiting "
                "(see dedup_merge_requests)",
                connection, out.done, out.failed, out.unsupported, out.skipped, out.waiting)
    if out.error:
        raise ConnectorError(f"merges: {out.error}")
    return out


def carry_out(store: Store, connection: str, connector: Connector, *, run_id: int | None = None,
              limit: int | None = None) -> MergeOutcome:
    """Settle ``connection``'s ``requested`` merge requests, and look at its ``skipped`` ones again
    (see the module docstring); ``limit``: at most this many this run, requested ones first. Never
    raises for the CRM's answers: see :class:`MergeOutcome`."""
    out = MergeOutcome(connection)
    before = connector.meter.calls
    with Session(store.engine) as s:
        q = sa.select(MergeRequest.id).where(MergeRequest.connection == connection,
                                             MergeRequest.state.in_(_OPEN)) \
            .order_by(MergeRequest.state == SKIPPED, MergeRequest.id)
        ids = list(s.exec(q if limit is None else q.limit(limit)).scalars())
    for rid in ids:
        with Session(store.engine) as s:
            req = s.get(MergeRequest, rid)
            if req is None or req.state not in _OPEN:
                continue
            step, obj, was = _next_step(s, req, connector), req.object, req.state
        if step.kind == _WAIT:
            out.waiting += 1
            _settle(store, rid, REQUESTED, step.message, run_id=run_id)
            continue
        if step.kind != _MERGE:
            if not (step.kind == SKIPPED and was == SKIPPED):  # still skipped: counted when it was set
                _count(out, rid, step.kind, step.message)
            _settle(store, rid, step.kind, step.message, run_id=run_id)
            continue
        try:
            connector.merge(step.survivor_remote_id, step.merged_remote_id, obj)
        except MergeBlocked as exc:  # a record's state changed since the hub last read it
            message = f"{exc.vendor_message}. Refused by the CRM; both records stay, and the hub merges " \
                      "them once both are active there again"
            if was != SKIPPED:
                _count(out, rid, SKIPPED, message)
            _settle(store, rid, SKIPPED, message, run_id=run_id)
            continue
        except (ConnectorError, ValueError) as exc:
            if not refused(exc):
                out.error = str(exc)
                break
            message = getattr(exc, "vendor_message", None) or str(exc)
            _count(out, rid, FAILED, message)
            _settle(store, rid, FAILED, message, run_id=run_id, rejected=step)
            log.info("%s: merging record %s into %s was refused: %s", connection, step.merged_remote_id,
                     step.survivor_remote_id, message)
            continue
        _count(out, rid, DONE, None)
        _settle(store, rid, DONE, f"merged into record {step.survivor_remote_id} in {connection}",
                run_id=run_id, tombstone=step)
    out.api_calls = connector.meter.calls - before
    return out


def _count(out: MergeOutcome, rid: int, state: str, message: str | None) -> None:
    if state == DONE:
        out.done += 1
    elif state == UNSUPPORTED:
        out.unsupported += 1
    elif state == SKIPPED:
        out.skipped += 1
    elif state == FAILED:
        out.failed += 1
        out.errors.append(f"request {rid}: {message}")


def _next_step(s: Session, req: MergeRequest, connector: Connector) -> _Step:
    """Decide, from the store alone, what one request needs."""
    where = (Link.connection == req.connection, Link.object == req.object)
    merged = s.exec(sa.select(Link).where(*where, Link.remote_id == req.merged_remote_id)).scalars().first() \
        if req.merged_remote_id else None
    if merged is None or merged.deleted_at is not None:
        return _Step(DONE, f"nothing to merge: record {req.merged_remote_id} is gone from {req.connection} "
                           "(merged or deleted there)")
    if merged.lead_id == req.survivor_id:
        return _Step(DONE, f"nothing to merge: the survivor had no record in {req.connection}; "
                           f"record {merged.remote_id} is now the survivor's")
    survivor = s.exec(sa.select(Link).where(*where, Link.lead_id == req.survivor_id,
                                            Link.deleted_at.is_(None))).scalars().first()
    if survivor is None:
        return _Step(FAILED, f"lead {req.survivor_id} has no live record in {req.connection} to merge "
                             f"record {merged.remote_id} into")
    if not connector.can_merge:
        return _Step(UNSUPPORTED, f"the {connector.name} connector does not merge records: merge record "
                                  f"{merged.remote_id} into {survivor.remote_id} in {connector.title or 'the CRM'} "
                                  "by hand")
    sides = (("survivor", survivor, req.survivor_id), ("merged lead", merged, req.merged_id))
    blocked = [f"{why} — the {role}'s record, hub lead {lead_id}" for role, link, lead_id in sides
               if (why := connector.merge_blocker(link.remote_id, link.synced or {}))]
    if blocked:
        return _Step(SKIPPED, "; ".join(blocked) + ". Not sent (the CRM would refuse it); both records stay, "
                              "and the hub merges them once both are active there again")
    open_rows = s.exec(sa.select(OutboxRow.reasons).where(
        OutboxRow.connection == req.connection, OutboxRow.lead_id == req.survivor_id,
        OutboxRow.state.in_(outbox.OPEN_STATES))).scalars()
    if any("hub_id" in (reasons or {}) for reasons in open_rows):
        return _Step(_WAIT, f"waiting: record {survivor.remote_id} does not carry the hub's id yet (its stamp "
                            f"is not confirmed by {req.connection}); the merged record must keep it")
    return _Step(_MERGE, survivor_remote_id=survivor.remote_id, merged_remote_id=merged.remote_id)


def _settle(store: Store, rid: int, state: str | None, message: str | None, *, run_id: int | None,
            tombstone: _Step | None = None, rejected: _Step | None = None) -> None:
    """Record one request's outcome in one transaction: nothing when it is neither requested nor
    skipped any more, or already says exactly this."""
    now = utcnow()
    with store.session() as s:
        req = s.get(MergeRequest, rid)
        if req is None or req.state not in _OPEN or (state == req.state and req.message == message):
            return
        if state is not None:
            req.state = state
        req.message, req.updated_at = message, now
        s.add(req)
        if tombstone is not None:
            link = s.exec(sa.select(Link).where(Link.connection == req.connection, Link.object == req.object,
                                                Link.remote_id == tombstone.merged_remote_id)).scalars().first()
            if link is not None and link.deleted_at is None:
                link.deleted_at, link.merged_into = now, tombstone.survivor_remote_id
                s.add(link)
                s.execute(sa.update(OutboxRow).where(
                    OutboxRow.connection == req.connection, OutboxRow.lead_id == link.lead_id,
                    OutboxRow.state.in_(outbox.OPEN_STATES))
                    .values(state="dismissed", last_error=f"the record was merged into "
                                                          f"{tombstone.survivor_remote_id} in {req.connection}",
                            updated_at=now))
        if rejected is not None:
            s.add(RecordIssue(run_id=run_id, connection=req.connection, remote_id=rejected.merged_remote_id,
                              lead_id=req.merged_id, kind="merge_rejected", message=message or "", at=now))

"""Matching leads as they arrive, against the store, through the blocking-key index.

:func:`find_matches` computes the new lead's keys, looks them up in
``dedup_keys`` (one indexed query, plus one to drop keys shared by more than
``max_block`` leads), loads the few candidate leads and scores each against the
new one. :func:`index_lead` then records the lead's own keys (replacing any it
had), so the next arrival can find it. Cost per lead does not grow with the
number of leads in the store, only with the size of its blocks.

:func:`request_crm_merges` writes the ``dedup_merge_requests`` a merge leaves
behind: one per connection the merged lead lives in, naming both records when
the survivor lives there too (:mod:`rules.dedup.remote` carries them out).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from hub.model import Lead
from hub.normalise import Identity
from hub.store import LeadRow, Link, lead_from_row
from rules.dedup.batch import DedupSettings
from rules.dedup.blocking import blocking_keys
from rules.dedup.scoring import Score, score
from rules.dedup.tables import DedupKey, MergeRequest

__all__ = ["candidate_ids", "find_matches", "index_lead", "index_leads", "request_crm_merges", "Match"]

Match = tuple[Lead, Score]

# built once: per lead, building and keying these statements cost more than running them
_keys, _leads = DedupKey.__table__, LeadRow.__table__
_BLOCK_SIZES = (sa.select(_keys.c.key, sa.func.count()).where(_keys.c.key.in_(sa.bindparam("keys", expanding=True)))
                .group_by(_keys.c.key))
_BLOCK_LEADS = sa.select(_keys.c.lead_id).where(_keys.c.key.in_(sa.bindparam("keys", expanding=True))).distinct()
_LEADS = sa.select(_leads).where(_leads.c.id.in_(sa.bindparam("ids", expanding=True)))
_DELETE_KEYS = sa.delete(_keys).where(_keys.c.lead_id == sa.bindparam("lead_id"))


def candidate_ids(s: Session, keys: Sequence[str], *, exclude: str, max_block: int) -> set[str]:
    """Leads sharing one of ``keys``, leaving out keys shared by more than ``max_block`` leads."""
    if not keys:
        return set()
    usable = [k for k, n in s.execute(_BLOCK_SIZES, {"keys": list(keys)}).all() if n <= max_block]
    if not usable:
        return set()
    return {r[0] for r in s.execute(_BLOCK_LEADS, {"keys": usable}).all() if r[0] != exclude}


def find_matches(s: Session, lead: Lead, settings: DedupSettings, *,
                 skip: Iterable[str] = ()) -> tuple[Identity, list[Match]]:
    """The new lead's identity and every stored lead scoring at least ``settings.review``, best first."""
    who = settings.identity(lead)
    ids = candidate_ids(s, blocking_keys(who), exclude=lead.id, max_block=settings.max_block) - set(skip)
    if not ids:
        return who, []
    found: list[Match] = []
    for row in s.execute(_LEADS, {"ids": sorted(ids)}).all():
        other = lead_from_row(row)
        result = score(who, settings.identity(other), settings.weights)
        if result.probability >= settings.review:
            found.append((other, result))
    found.sort(key=lambda m: (-m[1].weight, m[0].id))
    return who, found


def index_lead(s: Session, lead_id: str, who: Identity) -> None:
    """Replace the stored blocking keys of ``lead_id`` with those of ``who``."""
    s.execute(_DELETE_KEYS, {"lead_id": lead_id})
    keys = sorted(set(blocking_keys(who)))
    if keys:
        s.execute(sa.insert(DedupKey.__table__), [{"key": k, "lead_id": lead_id} for k in keys])


def index_leads(s: Session, identities: Iterable[Identity], *, chunk: int = 5000) -> int:
    """Bulk-index leads not indexed before (a first import); returns the number of keys written."""
    t = DedupKey.__table__
    written, rows = 0, []
    for who in identities:
        rows += [{"key": k, "lead_id": who.lead_id} for k in sorted(set(blocking_keys(who)))]
        if len(rows) >= chunk:
            s.execute(sa.insert(t), rows)
            written, rows = written + len(rows), []
    if rows:
        s.execute(sa.insert(t), rows)
        written += len(rows)
    return written


def request_crm_merges(s: Session, *, survivor_id: str, merged_id: str, confidence: float,
                       at: datetime) -> list[MergeRequest]:
    """One merge request per connection/object the merged lead has a record in."""
    t = Link.__table__
    rows = s.execute(sa.select(t.c.lead_id, t.c.connection, t.c.object, t.c.remote_id).where(
        t.c.lead_id.in_([survivor_id, merged_id]), t.c.deleted_at.is_(None))).all()
    survivor = {(r.connection, r.object): r.remote_id for r in rows if r.lead_id == survivor_id}
    out = []
    for r in rows:
        if r.lead_id != merged_id:
            continue
        req = MergeRequest(survivor_id=survivor_id, merged_id=merged_id, connection=r.connection,
                           object=r.object, survivor_remote_id=survivor.get((r.connection, r.object)),
                           merged_remote_id=r.remote_id,
                           confidence=round(confidence, 6), at=at)
        s.add(req)
        out.append(req)
    return out

"""The router's books for one transaction: the lock taken once, cap counts and rotations kept current.

Routing a lead needs the routing lock, the assignments counted in each cap window (per pool, per
person) and the pool's rotation. Read from the store for every lead, that was most of routing's
cost (~3 ms a lead). Within one transaction none of it can change behind the router's back — the
lock (:func:`rules.routing.router.lock`) is held until the transaction ends, and only the router
writes these tables — so :class:`Books` reads each once per transaction and keeps it current as
decisions are made:

* the lock is taken on the first route of a transaction, not on every one;
* cap counts are read once per (pool or person, ``now``, time zone) and incremented by each
  decision recorded after, window by window, exactly as the count query would have seen it;
* a rotation is read once; after a decision only the slots (and level) that changed are written,
  with plain ``UPDATE``/``INSERT`` statements.

A new transaction (after a commit or a rollback, e.g. a dry run's or the engine's retry of a page)
starts with empty books: :func:`books` compares the session's current transaction object, which it
holds a reference to, so an old one's identity cannot be reused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from rules.routing.eligibility import window_starts
from rules.routing.rotation import Rotation, Slot
from rules.routing.tables import PoolState, RotationSlotRow, RoutingDecision

__all__ = ["Books", "books"]

_KEY = "leadhub.routing.books"


@dataclass
class _Counts:
    starts: dict[str, datetime]
    counts: dict[str, int]


@dataclass
class _Stored:
    rotation: Rotation
    level: float | None  # as stored; None: no routing_pools row yet
    slots: dict[str, tuple[float | None, int, datetime | None]] = field(default_factory=dict)


@dataclass
class Books:
    """What one transaction has read and decided (see the module docstring)."""

    transaction: Any
    locked: bool = False
    pools: dict[tuple[str, datetime, str], _Counts] = field(default_factory=dict)
    people: dict[tuple[str, datetime, str], _Counts] = field(default_factory=dict)
    rotations: dict[str, _Stored] = field(default_factory=dict)

    # -- the lock ----------------------------------------------------------------------------
    def lock_once(self, s: Session, take: Callable[[Session], None]) -> None:
        if not self.locked:
            take(s)
            self.locked = True

    # -- cap counts --------------------------------------------------------------------------
    def pool_counts(self, s: Session, pool: str, now: datetime, tz: tzinfo) -> dict[str, int]:
        key = (pool, now, str(tz))
        if key not in self.pools:
            starts = window_starts(now, tz)
            t = RoutingDecision.__table__
            row = s.execute(sa.select(*_sums(t, starts)).where(
                t.c.pool == pool, t.c.owner.is_not(None), t.c.at >= min(starts.values()))).first()
            self.pools[key] = _Counts(starts, {w: int(row._mapping[w] or 0) for w in starts})
        return self.pools[key].counts

    def person_counts(self, s: Session, emails: Sequence[str], now: datetime, tz: tzinfo) -> dict[str, dict[str, int]]:
        missing = [e for e in emails if (e, now, str(tz)) not in self.people]
        if missing:
            starts = window_starts(now, tz)
            t = RoutingDecision.__table__
            rows = s.execute(sa.select(t.c.owner, *_sums(t, starts)).where(
                t.c.owner.in_(missing), t.c.at >= min(starts.values())).group_by(t.c.owner)).all()
            found = {r.owner: {w: int(r._mapping[w] or 0) for w in starts} for r in rows}
            for e in missing:
                self.people[(e, now, str(tz))] = _Counts(starts, found.get(e, dict.fromkeys(starts, 0)))
        return {e: self.people[(e, now, str(tz))].counts for e in emails}

    def counted(self, owner: str | None, pool: str | None, at: datetime) -> None:
        """A decision at ``at`` was recorded: add it to every count that would include it."""
        if owner is None:
            return
        for (who, _, _), c in self.people.items():
            if who == owner:
                _add(c, at)
        if pool is not None:
            for (name, _, _), c in self.pools.items():
                if name == pool:
                    _add(c, at)

    # -- rotations ---------------------------------------------------------------------------
    def rotation(self, s: Session, key: str) -> Rotation:
        if key not in self.rotations:
            pools, t = PoolState.__table__, RotationSlotRow.__table__
            level = s.execute(sa.select(pools.c.level).where(pools.c.pool == key)).scalar()
            rows = s.execute(sa.select(t).where(t.c.pool == key)).all()
            slots = {r.email: Slot(r.email, r.vtime, r.assigned, r.last_at) for r in rows}
            self.rotations[key] = _Stored(Rotation(level or 0.0, slots), level,
                                          {r.email: (r.vtime, r.assigned, r.last_at) for r in rows})
        return self.rotations[key].rotation

    def save_rotation(self, s: Session, key: str) -> None:
        """Write the slots and level of ``key``'s rotation that changed since last read or written."""
        stored = self.rotations[key]
        rot, pools, t = stored.rotation, PoolState.__table__, RotationSlotRow.__table__
        if stored.level is None:
            s.execute(sa.insert(pools), {"pool": key, "level": rot.level})
        elif stored.level != rot.level:
            s.execute(_UPDATE_LEVEL, {"k_pool": key, "level": rot.level})
        stored.level = rot.level
        new, changed = [], []
        for email, slot in rot.slots.items():
            now = (slot.vtime, slot.assigned, slot.last_at)
            before = stored.slots.get(email)
            if before == now:
                continue
            row = {"pool": key, "email": email, "vtime": slot.vtime, "assigned": slot.assigned,
                   "last_at": slot.last_at}
            (new if before is None else changed).append(row)
            stored.slots[email] = now
        if new:
            s.execute(sa.insert(t), new)
        if changed:
            s.execute(_UPDATE_SLOT, [{**r, "k_pool": r["pool"], "k_email": r["email"]} for r in changed])


_slots, _pools = RotationSlotRow.__table__, PoolState.__table__
_UPDATE_SLOT = (sa.update(_slots)
                .where(_slots.c.pool == sa.bindparam("k_pool"), _slots.c.email == sa.bindparam("k_email"))
                .values(vtime=sa.bindparam("vtime"), assigned=sa.bindparam("assigned"),
                        last_at=sa.bindparam("last_at")))
_UPDATE_LEVEL = sa.update(_pools).where(_pools.c.pool == sa.bindparam("k_pool")).values(level=sa.bindparam("level"))


def books(s: Session) -> Books:
    """The books of ``s``'s current transaction (new ones for a new transaction)."""
    tx = s.get_transaction()
    current = s.info.get(_KEY)
    if current is None or current.transaction is not tx:
        current = s.info[_KEY] = Books(tx)
    return current


def _sums(t: sa.Table, starts: dict[str, datetime]) -> list[Any]:
    return [sa.func.sum(sa.case((t.c.at >= start, 1), else_=0)).label(name) for name, start in starts.items()]


def _add(c: _Counts, at: datetime) -> None:
    for window, start in c.starts.items():
        if at >= start:
            c.counts[window] += 1

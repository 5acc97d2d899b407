"""The router's books: the lock taken once per transaction, cap counts and rotations kept current.

Routing a lead needs the routing lock, the assignments counted in each cap window (per pool, per
person) and the pool's rotation. Read from the store for every lead, that was most of routing's
cost (~3 ms a lead); re-counted once per transaction, the count grew with the week's decisions
(a quarter of a second per transaction at a million). Neither is needed: every decision is
written under the lock (:func:`rules.routing.router.lock`), held until its transaction ends, so

* the lock is taken on the first route of a transaction, not on every one;
* cap counts are kept per database across transactions (:class:`_Ledger`): at its first route a
  transaction folds in the decisions committed since the last one it knows (its predecessors',
  another process's — by id, which only grows under the lock), then reads a count it does not keep
  yet as of that point, and adds its own decisions as it makes them. A rolled-back transaction's
  decisions were never committed, so no later transaction counts them. A different ``now`` moves
  the windows: the counts are read afresh;
* a rotation is read once per transaction; after a decision only the slots (and level) that
  changed are written, with plain ``UPDATE``/``INSERT`` statements.

A new transaction (after a commit or a rollback, e.g. a dry run's or the engine's retry of a page)
starts with new books: :func:`books` compares the session's current transaction object, which it
holds a reference to, so an old one's identity cannot be reused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from weakref import WeakKeyDictionary

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

    def add(self, at: datetime) -> None:
        for window, start in self.starts.items():
            if at >= start:
                self.counts[window] += 1

    def copy(self) -> _Counts:
        return _Counts(self.starts, dict(self.counts))


@dataclass
class _Stored:
    rotation: Rotation
    level: float | None  # as stored; None: no routing_pools row yet
    slots: dict[str, tuple[float | None, int, datetime | None]] = field(default_factory=dict)


@dataclass
class _Ledger:
    """Cap counts as committed up to decision ``last_id``, for windows at ``now`` — one per database,
    kept across transactions. Each transaction first folds in the decisions committed since (its
    own previous ones, another process's), reading only those rows: per transaction the cost is
    what is new, not every decision in the week."""

    last_id: int | None = None
    now: datetime | None = None
    pools: dict[tuple[str, str], _Counts] = field(default_factory=dict)  # (pool, tz)
    people: dict[tuple[str, str], _Counts] = field(default_factory=dict)  # (email, tz)

    def catch_up(self, s: Session, now: datetime) -> None:
        """At a transaction's start, before it decides anything: fold in what was committed since."""
        if self.now != now:
            self.move(now)
        if not (self.pools or self.people) or self.last_id is None:
            self.last_id = s.execute(_MAX_ID).scalar() or 0  # nothing kept: nothing to fold in
            return
        for row in s.execute(_SINCE, {"last": self.last_id}).all():
            self.last_id = row.id
            if row.owner is None:
                continue
            for (who, _), c in self.people.items():
                if who == row.owner:
                    c.add(row.at)
            if row.pool is not None:
                for (name, _), c in self.pools.items():
                    if name == row.pool:
                        c.add(row.at)

    def move(self, now: datetime) -> None:
        """Windows at another ``now``: what is kept no longer applies (``last_id`` still does)."""
        self.now, self.pools, self.people = now, {}, {}


_LEDGERS: WeakKeyDictionary[Any, _Ledger] = WeakKeyDictionary()


def _ledger(s: Session) -> _Ledger:
    bind = s.get_bind()
    engine = getattr(bind, "engine", bind)
    if engine not in _LEDGERS:
        _LEDGERS[engine] = _Ledger()
    return _LEDGERS[engine]


@dataclass
class Books:
    """What one transaction has read and decided (see the module docstring)."""

    transaction: Any
    locked: bool = False
    ledger: _Ledger | None = None  # caught up at this transaction's first route, before any decision
    pools: dict[tuple[str, str], _Counts] = field(default_factory=dict)
    people: dict[tuple[str, str], _Counts] = field(default_factory=dict)
    decided: list[tuple[str, str | None, datetime]] = field(default_factory=list)  # (owner, pool, at)
    rotations: dict[str, _Stored] = field(default_factory=dict)

    # -- the lock ----------------------------------------------------------------------------
    def lock_once(self, s: Session, take: Callable[[Session], None]) -> None:
        if not self.locked:
            take(s)
            self.locked = True

    def begin(self, s: Session, now: datetime) -> None:
        """At each route, under the lock: the counts this transaction starts from are current."""
        if self.ledger is None:
            self.ledger = _ledger(s)
            self.ledger.catch_up(s, now)
        elif self.ledger.now != now:  # mid-transaction: base counts as of its start, then its own
            self.ledger.move(now)
            self.pools, self.people = {}, {}

    # -- cap counts --------------------------------------------------------------------------
    def pool_counts(self, s: Session, pool: str, now: datetime, tz: tzinfo) -> dict[str, int]:
        self.begin(s, now)
        key = (pool, str(tz))
        if key not in self.pools:
            ledger = self._ledger()
            if key not in ledger.pools:
                starts = window_starts(now, tz)
                t = RoutingDecision.__table__
                row = s.execute(sa.select(*_sums(t, starts)).where(
                    t.c.pool == pool, t.c.owner.is_not(None), t.c.at >= min(starts.values()),
                    t.c.id <= ledger.last_id)).first()
                ledger.pools[key] = _Counts(starts, {w: int(row._mapping[w] or 0) for w in starts})
            self.pools[key] = self._replayed(ledger.pools[key], lambda owner, p: p == pool)
        return self.pools[key].counts

    def person_counts(self, s: Session, emails: Sequence[str], now: datetime, tz: tzinfo) -> dict[str, dict[str, int]]:
        self.begin(s, now)
        ledger, zone = self._ledger(), str(tz)
        missing = [e for e in emails if (e, zone) not in ledger.people]
        if missing:
            starts = window_starts(now, tz)
            t = RoutingDecision.__table__
            rows = s.execute(sa.select(t.c.owner, *_sums(t, starts)).where(
                t.c.owner.in_(missing), t.c.at >= min(starts.values()), t.c.id <= ledger.last_id)
                .group_by(t.c.owner)).all()
            found = {r.owner: {w: int(r._mapping[w] or 0) for w in starts} for r in rows}
            for e in missing:
                ledger.people[(e, zone)] = _Counts(starts, found.get(e, dict.fromkeys(starts, 0)))
        for e in emails:
            if (e, zone) not in self.people:
                self.people[(e, zone)] = self._replayed(ledger.people[(e, zone)], lambda owner, p, e=e: owner == e)
        return {e: self.people[(e, zone)].counts for e in emails}

    def counted(self, owner: str | None, pool: str | None, at: datetime) -> None:
        """A decision at ``at`` was recorded: add it to every count that would include it."""
        if owner is None:
            return
        self.decided.append((owner, pool, at))
        for (who, _), c in self.people.items():
            if who == owner:
                c.add(at)
        if pool is not None:
            for (name, _), c in self.pools.items():
                if name == pool:
                    c.add(at)

    def _ledger(self) -> _Ledger:
        assert self.ledger is not None, "begin() first"
        return self.ledger

    def _replayed(self, base: _Counts, mine: Callable[[str, str | None], bool]) -> _Counts:
        """``base`` (as committed) plus this transaction's own decisions that count towards it."""
        view = base.copy()
        for owner, pool, at in self.decided:
            if mine(owner, pool):
                view.add(at)
        return view

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
_decisions = RoutingDecision.__table__
_MAX_ID = sa.select(sa.func.max(_decisions.c.id))
_SINCE = (sa.select(_decisions.c.id, _decisions.c.owner, _decisions.c.pool, _decisions.c.at)
          .where(_decisions.c.id > sa.bindparam("last")).order_by(_decisions.c.id))


def books(s: Session) -> Books:
    """The books of ``s``'s current transaction (new ones for a new transaction)."""
    tx = s.get_transaction()
    current = s.info.get(_KEY)
    if current is None or current.transaction is not tx:
        current = s.info[_KEY] = Books(tx)
    return current


def _sums(t: sa.Table, starts: dict[str, datetime]) -> list[Any]:
    return [sa.func.sum(sa.case((t.c.at >= start, 1), else_=0)).label(name) for name, start in starts.items()]

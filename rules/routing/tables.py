"""The router's own books: the lock, each pool's rotation, and every routing decision.

* ``routing_lock`` — one row per lock name; routing takes the row ``"routing"``
  (``SELECT … FOR UPDATE`` on PostgreSQL, a write that opens the serialised write
  transaction on SQLite) before it reads caps, so two leads routed at once are
  decided one after the other and never overdraw a cap.
* ``routing_pools`` / ``routing_rotation`` — a pool's level and each member's
  place in its rotation (:mod:`rules.routing.rotation`).
* ``routing_decisions`` — the audit trail: per decision, the rule that matched,
  every rule tried and why it did not decide, every candidate considered and why
  each was skipped, the owner or queue, and the reason in one line. Caps count
  these rows (an index on ``(owner, at)`` and one on ``(pool, at)``).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from hub.store import UTCDateTime

__all__ = ["RoutingLock", "PoolState", "RotationSlotRow", "RoutingDecision"]


class RoutingLock(SQLModel, table=True):
    __tablename__ = "routing_lock"

    name: str = Field(primary_key=True, max_length=100)
    seq: int = 0


class PoolState(SQLModel, table=True):
    __tablename__ = "routing_pools"

    pool: str = Field(primary_key=True, max_length=100)
    level: float = 0.0


class RotationSlotRow(SQLModel, table=True):
    __tablename__ = "routing_rotation"

    pool: str = Field(primary_key=True, max_length=100)
    email: str = Field(primary_key=True, max_length=255)
    vtime: float | None = None
    assigned: int = 0
    last_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RoutingDecision(SQLModel, table=True):
    __tablename__ = "routing_decisions"
    __table_args__ = (
        sa.Index("ix_routing_decisions_owner_at", "owner", "at"),
        sa.Index("ix_routing_decisions_pool_at", "pool", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=64)
    at: datetime = Field(sa_type=UTCDateTime)
    kind: str = Field(default="route", max_length=20)  # route | reassign
    rule: str | None = Field(default=None, max_length=200)  # the matching rule; "fallback" when none did
    strategy: str | None = Field(default=None, max_length=40)
    pool: str | None = Field(default=None, max_length=100)
    owner: str | None = Field(default=None, max_length=255)
    previous_owner: str | None = Field(default=None, max_length=255)
    queue: str | None = Field(default=None, max_length=100)
    reason: str
    rules: list = Field(default_factory=list, sa_type=sa.JSON)  # [{rule, outcome}]
    candidates: list = Field(default_factory=list, sa_type=sa.JSON)  # [{rule, email, skipped | chosen}]

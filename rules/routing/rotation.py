"""Weighted round robin with a persisted, fair rotation — pure; the store keeps the numbers.

Each member of a pool has a *virtual time* ``vtime``: the leads they were given
divided by their weight. The next lead goes to the eligible member whose
``vtime + 1/weight`` is lowest (weighted fair queuing), so with weights 2:1 the
order is A B A A B A…; ties go to whoever was assigned least recently, then to
the order of the pool's member list. The pool's ``level`` is where the rotation
stands: the lowest ``vtime`` among the members eligible at the last assignment,
never decreasing.

Policies, as stated to admins:

* **Returning person** (back from out-of-office, from a cap, from off-hours,
  or re-added to the pool): their ``vtime`` fell behind the level while they
  were away. ``catch_up: none`` (default) raises them to the level — they
  rejoin at the front of the line and get their next normal turn, but no
  backlog. ``catch_up: limited`` raises them to ``max_catch_up`` leads behind
  the level — at most that many extra leads before the rotation is even again.
  ``catch_up: full`` leaves them behind, so they receive leads until they have
  as many (per weight) as everyone else.
* **Pool change**: a new member starts at the level (no backlog owed, no debt)
  and, never having been assigned, gets the next lead. A removed member's state
  is kept; if they are added back they are a returning person. A weight change
  applies from the next lead on; what was given stays given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = ["CatchUp", "Slot", "Rotation", "EPSILON"]

EPSILON = 1e-9


class CatchUp(StrEnum):
    NONE = "none"
    LIMITED = "limited"
    FULL = "full"


@dataclass(slots=True)
class Slot:
    """One member's place in a pool's rotation."""

    email: str
    vtime: float | None = None  # None: never in this pool's rotation before
    assigned: int = 0
    last_at: datetime | None = None


@dataclass(slots=True)
class Rotation:
    """A pool's rotation: its ``level`` and one :class:`Slot` per member ever seen."""

    level: float = 0.0
    slots: dict[str, Slot] = field(default_factory=dict)

    def slot(self, email: str) -> Slot:
        if email not in self.slots:
            self.slots[email] = Slot(email)
        return self.slots[email]

    def admit(self, eligible: Sequence[tuple[str, float]], catch_up: CatchUp = CatchUp.NONE,
              max_catch_up: int = 3) -> dict[str, float]:
        """Apply the join and catch-up policies to the eligible ``(email, weight)``s; their new vtimes."""
        out = {}
        for email, weight in eligible:
            s = self.slot(email)
            if s.vtime is None:
                s.vtime = self.level
            elif catch_up is CatchUp.NONE:
                s.vtime = max(s.vtime, self.level)
            elif catch_up is CatchUp.LIMITED:
                s.vtime = max(s.vtime, self.level - max_catch_up / weight)
            out[email] = s.vtime
        return out

    def order(self, eligible: Sequence[tuple[str, float]]) -> list[str]:
        """Eligible members in the order the rotation would serve them (call :meth:`admit` first)."""
        position = {email: i for i, (email, _) in enumerate(eligible)}

        def key(item: tuple[str, float]) -> tuple[float, float, int]:
            email, weight = item
            s = self.slot(email)
            finish = round((s.vtime or 0.0) + 1.0 / weight, 9)
            last = s.last_at.timestamp() if s.last_at else float("-inf")
            return finish, last, position[email]

        return [email for email, _ in sorted(eligible, key=key)]

    def assign(self, email: str, weight: float, at: datetime, eligible: Sequence[tuple[str, float]]) -> None:
        """Record that ``email`` got a lead at ``at``, and move the level up."""
        s = self.slot(email)
        s.vtime = (s.vtime if s.vtime is not None else self.level) + 1.0 / weight
        s.assigned += 1
        s.last_at = at
        current = [self.slots[e].vtime for e, _ in eligible
                   if e in self.slots and self.slots[e].vtime is not None]
        if current:
            self.level = max(self.level, round(min(current), 9))

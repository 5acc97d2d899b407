"""An incremental read over monday's ``items_page`` cursors that loses nothing when items change mid-pull.

monday's cursor names a result set fixed when the first page is asked for
(valid 60 minutes), while each page reads the items' current data. Sorted by
``__last_updated__``, the stream is ascending except for items edited after the
set was fixed: those come back at their old place carrying a newer
``updated_at``. A plain "max timestamp so far" cursor could then jump past items
not yet read, and a crash (or an expired cursor) would lose them. So:

* ``ceiling`` is the board's newest ``updated_at`` read just before the set is
  fixed (same request); anything newer was edited mid-pull: it is taken, but the
  cursor never advances on it (the next run reads it again, as an unchanged record).
* the connector fetches one page ahead; the cursor stored with a page never goes
  past the oldest timestamp on the next page, so an edit that moved an item is
  seen before the cursor passes the items behind it.
* the cursor is inclusive (``>=``) with a seen-set at its boundary
  (:class:`hub.connector.TimestampCursor`), keyed by item *and version*
  (``id:hash`` of what was read): ``updated_at`` has whole seconds, so an edit made
  later in the second the last read stopped at carries the same stamp, and only
  its content tells it from the version already taken.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from hub.connector import TimestampCursor

__all__ = ["ChangeFeed", "version"]


def version(item_id: str, props: Mapping[str, Any]) -> str:
    """The seen-set key of one version of an item: its id and a short hash of what was read."""
    digest = hashlib.blake2b(json.dumps(props, sort_keys=True, default=str).encode(), digest_size=6).hexdigest()
    return f"{item_id}:{digest}"


class ChangeFeed:
    """The state of one incremental read: the stored cursor it started from, what it took, where it may resume."""

    def __init__(self, cursor: Mapping[str, Any] | None):
        self.start = TimestampCursor(cursor)
        self.high = TimestampCursor(cursor)
        self.taken: dict[str, int] = {}  # version key -> updated_at (ms) of what this run took
        self.ceiling: int | None = None
        self.committed: dict[str, Any] = self.start.to_dict()

    @property
    def since(self) -> int | None:
        """Where a (re)started query begins: the last cursor handed out."""
        return self.committed.get("since")

    def set_ceiling(self, newest_ms: int | None) -> None:
        """Once per run: the board's newest update when the result set was fixed (None: an empty board)."""
        if self.ceiling is None:
            self.ceiling = -1 if newest_ms is None else newest_ms

    def admit(self, key: str, modified_ms: int) -> bool:
        """True if this version (``version()``) is new to the stored cursor and to this run."""
        return key not in self.taken and self.start.admit(key, modified_ms)

    def take(self, key: str, modified_ms: int) -> None:
        self.taken[key] = modified_ms
        if self.ceiling is None or modified_ms <= self.ceiling:
            self.high.advance(key, modified_ms)

    def commit(self, upcoming_ms: Iterable[int]) -> dict[str, Any]:
        """The cursor to store with the page just taken, given the timestamps on the next page."""
        low = min((ms for ms in upcoming_ms if self.ceiling is None or ms <= self.ceiling), default=None)
        if low is not None and self.high.since is not None and low < self.high.since:
            seen = {k for k, ms in self.taken.items() if ms == low}
            if low == self.start.since:
                seen |= self.start.seen
            value = {"since": low, "seen": sorted(seen)}
        else:
            value = self.high.to_dict()
        self.committed = value
        return value

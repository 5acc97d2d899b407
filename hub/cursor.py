"""Reading by modified time: :class:`TimestampCursor` and :func:`epoch_ms`.

A connector's cursor is an opaque JSON-able dict it owns (see :mod:`hub.connector`). A connector
that reads changes by modified time keeps it with :class:`TimestampCursor` (inclusive, with a
seen-set), on epoch milliseconds from :func:`epoch_ms`. Connectors import both from
:mod:`hub.connector`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["epoch_ms", "TimestampCursor"]


def epoch_ms(value: Any) -> int:
    """Epoch milliseconds from what CRMs send: epoch-ms digits, ISO 8601 (``Z``, ``+00:00`` or
    Salesforce's ``+0000``; naive means UTC) or a datetime. Exact integer arithmetic, so two
    records stamped in the same millisecond always compare equal in a cursor."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    dt = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class TimestampCursor:
    """An inclusive (``>=``) modified-time cursor with a seen-set.

    Records sharing the boundary timestamp are neither lost (the next read starts
    *at* it, not after it) nor repeated (versions already taken at that exact
    timestamp are skipped). Timestamps are epoch milliseconds. Pass ``version``
    (the vendor's row version, or a digest of the record) where the CRM stamps
    coarse times: an edit made within the cursor's own second is then a new
    version, not a repeat. Records *older* than the cursor are admitted: they only
    arrive when a connector deliberately re-reads an overlap (HubSpot's search
    lags writes), and the sync engine's hash check makes a re-read harmless.
    """

    def __init__(self, value: Mapping[str, Any] | None = None):
        value = value or {}
        self.since: int | None = value.get("since")
        self.seen: set[str] = set(value.get("seen", ()))

    @staticmethod
    def _key(remote_id: str, version: str | None) -> str:
        return f"{remote_id}@{version}" if version else remote_id

    def admit(self, remote_id: str, modified_ms: int, version: str | None = None) -> bool:
        """True if this record (version) is new to the cursor and should be processed."""
        if self.since is None or modified_ms != self.since:
            return True
        return self._key(remote_id, version) not in self.seen

    def advance(self, remote_id: str, modified_ms: int, version: str | None = None) -> None:
        key = self._key(remote_id, version)
        if self.since is None or modified_ms > self.since:
            self.since, self.seen = modified_ms, {key}
        elif modified_ms == self.since:
            self.seen.add(key)

    def to_dict(self) -> dict[str, Any]:
        return {"since": self.since, "seen": sorted(self.seen)}

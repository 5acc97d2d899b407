"""Declared value translations between the hub's canonical values and a CRM's.

:class:`StatusMap` maps the canonical statuses to and from a CRM's status field(s); :class:`ValueMap`
maps one picklist field's values. A connector declares them (``status_map``, ``value_maps``), an
install may override the status map, and :class:`hub.connector.Connector` applies both when it
decodes and encodes records. Connectors import them from :mod:`hub.connector`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["StatusMap", "ValueMap"]


class StatusMap:
    """Canonical statuses to and from a CRM's status fields.

    ``write`` gives, per canonical status, the remote values the hub writes (one
    or more remote fields, e.g. HubSpot's ``lifecyclestage`` and
    ``hs_lead_status``). ``read`` adds remote combinations that only map inwards
    (e.g. HubSpot ``subscriber`` → Lead). Reading picks the most specific entry
    whose values all match; a value nobody maps gives ``None`` and a problem.
    """

    def __init__(self, write: Mapping[str, Mapping[str, str]],
                 read: Sequence[tuple[Mapping[str, str], str]] = ()):
        self.write = {k: dict(v) for k, v in write.items()}
        self.entries: list[tuple[dict[str, str], str]] = [(dict(v), k) for k, v in self.write.items()]
        self.entries += [(dict(v), k) for v, k in read]
        self.entries.sort(key=lambda e: -len(e[0]))
        self.fields = sorted({f for values, _ in self.entries for f in values})

    def to_canonical(self, remote: Mapping[str, Any]) -> str | None:
        for values, status in self.entries:
            if all(("" if remote.get(f) is None else str(remote.get(f))) == v for f, v in values.items()):
                return status
        return None

    def to_remote(self, status: str) -> dict[str, str]:
        try:
            return dict(self.write[status])
        except KeyError:
            raise KeyError(f"status {status!r} has no remote value in this connector's status map") from None

    def overridden(self, write: Mapping[str, Mapping[str, str]] | None) -> StatusMap:
        """A copy with an install's overrides for some canonical statuses."""
        if not write:
            return self
        merged = {**self.write, **write}
        return StatusMap(merged, [(v, k) for v, k in self.entries if self.write.get(k) != v])


class ValueMap:
    """Picklist values of one field: remote value → canonical value, and back.

    ``read`` maps each remote option to its canonical value; writing uses the
    inverse, plus ``write`` for canonical values that have no remote option of
    their own (e.g. HubSpot has no "partner" source: write ``OTHER_CAMPAIGNS``).
    A value neither knows passes through unchanged (and a CRM that refuses it
    rejects that one record, with its own message).
    """

    def __init__(self, read: Mapping[str, str], write: Mapping[str, str] | None = None):
        self.read = dict(read)
        self.write = {**{c: r for r, c in reversed(list(read.items()))}, **(write or {})}

    def to_canonical(self, value: Any) -> Any:
        return self.read.get(value, value)

    def to_remote(self, value: Any) -> Any:
        return self.write.get(value, value)

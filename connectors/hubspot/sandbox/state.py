"""The contact store's state machine: writes, archiving, the sorted ``lastmodifieddate`` index, lookups and
rendering."""

from __future__ import annotations

import bisect
from typing import Any

from .model import _ALWAYS, DEFAULT_PROPERTIES, _Contact, _Failure, _iso

__all__ = ["_State"]


class _State:
    """Mixin for :class:`HubSpotSandbox`: applies writes and archives, keeps the index and lag versions."""

    def _snapshot(self, rec: _Contact) -> None:
        if self.lag > 0 and rec.id not in self._pending:
            self._pending[rec.id] = [(rec.updated, dict(rec.props))]

    def _unindex(self, rec: _Contact) -> None:
        i = bisect.bisect_left(self._index, (rec.updated, rec.id))
        if i < len(self._index) and self._index[i] == (rec.updated, rec.id):
            del self._index[i]

    def _apply(self, rec: _Contact | None, clean: dict[str, str], now: int) -> _Contact:
        if rec is None:
            rid = self._next_id
            self._next_id += 1
            rec = self._records[rid] = _Contact(rid, {"hs_object_id": str(rid), "createdate": _iso(now)}, now, now)
            bisect.insort(self._active, rid)
            if self.lag > 0:
                self._pending[rid] = [(-1, None)]
        else:
            self._snapshot(rec)
            self._unindex(rec)
        for name, value in clean.items():
            if name in self._by:
                old = rec.props.get(name)
                if old and self._by[name].get(old) == rec.id:
                    del self._by[name][old]
                if value:
                    self._by[name][value] = rec.id
            if value == "":
                rec.props.pop(name, None)
            else:
                rec.props[name] = value
        rec.updated = now
        rec.props["lastmodifieddate"] = _iso(now)
        bisect.insort(self._index, (now, rec.id))
        if self.lag > 0:
            self._pending[rec.id].append((now, dict(rec.props)))
        return rec

    def _archive(self, rec: _Contact, now: int, listed: bool = True) -> None:
        """Take a contact out of search and the live list; ``listed=False`` (a merge) keeps it out of
        the archived list too."""
        if rec.archived_at is not None:
            return
        self._snapshot(rec)
        self._unindex(rec)
        del self._active[bisect.bisect_left(self._active, rec.id)]
        if listed:
            bisect.insort(self._archived, rec.id)
        for prop in self._uniques:
            if self._by[prop].get(rec.props.get(prop, "")) == rec.id:
                del self._by[prop][rec.props[prop]]
        rec.archived_at = now
        if self.lag > 0:
            self._pending[rec.id].append((now, None))

    def _find(self, ident: Any, id_property: str | None = None, archived: bool = False) -> _Contact | None:
        key = str(ident if ident is not None else "").strip()
        if id_property in (None, "", "hs_object_id"):
            rec = self._records.get(int(key)) if key.isdigit() else None
            while rec is not None and rec.merged_into is not None:  # a merged id reads as its survivor
                rec = self._records.get(rec.merged_into)
        elif id_property in self._by:
            rid = self._by[id_property].get(key.lower() if id_property == "email" else key)
            rec = self._records.get(rid) if rid is not None else None
        else:
            raise _Failure(400, "VALIDATION_ERROR", f"Property {id_property} is not a unique identifier property")
        return rec if rec is not None and (rec.archived_at is not None) == archived else None

    def _render(self, rec_id: int, props: dict[str, str], wanted: tuple[str, ...],
                archived_at: int | None = None) -> dict[str, Any]:
        out = {"id": str(rec_id), "properties": {k: props.get(k) for k in wanted},
               "createdAt": props["createdate"], "updatedAt": props["lastmodifieddate"],
               "archived": archived_at is not None}
        if archived_at is not None:
            out["archivedAt"] = _iso(archived_at)
        return out

    def _wanted(self, requested: Any) -> tuple[str, ...]:
        if not requested:
            return DEFAULT_PROPERTIES
        names = requested if isinstance(requested, list) else [requested]
        defs = self._properties_by_name
        return tuple(dict.fromkeys([*(n for n in names if n in defs), *_ALWAYS]))

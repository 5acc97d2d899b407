"""``POST /crm/v3/objects/contacts/search``: filters, sorting, indexing lag, and the search plans (a bisect over the
sorted ``lastmodifieddate`` index, or a full scan)."""

from __future__ import annotations

import bisect
import fnmatch
import heapq
import re
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from hub.testing.sandbox import Call, Reject

from .model import _HIGH, _instant

__all__ = ["MAX_PAGE", "SEARCH_CAP", "_Search"]

MAX_PAGE, SEARCH_CAP = 200, 10_000
_GROUPS, _PER_GROUP, _FILTERS = 5, 6, 18
_TOKEN = re.compile(r"[^\W_]+")


class _Search:
    """Mixin for :class:`HubSpotSandbox`: the search endpoint and its plans."""

    def _settle(self, now: int) -> None:
        """Forget versions superseded by a newer searchable one."""
        cut = now - int(self.lag * 1000)
        for rid, versions in list(self._pending.items()):
            if versions[-1][0] <= cut:
                del self._pending[rid]
            else:
                k = max((i for i, v in enumerate(versions) if v[0] <= cut), default=0)
                del versions[:k]

    def _visible(self, rid: int, now: int) -> tuple[int, int, dict[str, str]] | None:
        versions = self._pending.get(rid)
        if versions is None:
            rec = self._records[rid]
            return None if rec.archived_at is not None else (rec.updated, rid, rec.props)
        cut = now - int(self.lag * 1000)
        for updated, props in reversed(versions):
            if updated <= cut:
                return None if props is None else (updated, rid, props)
        return None

    def _getter(self, name: str) -> Callable[[int, int, dict[str, str]], Any]:
        typ = self._properties_by_name[name]["type"]
        if name == "lastmodifieddate":
            return lambda u, i, p: u
        if name == "createdate":
            return lambda u, i, p: self._records[i].created
        if name == "hs_object_id":
            return lambda u, i, p: i
        if typ == "number":
            return lambda u, i, p: float(p[name]) if name in p else None
        if typ in ("date", "datetime"):
            return lambda u, i, p: _instant(p[name]) if name in p else None
        return lambda u, i, p: p[name].lower() if name in p else None

    def _typed(self, name: str, value: Any) -> Any:
        typ = self._properties_by_name[name]["type"]
        try:
            if value is None:
                raise ValueError
            if typ == "number":
                return float(value)
            if typ in ("date", "datetime"):
                return _instant(value)
            return str(value).lower()
        except (TypeError, ValueError):
            raise Reject(400, f"Invalid filter value {value!r} for property {name} of type {typ}") from None

    def _predicate(self, f: Any) -> tuple[str, str, Any, Callable[..., bool]]:
        if not isinstance(f, dict) or not isinstance(f.get("propertyName"), str):
            raise Reject(400, "Invalid filter: propertyName and operator are required")
        name, op = f["propertyName"], f.get("operator")
        if name not in self._properties_by_name:
            raise Reject(400, f"Invalid filter: property {name} does not exist on object type contacts")
        get = self._getter(name)
        if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
            want = op == "HAS_PROPERTY"
            return name, op, None, lambda *r: (get(*r) is not None) == want
        if op in ("IN", "NOT_IN"):
            if not isinstance(f.get("values"), list):
                raise Reject(400, f"Invalid filter: operator {op} needs values")
            vals = {self._typed(name, v) for v in f["values"]}
            inside = op == "IN"
            return name, op, None, lambda *r: (get(*r) in vals) == inside
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):  # a token of the value, or the value; * wildcards
            match = re.compile(fnmatch.translate(str(f.get("value", "")).lower())).match
            want = op == "CONTAINS_TOKEN"

            def has(u: int, i: int, p: dict[str, str]) -> bool:
                v = p.get(name, "").lower()
                return bool(v) and (match(v) is not None or any(match(t) for t in _TOKEN.findall(v)))
            return name, op, None, lambda *r: has(*r) == want
        x = self._typed(name, f.get("value"))
        if op == "BETWEEN":
            hi = self._typed(name, f.get("highValue"))
            return name, op, (x, hi), lambda *r: (v := get(*r)) is not None and x <= v <= hi
        tests = {"EQ": lambda v: v == x, "LT": lambda v: v < x, "LTE": lambda v: v <= x,
                 "GT": lambda v: v > x, "GTE": lambda v: v >= x}
        if op == "NEQ":
            return name, op, x, lambda *r: get(*r) != x
        if op not in tests:
            raise Reject(400, f"Invalid filter operator {op!r}")
        test = tests[op]
        return name, op, x, lambda *r: (v := get(*r)) is not None and test(v)

    def _search(self, call: Call) -> Response:
        body = call.json()
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise Reject(400, "Invalid input: the search request must be a JSON object")
        limit, after = body.get("limit", 10), body.get("after") or 0
        try:
            limit, after = int(limit), int(after)
        except (TypeError, ValueError):
            raise Reject(400, f"Invalid input: limit and after must be integers (after={after!r})") from None
        if not 0 <= limit <= MAX_PAGE or after < 0:
            raise Reject(400, f"Invalid input: limit must be between 0 and {MAX_PAGE} (got {limit})")
        if after >= SEARCH_CAP or after + limit > SEARCH_CAP:
            raise Reject(400, f"Cannot page past {SEARCH_CAP} results: after={after} with limit={limit}. Narrow "
                              f"the query (e.g. by lastmodifieddate) instead.")
        groups = body.get("filterGroups") or []
        if not isinstance(groups, list) or any(not isinstance(g, dict) or not isinstance(g.get("filters"), list)
                                               for g in groups):
            raise Reject(400, "Invalid input: filterGroups must be a list of {filters: [...]}")
        counts = [len(g["filters"]) for g in groups]
        if len(groups) > _GROUPS or any(c > _PER_GROUP for c in counts) or sum(counts) > _FILTERS:
            raise Reject(400, f"Too many filters: at most {_GROUPS} filterGroups, {_PER_GROUP} filters per group "
                              f"and {_FILTERS} filters in total (got {counts})")
        compiled = [[self._predicate(f) for f in g["filters"]] for g in groups]
        sort = self._sort(body.get("sorts") or [])
        wanted = self._wanted(body.get("properties"))
        query = str(body.get("query") or "").strip().lower()
        now = self.clock.now_ms()
        self._settle(now)
        plan = self._range_plan(compiled, sort) if not query else None
        total, rows = self._range(*plan, after, limit, now) if plan else self._scan(compiled, sort, query, after,
                                                                                   limit, now)
        out: dict[str, Any] = {"total": total, "results": [self._render(i, p, wanted) for _, i, p in rows]}
        if after + limit < total and limit:
            out["paging"] = {"next": {"after": str(after + limit)}}
        return self.json(out)

    def _sort(self, sorts: Any) -> tuple[str, bool] | None:
        if not isinstance(sorts, list) or len(sorts) > 1:
            raise Reject(400, "Invalid input: at most one sort is supported")
        if not sorts:
            return None
        s = sorts[0]
        if isinstance(s, str):  # legacy form: "prop" or "-prop"
            name, desc = s.lstrip("-"), s.startswith("-")
        elif isinstance(s, dict) and isinstance(s.get("propertyName"), str):
            name, desc = s["propertyName"], str(s.get("direction", "ASCENDING")).upper() == "DESCENDING"
        else:
            raise Reject(400, "Invalid sort: expected {propertyName, direction}")
        if name not in self._properties_by_name:
            raise Reject(400, f"Invalid sort: property {name} does not exist on object type contacts")
        return name, desc

    @staticmethod
    def _range_plan(groups: list[list[tuple[str, str, Any, Callable[..., bool]]]],
                    sort: tuple[str, bool] | None) -> tuple[int, int, list[Callable[..., bool]]] | None:
        """For ``lastmodifieddate`` ranges sorted ascending: (lo, hi, other predicates), else None."""
        if sort != ("lastmodifieddate", False) or len(groups) > 1:
            return None
        lo, hi, rest = -_HIGH, _HIGH, []
        for name, op, x, pred in groups[0] if groups else []:
            if name != "lastmodifieddate" or op not in ("EQ", "GT", "GTE", "LT", "LTE", "BETWEEN"):
                rest.append(pred)
            elif op == "BETWEEN":
                lo, hi = max(lo, x[0]), min(hi, x[1])
            else:
                lo = max(lo, x + (op == "GT")) if op in ("EQ", "GT", "GTE") else lo
                hi = min(hi, x - (op == "LT")) if op in ("EQ", "LT", "LTE") else hi
        return lo, hi, rest

    def _range(self, lo: int, hi: int, rest: list[Callable[..., bool]], after: int, limit: int,
               now: int) -> tuple[int, list[tuple[int, int, dict[str, str]]]]:
        """The sorted index sliced by bisect: O(log n + page) for a plain date window."""
        idx, recs, pending = self._index, self._records, self._pending
        i0 = bisect.bisect_left(idx, (lo, 0))
        i1 = max(i0, bisect.bisect_right(idx, (hi, _HIGH)))
        if not pending and not rest:
            return i1 - i0, [(u, i, recs[i].props) for u, i in idx[i0 + after:min(i1, i0 + after + limit)]]
        extras = sorted(v for rid in pending if (v := self._visible(rid, now)) and lo <= v[0] <= hi)
        merged = heapq.merge(((u, i, recs[i].props) for u, i in (idx[k] for k in range(i0, i1))
                              if i not in pending), extras)
        if not rest:
            stale = sum(1 for rid in pending if recs[rid].archived_at is None and lo <= recs[rid].updated <= hi)
            rows = [row for k, row in zip(range(after + limit), merged) if k >= after]
            return i1 - i0 - stale + len(extras), rows
        total, rows = 0, []
        for row in merged:
            if all(p(*row) for p in rest):
                if after <= total < after + limit:
                    rows.append(row)
                total += 1
        return total, rows

    def _scan(self, groups: list[list[tuple[str, str, Any, Callable[..., bool]]]], sort: tuple[str, bool] | None,
              query: str, after: int, limit: int, now: int) -> tuple[int, list[tuple[int, int, dict[str, str]]]]:
        """Any other search: a full scan of the searchable versions."""
        ids = sorted(set(self._active) | set(self._pending)) if self._pending else self._active
        rows = []
        for rid in ids:
            row = self._visible(rid, now)
            if row is None or (groups and not any(all(f[3](*row) for f in g) for g in groups)):
                continue
            if query and not any(query in row[2].get(k, "").lower()
                                 for k in ("firstname", "lastname", "email", "phone", "company")):
                continue
            rows.append(row)
        if sort:
            get = self._getter(sort[0])
            keyed = [(get(*row), row) for row in rows]
            present = [kr for kr in keyed if kr[0] is not None]
            present.sort(key=lambda kr: kr[0], reverse=sort[1])  # stable: ties stay in id order
            rows = [row for _, row in present] + [row for key, row in keyed if key is None]
        return len(rows), rows[after:after + limit]

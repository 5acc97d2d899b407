"""The Dataverse Web API routes of the sandbox: queries, change tracking, paging, UpsertMultiple.

* ``GET /api/data/v9.2/{set}?$select=&$filter=`` with ``Prefer: odata.maxpagesize=N`` (default
  and maximum 5,000) pages through ``@odata.nextLink`` (``$skiptoken`` holding a paging cookie
  that stays valid); ``$filter`` knows ``col eq literal`` joined by ``and`` and
  ``Microsoft.Dynamics.CRM.In(PropertyName='col',PropertyValues=[…])``.
* ``Prefer: odata.track-changes`` (``$filter``/``$orderby``/``$expand``/``$top`` refused, as in
  Dataverse) returns every live row, oldest row version first, and an ``@odata.deltaLink`` on the
  last page; GETting it returns rows changed since (then ``$deletedEntity`` entries). A snapshot
  or delta is pinned to the row version at its first page, so rows changed while it pages come in
  the next delta instead of being lost or repeated. A delta token older than
  ``expire_days`` answers 410 with ``0x80044352`` (the HTTP status is the sandbox's choice; the
  code and message are Dataverse's ExpiredVersionStamp).
* ``GET /api/data/v9.2/{set}({id})`` and ``({key}='value')`` retrieve one row.
* ``POST …/{leads|tasks}/Microsoft.Dynamics.CRM.UpsertMultiple`` (and ``UpdateMultiple``, which never
  creates: a missing row is ``0x80040217``; closing tasks by ``statecode``/``statuscode`` is one) with
  ``{"Targets": […]}``: each target needs
  ``@odata.type``; ``@odata.id`` (or the ``leadid`` column) names the row by primary key or
  alternate key; owners are bound with ``ownerid@odata.bind``. All or nothing: the first invalid
  target fails the whole call with its error (400 for every in-bulk error: the status Dataverse
  gives a missing row inside a bulk call is the sandbox's choice); success is ``204 No Content``
  with no ids, as documented.

Error codes and messages are Dataverse's where known (see :mod:`.tables`); the wording of the
sandbox's own refusals (a missing ``Targets`` or ``@odata.type``, an unemulated ``$filter``) is
the sandbox's, under the generic ``0x80040203`` (invalid argument) or ``0x0``.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from starlette.responses import Response

from hub.testing.sandbox import Call

from .tables import DataverseError, Table

__all__ = ["MAX_PAGE", "WebApi"]

MAX_PAGE = 5000
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_IN = re.compile(r"^Microsoft\.Dynamics\.CRM\.In\(PropertyName='(\w+)',PropertyValues=\[(.*)\]\)$")
_EQ = re.compile(r"^(\w+) eq (.+)$")
_KEY = re.compile(r"^(\w+)\((.+)\)$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TOKEN = re.compile(r"^(\d+)!(\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2})$")
_UNSUPPORTED = ("$filter", "$orderby", "$expand", "$top")


def _literal(text: str) -> Any:
    text = text.strip()
    if text.startswith("'") and text.endswith("'"):
        text = text[1:-1].replace("''", "'")
        return text.lower() if _GUID.match(text) else text
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if _GUID.match(text):
        return text.lower()
    try:
        return int(text)
    except ValueError:
        return float(text)


def _token_time(t: int) -> str:
    return time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime(t))


class WebApi:
    """Mixin for :class:`DynamicsSandbox`: everything under ``/api/data/v9.2/``."""

    tables: dict[str, Table]
    expire_days: float
    tls: bool
    clock: Any

    def webapi_routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/api/data/{version}/{segment}", self._get),
                ("POST", "/api/data/{version}/{segment}/{action}", self._action)]

    # -- helpers -------------------------------------------------------------------------
    def _base(self, call: Call) -> str:
        return f"{'https' if self.tls else 'http'}://{call.headers.get('host', 'localhost')}/api/data/" \
               f"{call.params['version']}"

    def _entity_set(self, call: Call, name: str) -> Table:
        if call.params["version"] not in ("v9.0", "v9.1", "v9.2"):
            raise DataverseError(404, "0x80060888",
                                 f"Resource not found for the segment '{call.params['version']}'.")
        table = self.tables.get(name)
        if table is None:
            raise DataverseError(404, "0x80060888", f"Resource not found for the segment '{name}'.")
        return table

    @staticmethod
    def _prefer(call: Call) -> tuple[bool, int]:
        track, size = False, MAX_PAGE
        for part in call.headers.get("prefer", "").split(","):
            part = part.strip()
            if part == "odata.track-changes":
                track = True
            elif part.startswith("odata.maxpagesize="):
                try:
                    size = max(1, min(MAX_PAGE, int(part.split("=", 1)[1])))
                except ValueError:
                    raise DataverseError(400, "0x0", f"Invalid Prefer header value: {part}") from None
        return track, size

    @staticmethod
    def _select(table: Table, call: Call) -> list[str]:
        raw = call.query.get("$select")
        names = [n.strip() for n in raw.split(",") if n.strip()] if raw else list(table.columns)
        for n in names:
            table.column(n)
        return names

    @staticmethod
    def _render(table: Table, row: dict[str, Any], names: list[str]) -> dict[str, Any]:
        out = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
        out.update({n: row.get(n) for n in names})
        out[table.key] = row[table.key]
        return out

    @staticmethod
    def _filter(table: Table, raw: str | None) -> Any:
        """A row predicate for ``$filter``: ``col eq literal`` and ``In(…)`` clauses joined by ``and``."""
        tests: list[tuple[str, set[Any]]] = []  # (column, accepted values)
        for clause in re.split(r"\s+and\s+", (raw or "").strip()) if raw else []:
            m = _IN.match(clause.strip())
            if m:
                name = m.group(1)
                col = f"_{name}_value" if f"_{name}_value" in table.columns else name
                values = {_literal(v) for v in re.findall(r"'(?:[^']|'')*'|[^,\s]+", m.group(2))}
            elif (m := _EQ.match(clause.strip())) is not None:
                col, values = m.group(1), {_literal(m.group(2))}
            else:
                raise DataverseError(400, "0x0", f"The sandbox does not emulate this $filter: {clause}")
            table.column(col)
            tests.append((col, values))
        return lambda row: all(row.get(col) in values for col, values in tests)

    @staticmethod
    def _cookie(token: str | None) -> dict[str, str]:
        if not token:
            return {}
        outer = dict(_ATTR.findall(unquote(token)))
        inner = dict(_ATTR.findall(unquote(outer.get("pagingcookie", ""))))
        if not inner:
            raise DataverseError(400, "0x80040203", "Invalid paging cookie in $skiptoken.")
        return inner

    def _link(self, call: Call, table: Table, names: list[str], **params: str) -> str:
        query = [f"$select={','.join(names)}"]
        if call.query.get("$filter") and "$deltatoken" not in params:
            query.append(f"$filter={quote(call.query['$filter'], safe='')}")
        query += [f"{k}={quote(v, safe='')}" for k, v in params.items()]
        return f"{self._base(call)}/{table.entity_set}?{'&'.join(query)}"

    @staticmethod
    def _answer(payload: dict[str, Any], applied: list[str]) -> Response:
        headers = {"OData-Version": "4.0", **({"Preference-Applied": ",".join(applied)} if applied else {})}
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return Response(body, 200, headers, media_type="application/json; odata.metadata=minimal")

    # -- GET -----------------------------------------------------------------------------
    def _get(self, call: Call) -> Response:
        segment = call.params["segment"]
        m = _KEY.match(segment)
        if m:
            return self._retrieve(call, self._entity_set(call, m.group(1)), m.group(2))
        table = self._entity_set(call, segment)
        names = self._select(table, call)
        track, size = self._prefer(call)
        cookie = self._cookie(call.query.get("$skiptoken"))
        delta = call.query.get("$deltatoken")
        if delta is not None or cookie.get("mode") in ("snapshot", "delta") or track:
            return self._changes(call, table, names, size, cookie, delta)
        keep = self._filter(table, call.query.get("$filter"))
        last = cookie.get("last", "")
        top = int(call.query["$top"]) if call.query.get("$top", "").isdigit() else None
        ids = sorted(rid for rid, row in table.rows.items() if rid > last and keep(row))
        page = ids[:min(size, top) if top else size]
        out: dict[str, Any] = {"@odata.context": self._context(call, table, names),
                               "value": [self._render(table, table.rows[r], names) for r in page]}
        if len(ids) > len(page) and top is None:
            number = int(cookie.get("page", "1")) + 1
            out["@odata.nextLink"] = self._link(call, table, names, **{"$skiptoken": self._skiptoken(
                number, f'<cookie page="{number - 1}" last="{page[-1]}" />', False)})
        asked = "maxpagesize" in call.headers.get("prefer", "")
        return self._answer(out, [f"odata.maxpagesize={size}"] if asked else [])

    @staticmethod
    def _skiptoken(number: int, inner: str, tracking: bool) -> str:
        return f'<cookie pagenumber="{number}" pagingcookie="{quote(quote(inner, safe=""), safe="")}" ' \
               f'istracking="{tracking}" />'

    @staticmethod
    def _alternate(table: Table, key: str) -> tuple[str, Any]:
        """``name='value'`` of an alternate key, checked to be one of the table's."""
        name, _, raw = key.partition("=")
        if name.strip() not in table.alternate_keys:
            raise DataverseError(400, "0x80060888",
                                 f"Invalid key: '{name.strip()}' is not an alternate key of {table.logical}.")
        return name.strip(), _literal(raw)

    def _context(self, call: Call, table: Table, names: list[str]) -> str:
        return f"{self._base(call)}/$metadata#{table.entity_set}({','.join(names)})"

    def _retrieve(self, call: Call, table: Table, key: str) -> Response:
        if "=" in key:
            name, value = self._alternate(table, key)
            row = table.find(**{name: value})
        else:
            row = table.find(key.strip("{}"))
        if row is None:
            raise DataverseError(404, "0x80040217", f"{table.logical} With Id = {key} Does Not Exist")
        names = self._select(table, call)
        body = {"@odata.context": self._context(call, table, names) + "/$entity",
                **self._render(table, row, names)}
        return self._answer(body, [])

    def _changes(self, call: Call, table: Table, names: list[str], size: int, cookie: dict[str, str],
                 delta: str | None) -> Response:
        for option in _UNSUPPORTED:
            if call.query.get(option) is not None:
                raise DataverseError(400, "0x0", f'The "{option}" query parameter isn\'t supported when '
                                                 "Change Tracking is enabled.")
        now = int(self.clock.now().timestamp())
        if delta is not None:
            m = _TOKEN.match(unquote(delta))
            if not m:
                raise DataverseError(400, "0x80044352", "Invalid delta token.")
            issued = int(datetime.strptime(m.group(2), "%m/%d/%Y %H:%M:%S").replace(tzinfo=UTC).timestamp())
            cookie = {"mode": "delta", "after": m.group(1), "cap": str(table.versions.current), "t": str(now),
                      "since": str(issued), "phase": "live", "last": "0", "page": "0"}
        elif not cookie:
            cookie = {"mode": "snapshot", "after": "0", "cap": str(table.versions.current), "t": str(now),
                      "since": str(now), "phase": "live", "last": "0", "page": "0"}
        if cookie["mode"] == "delta" and now - int(cookie["since"]) > self.expire_days * 86_400:
            raise DataverseError(410, "0x80044352", "Version stamp associated with the client has expired. "
                                                    "Please perform a full sync.")
        after, cap, last = int(cookie["after"]), int(cookie["cap"]), int(cookie["last"])
        items: list[dict[str, Any]] = []
        phase = cookie["phase"]
        if phase == "live":
            for row in table.changed(after, cap, last):
                if len(items) == size:
                    break
                items.append(self._render(table, row, names))
                last = row["versionnumber"]
            else:
                phase, last = ("deleted", 0) if cookie["mode"] == "delta" else ("done", last)
        if phase == "deleted":
            context = f"{self._base(call)}/$metadata#{table.entity_set}/$deletedEntity"
            for version, rid in table.deleted(after, cap, last):
                if len(items) == size:
                    break
                items.append({"@odata.context": context, "id": rid, "reason": "deleted"})
                last = version
            else:
                phase = "done"
        suffix = "/$delta" if cookie["mode"] == "delta" else ""
        out: dict[str, Any] = {
            "@odata.context": self._context(call, table, names) + suffix,
            "value": items}
        if phase == "done":
            out["@odata.deltaLink"] = self._link(call, table, names,
                                                 **{"$deltatoken": f"{cap}!{_token_time(int(cookie['t']))}"})
        else:
            number = int(cookie["page"]) + 1
            inner = " ".join(f'{k}="{v}"' for k, v in {**cookie, "phase": phase, "last": str(last),
                                                        "page": str(number)}.items())
            out["@odata.nextLink"] = self._link(call, table, names, **{"$skiptoken": self._skiptoken(
                number + 1, f"<cookie {inner} />", True)})
        return self._answer(out, ["odata.track-changes", f"odata.maxpagesize={size}"])

    # -- POST: bound actions ---------------------------------------------------------------
    def _action(self, call: Call) -> Response:
        table = self._entity_set(call, call.params["segment"])
        action = call.params["action"].removeprefix("Microsoft.Dynamics.CRM.")
        if action not in ("UpsertMultiple", "UpdateMultiple") or table.entity_set not in ("leads", "tasks"):
            raise DataverseError(404, "0x80060888",
                                 f"Resource not found for the segment '{call.params['action']}'.")
        body = call.json()
        targets = body.get("Targets") if isinstance(body, dict) else None
        if not isinstance(targets, list) or not targets:
            raise DataverseError(400, "0x80040203", "Required field 'Targets' is missing or empty.")
        now = self.clock.now()
        plans = [self._plan(table, t, action == "UpsertMultiple") for t in targets]  # all checked first
        for rid, clean in plans:
            self.write_row(table, rid, clean, now)  # type: ignore[attr-defined]
        return Response(status_code=204, headers={"OData-Version": "4.0"})

    def _plan(self, table: Table, target: Any, upsert: bool) -> tuple[str | None, dict[str, Any]]:
        kind = f"Microsoft.Dynamics.CRM.{table.logical}"
        if not isinstance(target, dict) or target.get("@odata.type") != kind:
            raise DataverseError(400, "0x80040203", f"Every item in Targets must be a {kind} with its "
                                                    "@odata.type annotation set.")
        values: dict[str, Any] = {}
        for name, value in target.items():
            if name.endswith("@odata.bind"):
                values.update(self._bind(table, name[:-len("@odata.bind")], value))
            elif name.startswith("_"):
                raise DataverseError(400, "0x80060888", f"Could not find a property named '{name}' on type "
                                                        f"'Microsoft.Dynamics.CRM.{table.logical}'.")
            elif not name.startswith("@"):
                values[name] = value
        rid, row = values.pop(table.key, None), None
        ref = target.get("@odata.id")
        if ref:
            m = _KEY.match(str(ref).rsplit("/", 1)[-1])
            if not m or m.group(1) != table.entity_set:
                raise DataverseError(400, "0x80060888", f"Invalid @odata.id: {ref}")
            key = m.group(2)
            if "=" in key:
                name, literal = self._alternate(table, key)
                if values.get(name, literal) != literal:
                    raise DataverseError(400, "0x80060888", f"The value of '{name}' in the payload does not "
                                                            "match the key in @odata.id.")
                values[name] = literal
                row = table.find(**{name: literal})
            else:
                rid = key.strip("{}").lower()
        if row is None and rid:
            row = table.find(rid)
        if row is None and not upsert:  # UpdateMultiple never creates
            raise DataverseError(400, "0x80040217", f"{table.logical} With Id = {rid or ref} Does Not Exist")
        rid = row[table.key] if row else rid
        return rid, table.check(values, row, rid or "(new)")

    def _bind(self, table: Table, prop: str, ref: Any) -> dict[str, Any]:
        """``ownerid`` (a systemuser), and a task's ``regardingobjectid_lead_task`` (a lead)."""
        column, target = {"ownerid": ("_ownerid_value", "systemusers"),
                          "regardingobjectid_lead_task": ("_regardingobjectid_value", "leads")}.get(prop, ("", ""))
        if not column or (target == "leads" and table.entity_set != "tasks"):
            raise DataverseError(400, "0x80060888", f"Could not find a property named '{prop}' on type "
                                                    f"'Microsoft.Dynamics.CRM.{table.logical}'.")
        m = _KEY.match(str(ref or "").strip("/"))
        found = self.tables[target]
        if not m or m.group(1) != target or found.find(m.group(2)) is None:
            missing = m.group(2) if m else ref
            raise DataverseError(400, "0x80040217", f"{found.logical} With Id = {missing} Does Not Exist")
        return {column: m.group(2).lower()}

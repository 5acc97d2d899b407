"""A stateful fake of monday.com's GraphQL API (``POST /v2``), served on loopback.

It is a real GraphQL server (graphql-core, schema in :mod:`.schema`) for the
subset a lead sync uses: ``boards(ids:) { columns { id title type settings_str }
items_page(limit, query_params) { cursor items {…} } }``, root
``next_items_page(cursor, limit)``, ``complexity``, ``users``, and the
``create_item`` / ``change_multiple_column_values`` / ``delete_item`` /
``archive_item`` mutations, any number of them aliased in one request.

What it emulates:

* ``Authorization: <token>`` (bare, as monday's SDKs send it; ``Bearer`` also
  accepted), else 401; ``API-Version`` read per request.
* ``items_page``: ≤ 500 per page, rules (``any_of``/``not_any_of``/``is_empty``
  on columns, status rules by label *index*, and ``__last_updated__`` with
  ``compare_attribute: "UPDATED_AT"``, ``compare_value: ["EXACT", iso]``),
  ``order_by`` ``__last_updated__``/``__creation_log__``, ``ids``. The cursor
  names a result set stored server-side (the matching ids at query time; item
  data is read fresh on every page, so an item edited mid-pull keeps its old
  place); it expires after 60 minutes (``CursorExpiredError``).
* Column values stored and returned as monday does (``value`` is a JSON string,
  ``text`` derived), and validated per column type on write
  (``ColumnValueException``, per alias: the other mutations in the request apply).
* ``updated_at`` in whole seconds (``2026-01-15T10:00:00Z``), stamped once per
  request, so every item one request writes shares one timestamp.
* Complexity (:mod:`.complexity`): a ``complexity_limit`` budget per minute
  (10,000,000: personal tokens), ``COMPLEXITY_BUDGET_EXHAUSTED`` with
  ``retry_in_seconds`` (body per ``API-Version``: 2025-07 dropped the budget
  fields), answered with ``complexity_status`` (429 + ``Retry-After``, the
  ≥ 2025-01 behaviour; 200 reproduces a GraphQL-style error in a 200 answer);
  over 5,000,000 points in one request: ``REQUEST_MAX_COMPLEXITY_EXCEEDED``.
* A minute request limit (``rate``; 5,000/min is the documented per-IP limit):
  429, ``Retry-After`` and ``RATE_LIMIT_EXCEEDED``.

Not emulated: the daily call limit, concurrency limits, activity logs, webhooks,
subitems, groups beyond one per board, files, and every column type other than
name/text/long_text/email/phone/status/dropdown/people/numbers/date.

Two boards exist from the start: ``Leads`` (:attr:`leads_board_id`) and
``Client onboarding`` (:attr:`delivery_board_id`), with the columns in
:data:`LEADS_COLUMNS` / :data:`DELIVERY_COLUMNS`.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Iterable
from typing import Any

from graphql import GraphQLError, execute, get_operation_ast, parse, validate
from starlette.responses import Response

from hub.testing import fakedata
from hub.testing.sandbox import Call, Reject, Sandbox

from .complexity import MAX_PER_QUERY, Budget, Charge, cost
from .schema import SCHEMA
from .state import Account, Board, iso
from .values import Column, is_email

__all__ = ["MondaySandbox", "LEADS_COLUMNS", "DELIVERY_COLUMNS", "STATUS_LABELS", "SOURCE_LABELS"]

CURRENT_VERSION = "2025-10"
STATUS_LABELS = {"Lead": "New Lead", "MQL": "Marketing Qualified", "SAL": "Sales Accepted",
                 "SQL": "Sales Qualified", "Opportunity": "Opportunity", "Negotiation": "Negotiation",
                 "Closed Won": "Won", "Closed Lost": "Lost", "Nurture": "Nurture"}
SOURCE_LABELS = {"paid": "Paid", "organic": "Organic", "referral": "Referral", "partner": "Partner",
                 "event": "Event", "self-serve": "Website", "outbound": "Outbound", "social": "Social",
                 "email": "Email"}
_STATUS_SETTINGS = {"0": "New Lead", "1": "Marketing Qualified", "2": "Sales Accepted", "3": "Sales Qualified",
                    "4": "Opportunity", "6": "Negotiation", "7": "Won", "8": "Lost", "9": "Nurture",
                    "10": "Attempted to contact", "11": "Contacted"}
#: (column id, title, type, settings) of the Leads board; "name" is the item name
LEADS_COLUMNS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("name", "Name", "name", {}),
    ("status", "Status", "status", {"done_colors": [1], "labels": _STATUS_SETTINGS}),
    ("person", "Owner", "people", {}),
    ("email_mkq1a2b3", "Email", "email", {}),
    ("phone_mkq1c4d5", "Phone", "phone", {}),
    ("text_mkq1e6f7", "Company", "text", {}),
    ("text_mkq1g8h9", "Job title", "text", {}),
    ("text_mkq1j0k1", "Country", "text", {}),
    ("dropdown_mkq1l2m3", "Source", "dropdown",
     {"labels": [{"id": i + 1, "name": n} for i, n in enumerate(SOURCE_LABELS.values())]}),
    ("numeric_mkq1n4p5", "Deal value", "numbers", {"unit": {"symbol": "€", "direction": "left"}}),
    ("date_mkq1q6r7", "Expected close", "date", {}),
    ("text_mkq1s8t9", "Loss reason", "text", {}),
    ("text_mkq1u0v1", "LeadHub ID", "text", {}),
    ("long_text_mkq1w2x3", "Notes", "long_text", {}),
)
DELIVERY_COLUMNS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("name", "Name", "name", {}),
    ("status", "Status", "status", {"labels": {"0": "Kickoff", "1": "Working on it", "2": "Done", "3": "Stuck"}}),
    ("person", "Owner", "people", {}),
    ("numeric_mkd1a2b3", "Deal value", "numbers", {}),
    ("text_mkd1c4d5", "LeadHub ID", "text", {}),
    ("date_mkd1e6f7", "Kickoff date", "date", {}),
)
_KIT = {"email": "Email", "phone": "Phone", "company": "Company", "title": "Job title", "country": "Country",
        "source": "Source", "status": "Status", "owner": "Owner", "value": "Deal value",
        "expected_close": "Expected close", "loss_reason": "Loss reason", "hub_id": "LeadHub ID"}


class MondaySandbox(Sandbox):
    """monday.com's GraphQL API as a stateful fake. See the module docstring.

    ``rate``: requests per minute per token (None: unlimited). ``complexity_limit``:
    points per minute (None: unlimited). ``complexity_status``: the HTTP status
    of a ``COMPLEXITY_BUDGET_EXHAUSTED`` answer (429, or 200).
    """

    def __init__(self, token: str = "sandbox-token", rate: int | None = 5000,
                 complexity_limit: int | None = 10_000_000, complexity_status: int = 429):
        super().__init__()
        self.token, self.rate, self.complexity_status = token, rate, complexity_status
        self.account = Account()
        self.account_id = 21_000_001
        self.budget = Budget(complexity_limit, self.clock.monotonic) if complexity_limit else None
        self.leads_board_id = self.add_board(1_900_000_001, "Leads", LEADS_COLUMNS).id
        self.delivery_board_id = self.add_board(1_900_000_002, "Client onboarding", DELIVERY_COLUMNS).id
        self.add_users(fakedata.team(0))

    # -- serving -----------------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Any]]:
        return [("POST", "/v2", self.graphql)]

    def error(self, status: int, message: str, **extra: Any) -> Response:
        code = extra.pop("code", {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 404: "NOT_FOUND"}.get(
            status, "INTERNAL_SERVER_ERROR" if status >= 500 else "ERROR"))
        headers = extra.pop("headers", None)
        return self._answer({"errors": [{"message": message, "extensions": {"code": code, **extra}}]}, status,
                            headers)

    def _answer(self, body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
        body["extensions"] = {**body.get("extensions", {}), "request_id": str(uuid.uuid4())}
        body["account_id"] = self.account_id
        return self.json(body, status, headers)

    def admit(self, call: Call) -> Response | None:
        token = call.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not token or token != self.token:
            return self.error(401, "Not Authenticated")
        call.context.update(token=token, version=call.headers.get("api-version") or CURRENT_VERSION)
        if self.rate:
            verdict = self.window("minute", token, self.rate, 60.0).hit()
            if not verdict.allowed:
                wait = max(1, math.ceil(verdict.reset))
                return self.error(429, "Rate Limit Exceeded", code="RATE_LIMIT_EXCEEDED", retry_in_seconds=wait,
                                  headers={"Retry-After": str(wait)})
        return None

    def graphql(self, call: Call) -> Response:
        payload = call.json()
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            raise Reject(400, "No query string was present")
        variables = payload.get("variables") or {}
        if isinstance(variables, str):
            variables = json.loads(variables or "{}")
        try:
            doc = parse(payload["query"])
        except GraphQLError as exc:
            return self._answer({"errors": [_formatted(exc, "PARSE_ERROR")]})
        problems = validate(SCHEMA, doc)
        operation = get_operation_ast(doc, payload.get("operationName"))
        if problems or operation is None:
            errors = [_formatted(e, "GRAPHQL_VALIDATION_FAILED") for e in problems]
            return self._answer({"errors": errors or [{"message": "No operation to run",
                                                       "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]})
        points = cost(doc, operation, variables)
        if points > MAX_PER_QUERY:
            return self._answer({"errors": [{"message": "Max allowed complexity per request exceeded",
                                             "extensions": {"code": "REQUEST_MAX_COMPLEXITY_EXCEEDED",
                                                            "cost": points,
                                                            "max_complexity_per_request": MAX_PER_QUERY}}]})
        charge = self.budget.charge(call.context["token"], points) if self.budget else \
            Charge(True, 10**12, 10**12 - points, points, 60)
        if not charge.ok:
            return self._exhausted(charge, call.context["version"])
        context = {"account": self.account, "now": int(self.clock.now().timestamp()),
                   "monotonic": self.clock.monotonic(), "charge": charge}
        result = execute(SCHEMA, doc, variable_values=variables, operation_name=payload.get("operationName"),
                         context_value=context)
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [_formatted(e, "INTERNAL_SERVER_ERROR" if e.original_error else "INVALID_ARGUMENT")
                              for e in result.errors]
        return self._answer(body)

    def _exhausted(self, charge: Charge, version: str) -> Response:
        ext: dict[str, Any] = {"code": "COMPLEXITY_BUDGET_EXHAUSTED", "retry_in_seconds": charge.reset_in}
        if version < "2025-07":
            ext.update(complexity=charge.query, complexity_budget_left=charge.before,
                       complexity_budget_limit=self.budget.limit if self.budget else 0, status_code=429)
        headers = {"Retry-After": str(charge.reset_in)} if self.complexity_status == 429 else None
        return self._answer({"errors": [{"message": "Complexity budget exhausted", "extensions": ext}]},
                            self.complexity_status, headers)

    def reset_log(self) -> None:
        super().reset_log()
        if self.budget:
            self.budget.clear()

    # -- test and seeding API ------------------------------------------------------------
    def add_board(self, board_id: int, name: str, columns: Iterable[tuple[str, str, str, dict[str, Any]]]) -> Board:
        with self.lock:
            cols = [Column(cid, title, ctype, json.loads(json.dumps(settings)))
                    for cid, title, ctype, settings in columns]
            board = Board(board_id, name, cols, [{"id": "topics", "title": "Group Title"}])
            self.account.boards[board_id] = board
            return board

    def add_users(self, members: Iterable[dict[str, str]]) -> list[dict[str, Any]]:
        """Add users (``fakedata.team`` members); a known email is not added twice."""
        with self.lock:
            return [self.account.add_user(m["email"], f"{m['first_name']} {m['last_name']}") for m in members]

    def seed(self, n: int, seed: int = 0, *, days: float = 365.0) -> list[str]:
        """Add ``n`` fakedata people as items on the Leads board, created and updated over the past ``days``."""
        people = fakedata.people(n, seed)
        self.add_users(fakedata.team(seed))
        rng = random.Random(f"monday:{seed}")
        with self.lock:
            board = self.account.boards[self.leads_board_id]
            now = int(self.clock.now().timestamp())
            span, ids = int(days * 86_400), []
            for person in people:
                fields = {k: person.get(k) for k in (*_KIT, "first_name", "last_name")}
                if fields["email"] and not is_email(fields["email"]):
                    fields["email"] = None  # monday's email column would have refused it
                created = now - 3600 - int(rng.random() * span)
                item = self.account.create(board, _name(fields) or "Unnamed lead", self._wire(board, fields), created)
                item.updated = created + int(rng.random() * (now - 60 - created))
                ids.append(str(item.id))
            return ids

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "token": self.token, "board_id": str(self.leads_board_id)}

    def remote_create(self, fields: dict[str, Any], board_id: int | None = None) -> str:
        with self.lock:
            board = self.account.boards[board_id or self.leads_board_id]
            item = self.account.create(board, _name(fields) or "New lead", self._wire(board, fields), self._now())
            return str(item.id)

    def remote_update(self, remote_id: str, fields: dict[str, Any]) -> None:
        with self.lock:
            item = self.account.items[int(remote_id)]
            board = self.account.boards[item.board_id]
            values = self._wire(board, fields)
            if {"first_name", "last_name"} & set(fields):
                parts = _split(item.name)
                values["name"] = _name({**parts, **fields}) or item.name
            self.account.change(board, item, values, self._now())

    def remote_delete(self, remote_id: str) -> None:
        with self.lock:
            item = self.account.items[int(remote_id)]
            item.state, item.updated = "deleted", self._now()

    def remote_get(self, remote_id: str) -> dict[str, Any] | None:
        with self.lock:
            item = self.account.items.get(int(remote_id))
            if item is None or item.state != "active":
                return None
            board = self.account.boards[item.board_id]
            by_title = {c.title: c for c in board.columns}
            out: dict[str, Any] = dict(_split(item.name))
            statuses = {v: k for k, v in STATUS_LABELS.items()} | {"Attempted to contact": "SAL", "Contacted": "SAL"}
            sources = {v: k for k, v in SOURCE_LABELS.items()}
            for canon, title in _KIT.items():
                col = by_title.get(title)
                value = item.values.get(col.id) if col else None
                text = self.account.text(col, value) if col and value is not None else None
                if canon == "owner" and value:
                    text = self.account.users[value["personsAndTeams"][0]["id"]]["email"]
                elif canon == "status":
                    text = statuses.get(text or "", text)
                elif canon == "source":
                    text = sources.get(text or "", text)
                out[canon] = text or None
            return out

    def remote_status_values(self) -> list[dict[str, str]]:
        """Every label the Leads board's Status column can hold (and blank), keyed by the column's title."""
        with self.lock:
            board = self.account.boards[self.leads_board_id]
            col = next(c for c in board.columns if c.title == "Status")
            return [{"Status": label} for label in ["", *col.labels().values()]]

    def invalid_fields(self) -> dict[str, Any]:
        """Fields monday refuses: the email column takes only addresses."""
        return {"email": "not-an-email@"}

    def remote_ids(self) -> list[str]:
        with self.lock:
            return [str(i.id) for i in self.account.boards[self.leads_board_id].active()]

    def items(self, board_id: int | None = None) -> list[dict[str, Any]]:
        """Every active item of a board as ``{"id", "name", "updated_at", <column title>: text}``."""
        with self.lock:
            board = self.account.boards[board_id or self.leads_board_id]
            return [{"id": str(i.id), "name": i.name, "updated_at": iso(i.updated),
                     **{c.title: self.account.text(c, i.values.get(c.id)) for c in board.columns if c.type != "name"}}
                    for i in sorted(board.active(), key=lambda i: i.id)]

    def _now(self) -> int:
        return int(self.clock.now().timestamp())

    def _wire(self, board: Board, fields: dict[str, Any]) -> dict[str, Any]:
        """Canonical kit fields → the column_values JSON monday takes (as a user's edit would set them)."""
        by_title = {c.title: c for c in board.columns}
        users = {u["email"]: u["id"] for u in self.account.users.values()}
        out: dict[str, Any] = {}
        for canon, value in fields.items():
            col = by_title.get(_KIT.get(canon, ""))
            if col is None:
                continue
            if value in (None, ""):
                out[col.id] = ""
            elif col.type == "email":
                out[col.id] = {"email": value, "text": value}
            elif col.type == "phone":
                out[col.id] = {"phone": value, "countryShortName": fields.get("country")}
            elif col.type == "status":
                out[col.id] = {"label": STATUS_LABELS.get(value, value)}
            elif col.type == "dropdown":
                out[col.id] = {"labels": [SOURCE_LABELS.get(value, value)]}
            elif col.type == "people":
                out[col.id] = {"personsAndTeams": [{"id": users[value], "kind": "person"}]} if value in users else ""
            elif col.type == "numbers":
                out[col.id] = f"{value:g}" if isinstance(value, float) else str(value)
            elif col.type == "date":
                out[col.id] = {"date": str(value)}
            else:
                out[col.id] = str(value)
        return out


def _formatted(error: GraphQLError, code: str) -> dict[str, Any]:
    out = error.formatted
    out.setdefault("extensions", {}).setdefault("code", code)
    return out


def _name(fields: dict[str, Any]) -> str:
    return " ".join(p for p in (fields.get("first_name"), fields.get("last_name")) if p) or \
        (fields.get("company") or fields.get("email") or "")


def _split(name: str) -> dict[str, Any]:
    first, _, last = name.partition(" ")
    return {"first_name": first or None, "last_name": last or None} if last else \
        {"first_name": None, "last_name": name or None}

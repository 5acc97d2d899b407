"""The data of a fake monday.com account: users, boards, items, and items_page result sets.

Items hold column values as monday stores them (:mod:`.values` checks each
write). Timestamps are whole seconds (monday's ``updated_at`` precision).
``items_page`` rules and ordering are applied by :meth:`Account.select`; its
result is stored under a cursor that names it (:meth:`Account.open_set`,
:meth:`Account.page`) and expires after 60 minutes.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .values import Column, coerce, fail
from .values import text as value_text

__all__ = ["Item", "Board", "Account", "iso", "CURSOR_TTL", "MAX_PAGE"]

CURSOR_TTL = 3600.0  # "each cursor is valid for 60 minutes"
MAX_PAGE = 500


def iso(seconds: int) -> str:
    """Epoch seconds → ``2026-01-15T10:00:00Z`` (monday's item timestamp form)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@dataclass
class Item:
    id: int
    board_id: int
    name: str
    group_id: str
    created: int
    updated: int
    creator_id: str
    values: dict[str, Any] = field(default_factory=dict)  # column id -> stored JSON value
    state: str = "active"


@dataclass
class Board:
    id: int
    name: str
    columns: list[Column]
    groups: list[dict[str, str]]
    items: dict[int, Item] = field(default_factory=dict)
    state: str = "active"

    def column(self, column_id: str) -> Column | None:
        return next((c for c in self.columns if c.id == column_id), None)

    def active(self) -> list[Item]:
        return [i for i in self.items.values() if i.state == "active"]


class Account:
    """Users, boards and items of one account, plus the stored items_page result sets."""

    def __init__(self) -> None:
        self.users: dict[int, dict[str, Any]] = {}
        self.boards: dict[int, Board] = {}
        self.items: dict[int, Item] = {}
        self._next_item = 9_100_000_001
        self._sets: dict[str, tuple[list[int], float]] = {}

    # -- users and items ----------------------------------------------------------------
    def add_user(self, email: str, name: str) -> dict[str, Any]:
        for user in self.users.values():
            if user["email"] == email:
                return user
        uid = 60_000_001 + len(self.users)
        self.users[uid] = {"id": uid, "email": email, "name": name, "enabled": True}
        return self.users[uid]

    def create(self, board: Board, name: str, column_values: Any, now: int, *, group_id: str | None = None,
               creator: str = "60000001", labels_if_missing: bool = False) -> Item:
        if not name or not name.strip():
            raise fail("Item name can't be blank", "InvalidArgumentException")
        stored = coerce(board, column_values, self.users, labels_if_missing)
        name = stored.pop("name", name)
        if group_id is not None and all(g["id"] != group_id for g in board.groups):
            raise fail("Group not found", "InvalidGroupIdException", group_id=group_id)
        item = Item(self._next_item, board.id, name, group_id or board.groups[0]["id"], now, now, creator,
                    {k: v for k, v in stored.items() if v is not None})
        self._next_item += 1
        board.items[item.id] = self.items[item.id] = item
        return item

    def change(self, board: Board, item: Item, column_values: Any, now: int,
               labels_if_missing: bool = False) -> Item:
        stored = coerce(board, column_values, self.users, labels_if_missing)
        if "name" in stored:
            item.name = stored.pop("name")
        for cid, value in stored.items():
            if value is None:
                item.values.pop(cid, None)
            else:
                item.values[cid] = value
        item.updated = now
        return item

    def item_on(self, board: Board, item_id: Any) -> Item:
        item = self.items.get(int(item_id)) if str(item_id or "").isdigit() else None
        if item is None or item.board_id != board.id or item.state == "deleted":
            raise fail(f"Item {item_id} not found in board {board.id}", "ResourceNotFoundException",
                       item_id=str(item_id))
        return item

    def text(self, col: Column, value: Any) -> str:
        """The ``text`` monday shows for a stored value."""
        return value_text(col, value, self.users)

    # -- items_page: filter, order, and result sets behind cursors ------------------------
    def select(self, board: Board, params: dict[str, Any] | None) -> list[int]:
        """Ids of the active items matching ``query_params``, in the requested order."""
        params = params or {}
        items = board.active()
        if params.get("ids") is not None:
            wanted = {int(i) for i in params["ids"]}
            if len(wanted) > 100:
                raise fail("ids argument in query_params may contain up to 100 ids", "InvalidArgumentException")
            items = [i for i in items if i.id in wanted]
        items = [i for i in items if self._group_matches(board, i, params)]
        order = params.get("order_by") or []
        if order:
            key = order[0]
            attr = {"__last_updated__": "updated", "__creation_log__": "created"}.get(key["column_id"])
            if attr is None:
                col = board.column(key["column_id"])
                if col is None:
                    raise fail(f"Column {key['column_id']} not found", "InvalidColumnIdException")
                items.sort(key=lambda i: (self.text(col, i.values.get(col.id)), i.id),
                           reverse=key.get("direction") == "desc")
            else:
                items.sort(key=lambda i: (getattr(i, attr), i.id), reverse=key.get("direction") == "desc")
        else:
            items.sort(key=lambda i: i.id)
        return [i.id for i in items]

    def _group_matches(self, board: Board, item: Item, group: dict[str, Any]) -> bool:
        checks = [self._rule(board, item, r) for r in group.get("rules") or []]
        checks += [self._group_matches(board, item, g) for g in group.get("groups") or []]
        if not checks:
            return True
        return all(checks) if (group.get("operator") or "and") == "and" else any(checks)

    def _rule(self, board: Board, item: Item, rule: dict[str, Any]) -> bool:
        op, cid = rule.get("operator") or "any_of", rule["column_id"]
        values = rule["compare_value"] if isinstance(rule["compare_value"], list) else [rule["compare_value"]]
        if cid in ("__last_updated__", "__creation_log__"):
            return self._time_rule(item.updated if cid == "__last_updated__" else item.created, op, values, rule)
        col = board.column(cid)
        if col is None:
            raise fail(f"Column {cid} not found", "InvalidColumnIdException", column_id=cid)
        value = item.name if col.type == "name" else item.values.get(col.id)
        if op in ("is_empty", "is_not_empty"):
            return (value in (None, "")) == (op == "is_empty")
        if op not in ("any_of", "not_any_of"):
            raise fail(f"Operator {op} is not supported for column type {col.type}", "InvalidArgumentException")
        if col.type == "status":  # status rules take label indexes; a label text matches nothing
            hit = value is not None and any(str(v) == str(value["index"]) for v in values)
        else:
            text = value if col.type == "name" else self.text(col, value)
            hit = any(str(v) == text for v in values)
        return hit == (op == "any_of")

    @staticmethod
    def _time_rule(stamp: int, op: str, values: list[Any], rule: dict[str, Any]) -> bool:
        if rule.get("compare_attribute") not in ("UPDATED_AT", "CREATED_AT") or values[:1] != ["EXACT"]:
            raise fail('Time filters take compare_attribute "UPDATED_AT" and compare_value ["EXACT", "<ISO '
                       'date-time>"]', "InvalidArgumentException")
        try:
            bounds = [int(datetime.fromisoformat(str(v).replace("Z", "+00:00")).astimezone(timezone.utc)
                          .timestamp()) for v in values[1:]]
        except ValueError:
            raise fail(f"Invalid date in compare_value: {values[1:]}", "InvalidArgumentException") from None
        if op == "between" and len(bounds) == 2:
            return bounds[0] <= stamp <= bounds[1]
        tests = {"greater_than": stamp.__gt__, "greater_than_or_equals": stamp.__ge__,
                 "lower_than": stamp.__lt__, "lower_than_or_equal": stamp.__le__}
        if op not in tests or len(bounds) != 1:
            raise fail(f"Operator {op} is not supported for the last updated column", "InvalidArgumentException")
        return tests[op](bounds[0])

    def open_set(self, board: Board, ids: list[int], now: float) -> str:
        self._sets = {k: v for k, v in self._sets.items() if now - v[1] < CURSOR_TTL}
        key = "i_" + uuid.uuid4().hex[:20]
        self._sets[key] = (ids, now)
        return f"{board.id}:{key}"

    def page(self, handle: str, offset: int, limit: int, now: float) -> tuple[list[Item], str | None]:
        """One page of a stored result set and the cursor after it (None at the end)."""
        board_id, _, key = handle.partition(":")
        entry = self._sets.get(key)
        if entry is None or now - entry[1] >= CURSOR_TTL:
            raise fail("CursorExpiredError: The cursor provided for pagination has expired; cursors are "
                       "valid for 60 minutes. Query items_page again.", "CursorExpiredError")
        ids = entry[0]
        chunk = [self.items[i] for i in ids[offset:offset + limit]]
        end = offset + limit
        cursor = None
        if end < len(ids):
            raw = f"1,{board_id},{key},{end},{limit}|{ids[end - 1]}"
            cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        return [i for i in chunk if i.state == "active"], cursor

    @staticmethod
    def parse_cursor(cursor: str) -> tuple[str, int]:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            head, _, _ = raw.partition("|")
            _, board_id, key, offset, _ = head.split(",")
            return f"{board_id}:{key}", int(offset)
        except (ValueError, UnicodeDecodeError):
            raise fail("Invalid cursor", "CursorException") from None

"""The subset of monday's GraphQL schema the sandbox serves, in SDL, with its resolvers.

Type, field and argument names follow monday's published schema
(``mondaycom/monday-graphql-api``, ``packages/api-types/generated/api-types.d.ts``):
``boards(ids:)``, ``Board.items_page(cursor, limit, query_params: ItemsQuery)``,
root ``next_items_page(cursor, limit)``, ``ItemsResponse { cursor items }``,
``Item.column_values(ids:, types:)`` of the ``ColumnValue`` interface, ``complexity``,
``users``, and the item mutations. Resolvers read the per-request context built by
the sandbox: ``account`` (:class:`.state.Account`), ``now`` (epoch seconds, one
stamp per request), ``monotonic`` (for cursor ages) and ``charge`` (the query's
:class:`.complexity.Charge`).
"""

from __future__ import annotations

import json
from typing import Any

from graphql import GraphQLSchema, build_schema
from graphql.utilities import value_from_ast_untyped

from .state import MAX_PAGE, Account, Board, Item, iso
from .values import fail

__all__ = ["SDL", "SCHEMA"]

SDL = """
scalar JSON
scalar Date
scalar ISO8601DateTime
scalar CompareValue

enum State { active all archived deleted }
enum ColumnType { auto_number board_relation button checkbox color_picker country creation_log date dependency
  doc dropdown email file formula group hour integration item_assignees item_id last_updated link location
  long_text mirror name numbers people person phone progress rating status subtasks tags team text
  time_tracking timeline unsupported vote week world_clock }
enum ItemsQueryOperator { and or }
enum ItemsOrderByDirection { asc desc }
enum ItemsQueryRuleOperator { any_of between contains_terms contains_text ends_with greater_than
  greater_than_or_equals is_empty is_not_empty lower_than lower_than_or_equal not_any_of not_contains_text
  starts_with within_the_last within_the_next }
enum UserKind { all guests non_guests non_pending }

input ItemsQueryRule { column_id: ID!, compare_attribute: String, compare_value: CompareValue!,
  operator: ItemsQueryRuleOperator }
input ItemsQueryGroup { groups: [ItemsQueryGroup!], operator: ItemsQueryOperator, rules: [ItemsQueryRule!] }
input ItemsQueryOrderBy { column_id: String!, direction: ItemsOrderByDirection }
input ItemsQuery { groups: [ItemsQueryGroup!], ids: [ID!], operator: ItemsQueryOperator,
  order_by: [ItemsQueryOrderBy!], rules: [ItemsQueryRule!] }

type Complexity { after: Int!, before: Int!, query: Int!, reset_in_x_seconds: Int! }
type User { id: ID!, email: String!, name: String!, enabled: Boolean! }
type Group { id: ID!, title: String! }
type Column { archived: Boolean!, description: String, id: ID!, settings_str: String!, title: String!,
  type: ColumnType!, width: Int }

interface ColumnValue { column: Column!, id: ID!, text: String, type: ColumnType!, value: JSON }
type TextValue implements ColumnValue { column: Column!, id: ID!, text: String, type: ColumnType!, value: JSON }
type LongTextValue implements ColumnValue { column: Column!, id: ID!, text: String, type: ColumnType!,
  value: JSON }
type EmailValue implements ColumnValue { column: Column!, id: ID!, text: String, type: ColumnType!, value: JSON,
  email: String }
type PhoneValue implements ColumnValue { column: Column!, id: ID!, text: String, type: ColumnType!, value: JSON,
  phone: String, country_short_name: String }
type StatusValue implements ColumnValue { column: Column!, id: ID!, text: String, type: ColumnType!, value: JSON,
  index: Int, label: String }
type DropdownValue implements ColumnValue { column: Column!, id: ID!, text: String, type: ColumnType!,
  value: JSON }
type PeopleValue implements ColumnValue { column: Column!, id: ID!, text: String, type: ColumnType!,
  value: JSON }
type NumbersValue implements ColumnValue { column: Column!, id: ID!, text: String, type: ColumnType!,
  value: JSON, number: Float }
type DateValue implements ColumnValue { column: Column!, id: ID!, text: String, type: ColumnType!, value: JSON,
  date: String }

type Item { board: Board, column_values(ids: [String!], types: [ColumnType!]): [ColumnValue!]!,
  created_at: Date, creator_id: String!, group: Group, id: ID!, name: String!, state: State, updated_at: Date }
type ItemsResponse { cursor: String, items: [Item!]! }
type Board { board_kind: String!, columns(ids: [String], types: [ColumnType!]): [Column], groups: [Group],
  id: ID!, items_count: Int, items_page(cursor: String, limit: Int! = 25, query_params: ItemsQuery): ItemsResponse!,
  name: String!, state: State!, updated_at: ISO8601DateTime }

type Query {
  boards(ids: [ID!], limit: Int, page: Int, state: State): [Board]
  complexity: Complexity
  next_items_page(cursor: String!, limit: Int! = 25): ItemsResponse!
  users(ids: [ID!], emails: [String], kind: UserKind, limit: Int, page: Int, name: String,
    newest_first: Boolean, non_active: Boolean): [User]
}

type Mutation {
  create_item(board_id: ID!, item_name: String!, column_values: JSON, group_id: String,
    create_labels_if_missing: Boolean, relative_to: ID): Item
  change_multiple_column_values(board_id: ID!, item_id: ID, column_values: JSON!,
    create_labels_if_missing: Boolean): Item
  delete_item(item_id: ID): Item
  archive_item(item_id: ID): Item
}
"""

_VALUE_TYPES = {"text": "TextValue", "long_text": "LongTextValue", "email": "EmailValue", "phone": "PhoneValue",
                "status": "StatusValue", "dropdown": "DropdownValue", "people": "PeopleValue",
                "numbers": "NumbersValue", "date": "DateValue"}


def _board(ctx: dict[str, Any], board_id: Any) -> Board:
    board = ctx["account"].boards.get(int(board_id)) if str(board_id).isdigit() else None
    if board is None or board.state == "deleted":
        raise fail(f"Board {board_id} not found", "InvalidBoardIdException", board_id=str(board_id))
    return board


def _page(ctx: dict[str, Any], handle: str, offset: int, limit: int) -> dict[str, Any]:
    if not 1 <= limit <= MAX_PAGE:
        raise fail(f"limit must be between 1 and {MAX_PAGE}", "InvalidArgumentException", limit=limit)
    items, cursor = ctx["account"].page(handle, offset, limit, ctx["monotonic"])
    return {"cursor": cursor, "items": items}


def _boards(_: Any, info: Any, ids: list[str] | None = None, limit: int | None = None, page: int | None = None,
            state: str | None = None) -> list[Board]:
    account: Account = info.context["account"]
    boards = sorted(account.boards.values(), key=lambda b: b.id)
    if ids is not None:
        wanted = {int(i) for i in ids if str(i).isdigit()}
        boards = [b for b in boards if b.id in wanted]
    boards = [b for b in boards if (state or "active") in ("all", b.state)]
    size = limit or 25
    return boards[((page or 1) - 1) * size:(page or 1) * size]


def _items_page(board: Board, info: Any, limit: int = 25, cursor: str | None = None,
                query_params: dict[str, Any] | None = None) -> dict[str, Any]:
    ctx = info.context
    if cursor is not None:
        handle, offset = ctx["account"].parse_cursor(cursor)
        return _page(ctx, handle, offset, limit)
    if not 1 <= limit <= MAX_PAGE:
        raise fail(f"limit must be between 1 and {MAX_PAGE}", "InvalidArgumentException", limit=limit)
    ids = ctx["account"].select(board, query_params)
    return _page(ctx, ctx["account"].open_set(board, ids, ctx["monotonic"]), 0, limit)


def _next_items_page(_: Any, info: Any, cursor: str, limit: int = 25) -> dict[str, Any]:
    handle, offset = info.context["account"].parse_cursor(cursor)
    return _page(info.context, handle, offset, limit)


def _column_values(item: Item, info: Any, ids: list[str] | None = None,
                   types: list[str] | None = None) -> list[dict[str, Any]]:
    account: Account = info.context["account"]
    board = account.boards[item.board_id]
    out = []
    for col in board.columns:
        if col.type == "name" or (ids is not None and col.id not in ids) or (types and col.type not in types):
            continue
        value = item.values.get(col.id)
        text = account.text(col, value)
        cv: dict[str, Any] = {"id": col.id, "type": col.type, "column": col, "text": text, "value": value}
        if col.type == "status" and value is not None:
            cv.update(index=value["index"], label=text)
        elif col.type in ("email", "phone", "date") and value is not None:
            cv.update(email=value.get("email"), phone=value.get("phone"),
                      country_short_name=value.get("countryShortName"), date=value.get("date"))
        elif col.type == "numbers" and value is not None:
            cv["number"] = float(value)
        out.append(cv)
    return out


def _users(_: Any, info: Any, ids: list[str] | None = None, emails: list[str] | None = None,
           limit: int | None = None, page: int | None = None, **__: Any) -> list[dict[str, Any]]:
    users = sorted(info.context["account"].users.values(), key=lambda u: u["id"])
    if ids is not None:
        users = [u for u in users if str(u["id"]) in set(ids)]
    if emails is not None:
        users = [u for u in users if u["email"] in set(emails)]
    if limit:
        users = users[((page or 1) - 1) * limit:(page or 1) * limit]
    return users


def _create_item(_: Any, info: Any, board_id: str, item_name: str, column_values: Any = None,
                 group_id: str | None = None, create_labels_if_missing: bool = False, **__: Any) -> Item:
    ctx = info.context
    return ctx["account"].create(_board(ctx, board_id), item_name, column_values or {}, ctx["now"],
                                 group_id=group_id, labels_if_missing=bool(create_labels_if_missing))


def _change(_: Any, info: Any, board_id: str, column_values: Any, item_id: str | None = None,
            create_labels_if_missing: bool = False) -> Item:
    ctx = info.context
    board = _board(ctx, board_id)
    item = ctx["account"].item_on(board, item_id)
    if item.state != "active":
        raise fail(f"Item {item_id} is {item.state}", "ResourceNotFoundException", item_id=str(item_id))
    return ctx["account"].change(board, item, column_values, ctx["now"], bool(create_labels_if_missing))


def _set_state(state: str) -> Any:
    def resolve(_: Any, info: Any, item_id: str | None = None) -> Item:
        account: Account = info.context["account"]
        item = account.items.get(int(item_id)) if str(item_id or "").isdigit() else None
        if item is None or item.state == "deleted":
            raise fail(f"Item {item_id} not found", "ResourceNotFoundException", item_id=str(item_id))
        item.state, item.updated = state, info.context["now"]
        return item
    return resolve


def _json_literal(node: Any, variables: Any = None) -> Any:
    value = value_from_ast_untyped(node, variables)
    return json.loads(value) if isinstance(value, str) else value


def _build() -> GraphQLSchema:
    schema = build_schema(SDL)
    for name in ("Date", "ISO8601DateTime", "CompareValue"):
        scalar = schema.type_map[name]
        scalar.serialize = lambda v: v  # type: ignore[method-assign]
        scalar.parse_value = lambda v: v  # type: ignore[method-assign]
        scalar.parse_literal = value_from_ast_untyped  # type: ignore[method-assign]
    json_type = schema.type_map["JSON"]
    json_type.serialize = lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False)  # type: ignore
    json_type.parse_value = lambda v: v  # type: ignore[method-assign]  # a JSON string or an object
    json_type.parse_literal = _json_literal  # type: ignore[method-assign]
    schema.get_type("ColumnValue").resolve_type = lambda cv, *_: _VALUE_TYPES.get(cv["type"], "TextValue")
    q, m = schema.query_type.fields, schema.mutation_type.fields
    q["boards"].resolve = _boards
    q["complexity"].resolve = lambda _, info: {
        "before": (c := info.context["charge"]).before, "after": c.after, "query": c.query,
        "reset_in_x_seconds": c.reset_in}
    q["next_items_page"].resolve = _next_items_page
    q["users"].resolve = _users
    m["create_item"].resolve = _create_item
    m["change_multiple_column_values"].resolve = _change
    m["delete_item"].resolve = _set_state("deleted")
    m["archive_item"].resolve = _set_state("archived")
    board = schema.get_type("Board").fields
    board["items_page"].resolve = _items_page
    board["items_count"].resolve = lambda b, _: len(b.active())
    board["board_kind"].resolve = lambda b, _: "public"
    board["columns"].resolve = lambda b, _, ids=None, types=None: [
        c for c in b.columns if (ids is None or c.id in ids) and (not types or c.type in types)]
    item = schema.get_type("Item").fields
    item["column_values"].resolve = _column_values
    item["created_at"].resolve = lambda i, _: iso(i.created)
    item["updated_at"].resolve = lambda i, _: iso(i.updated)
    item["group"].resolve = lambda i, info: next(
        g for g in info.context["account"].boards[i.board_id].groups if g["id"] == i.group_id)
    item["board"].resolve = lambda i, info: info.context["account"].boards[i.board_id]
    return schema


SCHEMA = _build()

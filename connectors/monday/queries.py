"""The GraphQL documents the monday connector sends (names as in monday's published schema)."""

from __future__ import annotations

__all__ = ["BOARD", "FIRST_PAGE", "NEXT_PAGE", "LOOKUP", "RENAMES", "USERS", "USERS_PAGE", "LAST_UPDATED"]

LAST_UPDATED = "__last_updated__"  # monday's pseudo column for an item's last update

BOARD = "query ($b: [ID!]) { boards(ids: $b) { id name columns { id title type settings_str } } }"

_ROW = "fragment Row on Item { id name updated_at column_values(ids: $cols) { id type text value } }"

#: the board's newest update time (the feed's ceiling), then the first page of the result set
FIRST_PAGE = """query ($b: [ID!], $limit: Int!, $qp: ItemsQuery, $cols: [String!]) {
  newest: boards(ids: $b) { items_page(limit: 1, query_params: {order_by: [{column_id: "__last_updated__",
    direction: desc}]}) { items { updated_at } } }
  boards(ids: $b) { items_page(limit: $limit, query_params: $qp) { cursor items { ...Row } } }
} """ + _ROW

NEXT_PAGE = """query ($cursor: String!, $limit: Int!, $cols: [String!]) {
  next_items_page(cursor: $cursor, limit: $limit) { cursor items { ...Row } }
} """ + _ROW

#: items whose hub id column holds one of the given ids (upsert: look before creating)
LOOKUP = """found: boards(ids: $b) { items_page(limit: 500, query_params: $hub) {
  items { id column_values(ids: $hubcol) { id text } } } }"""

#: current names of items whose name is only partly rewritten
RENAMES = "named: boards(ids: $b) { items_page(limit: 100, query_params: $named) { items { id name } } }"

USERS_PAGE = 200
USERS = "query ($page: Int!) { users(limit: 200, page: $page) { id email name enabled } }"

"""Batched writes to monday: aliased mutations in one request, and the look-up that makes creates idempotent.

One request carries many mutations under aliases (``m0: create_item(...)
m1: change_multiple_column_values(...)``); monday runs each on its own, so one
refused alias (``ColumnValueException``…) fails alone, reported under its alias
in ``errors[].path``. Values travel as GraphQL variables (``JSON!``: a JSON
string, as monday's ``column_values`` takes it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hub.connector import WriteResult

from .client import Reply
from .queries import LOOKUP, RENAMES

__all__ = ["Write", "mutation", "results", "lookup", "lookup_results"]


@dataclass(frozen=True, slots=True)
class Write:
    """One item mutation: an update when ``item_id`` is set, else a create named ``name``."""

    hub_id: str
    item_id: str | None
    values: dict[str, Any]  # column id -> the JSON monday takes for it ("name" renames)
    name: str | None = None


def mutation(board_id: str, writes: list[Write]) -> tuple[str, dict[str, Any]]:
    """The document and variables of one request carrying every write as an alias ``m<n>``."""
    decls, fields, variables = ["$b: ID!"], [], {"b": board_id}
    for n, w in enumerate(writes):
        variables[f"v{n}"] = json.dumps(w.values, ensure_ascii=False)
        if w.item_id is not None:
            decls += [f"$i{n}: ID!", f"$v{n}: JSON!"]
            variables[f"i{n}"] = w.item_id
            fields.append(f"m{n}: change_multiple_column_values(board_id: $b, item_id: $i{n}, "
                          f"column_values: $v{n}) {{ id }}")
        else:
            decls += [f"$n{n}: String!", f"$v{n}: JSON!"]
            variables[f"n{n}"] = w.name
            fields.append(f"m{n}: create_item(board_id: $b, item_name: $n{n}, column_values: $v{n}) {{ id }}")
    return f"mutation ({', '.join(decls)}) {{ {' '.join(fields)} }}", variables


def results(reply: Reply, writes: list[Write], titles: dict[str, str]) -> list[WriteResult]:
    """One result per write: the item id, monday's own message for a refused alias, or retry later."""
    failed = reply.by_alias()
    out = []
    for n, w in enumerate(writes):
        done = reply.data.get(f"m{n}")
        if done:
            out.append(WriteResult(w.hub_id, True, str(done["id"])))
        elif f"m{n}" in failed:
            out.append(WriteResult(w.hub_id, False, w.item_id, Reply.describe(failed[f"m{n}"], titles)))
        else:
            out.append(WriteResult(w.hub_id, False, w.item_id, "no answer for this mutation", retryable=True))
    return out


def lookup(board_id: str, hub_column: str, hub_ids: list[str], item_ids: list[str]) -> tuple[str, dict[str, Any]]:
    """One query for the items holding these hub ids, and for the names of these items."""
    decls, parts, variables = ["$b: [ID!]"], [], {"b": [board_id]}
    if hub_ids:
        decls += ["$hub: ItemsQuery", "$hubcol: [String!]"]
        variables |= {"hubcol": [hub_column], "hub": {"rules": [
            {"column_id": hub_column, "operator": "any_of", "compare_value": hub_ids}]}}
        parts.append(LOOKUP)
    if item_ids:
        decls.append("$named: ItemsQuery")
        variables["named"] = {"ids": item_ids}
        parts.append(RENAMES)
    return f"query ({', '.join(decls)}) {{ {' '.join(parts)} }}", variables


def lookup_results(data: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Item id by hub id (the oldest item when several carry one), and item names by id."""
    def items(alias: str) -> list[dict[str, Any]]:
        return [i for b in data.get(alias) or [] for i in (b.get("items_page") or {}).get("items") or []]

    existing: dict[str, str] = {}
    for item in sorted(items("found"), key=lambda i: int(i["id"])):
        for cv in item["column_values"]:
            existing.setdefault(cv.get("text") or "", str(item["id"]))
    return existing, {str(i["id"]): i["name"] for i in items("named")}

"""monday's complexity: what a query costs, the per-minute budget, and the per-request cap.

monday charges each query up front by the size it *could* return, not what it
does: a field costs one point times the product of the page sizes above it
(``boards`` × ``items_page(limit)`` × ``column_values``…), and each write
mutation costs 10,000 points (the figure monday's best-practices page gives for
``create_item``; the sandbox charges the same for the other item mutations).
The per-minute budget is a window that starts with the first call and resets
60 seconds later; a query above 5,000,000 points is refused outright.
The point formula is the sandbox's own approximation: monday publishes the
rules (estimate by potential size) and the limits, not its cost tables.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)

__all__ = ["MAX_PER_QUERY", "MUTATION_COST", "cost", "Budget", "Charge"]

MAX_PER_QUERY = 5_000_000
MUTATION_COST = {"create_item": 10_000, "change_multiple_column_values": 10_000, "delete_item": 10_000,
                 "archive_item": 10_000}
#: list fields: the argument that sizes them, and the size when it is not given
_SIZES: dict[str, tuple[tuple[str, ...], int]] = {
    "boards": (("ids", "limit"), 25), "items_page": (("limit",), 25), "next_items_page": (("limit",), 25),
    "column_values": (("ids",), 20), "columns": (("ids",), 20), "users": (("limit",), 50), "groups": (("ids",), 5)}


def cost(doc: DocumentNode, operation: OperationDefinitionNode, variables: Mapping[str, Any]) -> int:
    """The points one operation costs before it runs."""
    fragments = {d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)}

    def size(node: FieldNode) -> int:
        arg_names, default = _SIZES.get(node.name.value, ((), 1))
        for arg in node.arguments or ():  # graphql-core 3.3 leaves an absent list as None
            if arg.name.value not in arg_names:
                continue
            value = arg.value
            if isinstance(value, VariableNode):
                raw = variables.get(value.name.value)
                return len(raw) if isinstance(raw, list) else int(raw) if isinstance(raw, int) else default
            if isinstance(value, ListValueNode):
                return len(value.values)
            if isinstance(value, IntValueNode):
                return int(value.value)
            return 1  # a single id
        return default

    def walk(selection: SelectionSetNode | None, factor: int) -> int:
        total = 0
        for sel in selection.selections if selection else ():
            if isinstance(sel, FieldNode):
                inner = factor * size(sel)
                total += factor + MUTATION_COST.get(sel.name.value, 0) * factor + walk(sel.selection_set, inner)
            elif isinstance(sel, InlineFragmentNode):
                total += walk(sel.selection_set, factor)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value in fragments:
                total += walk(fragments[sel.name.value].selection_set, factor)
        return total

    return walk(operation.selection_set, 1)


@dataclass(frozen=True, slots=True)
class Charge:
    """The outcome of charging one query: ``ok``, the budget before/after, seconds to the reset."""

    ok: bool
    before: int
    after: int
    query: int
    reset_in: int


class Budget:
    """A per-token complexity budget: ``limit`` points in a window that resets 60 s after its first call."""

    def __init__(self, limit: int, clock: Callable[[], float], window: float = 60.0):
        self.limit, self.window, self._clock = limit, window, clock
        self._start: dict[str, float] = {}
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()

    def charge(self, key: str, points: int) -> Charge:
        with self._lock:
            now = self._clock()
            start = self._start.get(key)
            if start is None or now - start >= self.window:
                start, self._start[key], self._used[key] = now, now, 0
            reset = max(1, math.ceil(self.window - (now - start)))
            before = self.limit - self._used[key]
            if points > before:
                return Charge(False, before, before, points, reset)
            self._used[key] += points
            return Charge(True, before, before - points, points, reset)

    def clear(self) -> None:
        with self._lock:
            self._start.clear()
            self._used.clear()

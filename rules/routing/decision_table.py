"""Routing tables business users edit: a ZEN (GoRules JDM) decision graph, evaluated sandboxed.

A table rule's ``table`` is a JDM graph — inline, or the path of a ``.json``
file exported from the GoRules editor (absolute, or relative to the working directory).
The graph sees ``{"lead": {...}}`` (the lead's fields, custom ones flattened
in, dates as ISO strings) and answers with any of ``pool``, ``owner`` and
``strategy``; an empty answer means no row matched. The engine is created
without a loader, so a table cannot pull in other graphs or do I/O.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import zen

__all__ = ["DecisionTable", "TABLE_OUTPUTS"]

TABLE_OUTPUTS = ("pool", "owner", "strategy")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class DecisionTable:
    """A compiled decision graph. ``ValueError`` if the graph cannot be read or compiled."""

    def __init__(self, graph: str | dict[str, Any], *, base: Path | None = None):
        if isinstance(graph, str):
            path = Path(graph)
            if not path.is_absolute() and base is not None:
                path = base / path
            try:
                content = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"cannot read decision table {str(path)!r}: {exc.strerror}") from None
            self.source = str(graph)
        else:
            content = json.dumps(graph)
            self.source = "inline table"
        try:
            self._decision = zen.ZenEngine().create_decision(content)
        except Exception as exc:  # the binding raises plain exceptions with the parser's message
            raise ValueError(f"invalid decision table ({self.source}): {str(exc)[:200]}") from None

    def evaluate(self, lead_values: dict[str, Any]) -> dict[str, Any] | None:
        """The table's ``pool``/``owner``/``strategy`` for a lead, or ``None`` when no row matched."""
        result = self._decision.evaluate({"lead": _plain(lead_values)}).get("result") or {}
        answer = {k: result[k] for k in TABLE_OUTPUTS if result.get(k) not in (None, "")}
        return answer or None

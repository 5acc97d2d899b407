"""Pipedrive's two limits, as the connector sees them: the 2-second burst window and the daily token budget.

The burst window (``rate`` requests per rolling 2 s per token) is the core's :class:`hub.http.RateBudget`;
:func:`remaining_hint` adds Pipedrive's ``x-ratelimit-remaining``/``x-ratelimit-reset`` headers, so a
window someone else spent (another integration on the same token) pauses the budget too.

The daily budget is counted in tokens: every operation costs its ``x-token-cost`` from the official
specs (:data:`TOKEN_COSTS`), drawn from one pool per company account (30,000 × plan multiplier ×
seats). :class:`DailyTokens` keeps the best estimate of what is left — the
``x-daily-ratelimit-token-remaining`` header of the latest answer, less the cost of calls made since —
and refuses a call that would dig into ``reserve``, with a :class:`hub.errors.RateLimitError` that
names the budget. A 429 whose answer says the daily budget is spent is not retried (its
``Retry-After`` is hours): :class:`DailyAwarePolicy`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from hub.errors import RateLimitError
from hub.http import Answer, RetryPolicy

__all__ = ["TOKEN_COSTS", "CreatePolicy", "DailyAwarePolicy", "DailyTokens", "cost_of", "remaining_hint", "route_of"]

#: ``x-token-cost`` of each operation the connector uses (checked against the specs by a test)
TOKEN_COSTS: dict[str, int] = {
    "GET /v1/leads": 20, "POST /v1/leads": 10, "GET /v1/leads/archived": 40, "GET /v1/leads/{id}": 2,
    "PATCH /v1/leads/{id}": 10, "GET /v1/leadLabels": 10, "POST /v1/leadLabels": 10, "GET /v1/users": 20,
    "GET /api/v2/persons": 10, "POST /api/v2/persons": 5, "GET /api/v2/persons/{id}": 1,
    "PATCH /api/v2/persons/{id}": 5, "GET /api/v2/organizations": 10, "POST /api/v2/organizations": 5,
    "PATCH /api/v2/organizations/{id}": 5, "GET /api/v2/organizations/search": 20, "GET /api/v2/deals": 10,
    "GET /api/v2/deals/{id}": 1, "PATCH /api/v2/deals/{id}": 5, "GET /api/v2/stages": 5,
    "GET /api/v2/itemSearch": 20, "POST /api/v2/leads/{id}/convert/deal": 40,
    "GET /api/v2/leads/{id}/convert/status/{conversion_id}": 1,
    "GET /api/v2/activities": 10, "POST /api/v2/activities": 5, "PATCH /api/v2/activities/{id}": 5,
}
_ID = re.compile(r"/(?:\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?=/|$)")


def route_of(method: str, path: str, v1_prefix: str = "/v1", v2_prefix: str = "/api/v2") -> str:
    """``PATCH /api/v1/leads/6f1c…`` → ``PATCH /v1/leads/{id}`` (ids folded; the v1 prefix normalised)."""
    if v1_prefix != "/v1" and path.startswith(v1_prefix + "/"):
        path = "/v1" + path[len(v1_prefix):]
    if v2_prefix != "/api/v2" and path.startswith(v2_prefix + "/"):
        path = "/api/v2" + path[len(v2_prefix):]
    route = _ID.sub("/{id}", path)
    if route.endswith("/convert/status/{id}"):
        route = route[:-len("{id}")] + "{conversion_id}"
    return f"{method} {route}"


def cost_of(route: str) -> int:
    """Tokens one call costs; an operation not in the table is charged like a list read (20)."""
    return TOKEN_COSTS.get(route, 20)


def _header(answer: Answer, name: str) -> str | None:
    return next((v for k, v in answer.headers.items() if k.lower() == name), None)


def remaining_hint(answer: Answer) -> float | None:
    """``x-ratelimit-remaining: 0`` means the burst window is spent: wait ``x-ratelimit-reset`` seconds."""
    if _header(answer, "x-ratelimit-remaining") == "0" and answer.status != 429:
        try:
            return max(0.0, float(_header(answer, "x-ratelimit-reset") or 2))
        except ValueError:
            return 2.0
    return None


def daily_spent(answer: Answer) -> bool:
    """A 429 for the daily budget (``daily request budget exceeded``), not for the burst window."""
    body = answer.body if isinstance(answer.body, bytes) else str(answer.body or "").encode()
    spent = _header(answer, "x-daily-ratelimit-token-remaining") == "0"
    return answer.status == 429 and (b"daily" in body.lower() or spent)


@dataclass
class DailyAwarePolicy(RetryPolicy):
    """The guard's retry policy, except that a spent daily budget is final (it resets at midnight)."""

    def should_retry(self, answer: Answer) -> bool:
        return not daily_spent(answer) and super().should_retry(answer)


@dataclass
class CreatePolicy(DailyAwarePolicy):
    """For the calls that create something (``POST``): only a 429 is retried, because Pipedrive did
    not act on it. After a 5xx or a dropped connection the object may exist, so the write is left to
    the next run, whose search for the hub id finds it instead of creating it twice."""

    def should_retry(self, answer: Answer) -> bool:
        return answer.status == 429 and super().should_retry(answer)


class DailyTokens:
    """The company's daily token budget as far as this connection can tell (thread-safe).

    ``limit``/``remaining`` come from Pipedrive's headers when it sends them; ``configured`` (tokens
    per day, from settings) stands in until then. ``spent`` counts this connection's own calls.
    """

    def __init__(self, *, configured: int | None = None, reserve: int = 1_000, connection: str = ""):
        self.limit = configured
        self.remaining: int | None = configured
        self.reserve = reserve
        self.spent = 0
        self.connection = connection
        self._lock = threading.Lock()

    def charge(self, route: str) -> int:
        """Count one call; refuse it if it would leave less than ``reserve`` tokens for the day."""
        cost = cost_of(route)
        with self._lock:
            if self.remaining is not None and self.remaining - cost < self.reserve:
                raise RateLimitError(
                    f"{route}: Pipedrive's daily API token budget is nearly spent ({self.remaining} of "
                    f"{self.limit if self.limit is not None else '?'} tokens left, {self.reserve} kept in reserve; "
                    f"this call costs {cost}); it resets at midnight, Pipedrive server time",
                    connection=self.connection, status=429)
            self.spent += cost
            if self.remaining is not None:
                self.remaining -= cost
        return cost

    def observe(self, answer: Answer) -> float | None:
        """A :data:`hub.http.Hint` that only reads: the daily headers of every answer."""
        limit = _header(answer, "x-daily-ratelimit-token-limit")
        remaining = _header(answer, "x-daily-ratelimit-token-remaining")
        with self._lock:
            if limit and limit.isdigit():
                self.limit = int(limit)
            if remaining and remaining.lstrip("-").isdigit():
                self.remaining = int(remaining)
        return None

"""Talking to Salesforce: the daily budget read from ``Sforce-Limit-Info``, meter labels, timestamps,
and simple-salesforce's errors mapped onto the hub's error tree."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from hub.connector import RawRecord, epoch_ms
from hub.errors import AuthError, ConnectorError, RateLimitError
from hub.http import Answer, Rate, RateBudget

if TYPE_CHECKING:
    from simple_salesforce.exceptions import SalesforceError

__all__ = ["RETRYABLE", "DailyBudget", "error_codes", "meter_kind", "salesforce_error", "soql_datetime",
           "stamp_ms", "version_of"]

#: per-record statusCodes worth another try on the next run
RETRYABLE = frozenset({"UNABLE_TO_LOCK_ROW", "REQUEST_RUNNING_TOO_LONG", "SERVER_UNAVAILABLE"})
_DATA = re.compile(r"/services/data/v[\d.]+/(?P<rest>.*?)/?$")


class DailyBudget(RateBudget):
    """Salesforce's daily API request budget, as the org itself reports it.

    As a hint it reads ``Sforce-Limit-Info: api-usage=N/LIMIT`` from every answer
    (it never asks to wait: the budget is a rolling 24 hours); as a budget it
    refuses the next call once no more than ``reserve`` calls remain — until
    ``recheck`` seconds later, when one call may go and read the figure again
    (the rolling window frees calls as they age).
    """

    def __init__(self, limit: int, reserve: int = 0, connection: str = "", recheck: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(Rate(limit, 86_400.0), clock=clock)
        self.used: int | None = None
        self.limit, self.reserve, self.connection, self.recheck = limit, reserve, connection, recheck
        self._read_at = 0.0

    def __call__(self, answer: Answer) -> float | None:
        for key, value in answer.headers.items():
            m = re.search(r"api-usage=(\d+)/(\d+)", value) if key.lower() == "sforce-limit-info" else None
            if m:
                self.used, self.limit, self._read_at = int(m.group(1)), int(m.group(2)), self._clock()
        return None

    def acquire(self) -> None:
        spent = self.used is not None and self.limit - self.used <= self.reserve
        if spent and self._clock() - self._read_at < self.recheck:
            kept = f", keeping {self.reserve} for other integrations" if self.reserve else ""
            raise RateLimitError(f"the daily API request budget is spent (Sforce-Limit-Info api-usage="
                                 f"{self.used}/{self.limit}{kept}); Salesforce counts a rolling 24 hours",
                                 connection=self.connection, status=403)
        super().acquire()  # honours pauses (a 429 or Retry-After from a proxy in front of Salesforce)


def meter_kind(request: requests.PreparedRequest) -> str:
    """The meter's label for a call: query, query_more, upsert, update, create, delete, token…"""
    path = urlsplit(request.url or "").path
    if path.endswith("/oauth2/token"):
        return "token"
    m = _DATA.search(path)
    rest = m.group("rest") if m else path
    head, _, tail = rest.partition("/")
    if head in ("query", "queryAll"):
        return "query_more" if tail else "query"
    if rest == "composite/sobjects":
        return {"PATCH": "update", "POST": "create", "DELETE": "delete"}.get(request.method or "", rest)
    return "upsert" if rest.startswith("composite/sobjects/") else f"{request.method} {rest}"


def stamp_ms(value: Any) -> int:
    """Epoch ms from Salesforce's ``2026-11-01T09:00:00.000+0000`` (or ``…Z``, or no fraction)."""
    return epoch_ms(value) if value else 0


def soql_datetime(ms: int) -> str:
    """A SOQL datetime literal: whole seconds, so the cursor's second is read again (the seen-set skips it)."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def version_of(raw: RawRecord) -> str:
    """A digest of what was read: stamps are whole seconds, so a lead changed twice in one second is two
    versions at one time, and the seen-set must tell them apart."""
    return hashlib.sha1(json.dumps(raw.props, sort_keys=True, default=str).encode()).hexdigest()[:12]


def error_codes(result: dict[str, Any]) -> set[str]:
    return {str(e.get("statusCode")) for e in result.get("errors") or []}


def salesforce_error(exc: SalesforceError, connection: str) -> ConnectorError:
    """simple-salesforce's error as the hub's: 403 REQUEST_LIMIT_EXCEEDED → RateLimitError, 401/403 →
    AuthError, others a ConnectorError whose vendor message is Salesforce's ``errorCode: message`` list."""
    items = [e for e in exc.content if isinstance(e, dict)] if isinstance(exc.content, list) else []
    text = "; ".join(f"{e.get('errorCode')}: {e.get('message')}" for e in items) or str(exc.content)[:500]
    where, kw = exc.resource_name or "call", {"connection": connection, "status": exc.status}
    if any(e.get("errorCode") == "REQUEST_LIMIT_EXCEEDED" for e in items):
        return RateLimitError(f"{where}: Salesforce's API request limit is reached (HTTP {exc.status}): {text}", **kw)
    if exc.status in (401, 403):
        return AuthError(f"{where}: credentials refused (HTTP {exc.status}): {text}", **kw)
    return ConnectorError(f"{where}: HTTP {exc.status}: {text}", vendor_message=text, **kw)

"""monday.com's GraphQL endpoint (``POST /v2``) called through the hub's :class:`~hub.http.Guard`.

monday reports most failures inside the body, GraphQL style, and (depending on
the API version and the limit) with HTTP 200 or 429. :func:`to_answer` shows
the guard a throttling error (``COMPLEXITY_BUDGET_EXHAUSTED``,
``RATE_LIMIT_EXCEEDED``, legacy ``ComplexityException``…) as a 429 whatever the
HTTP status, and :func:`retry_in_seconds` is the vendor hint that reads the
wait from ``extensions.retry_in_seconds``, so budgets, retries and metering stay
in the core. Other errors come back in :class:`Reply` for the connector to read:
per alias for a batch of mutations, or whole-request.

Writes that create items are sent with a guard that retries only answers that
say the request did not run (429): a timeout or 5xx after ``create_item`` may
have created the items, so the batch is left pending and the next run looks the
hub ids up before creating again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from hub.errors import ConnectorError
from hub.http import Answer, Guard, RetryPolicy

__all__ = ["THROTTLED", "retry_in_seconds", "to_answer", "Reply", "GraphQL"]

THROTTLED = frozenset({"COMPLEXITY_BUDGET_EXHAUSTED", "ComplexityException", "RATE_LIMIT_EXCEEDED",
                       "maxConcurrencyExceeded", "IP_RATE_LIMIT_EXCEEDED", "FIELD_LIMIT_EXCEEDED"})
_RESET = re.compile(r"reset in (\d+) seconds")


def _errors(body: bytes | str | None) -> list[dict[str, Any]]:
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        return []
    if not isinstance(payload, dict):
        return []
    errors = [e for e in payload.get("errors") or [] if isinstance(e, dict)]
    if payload.get("error_code"):  # the shape before API version 2024-10
        errors.append({"message": payload.get("error_message", ""),
                       "extensions": {"code": payload["error_code"], "error_data": payload.get("error_data")}})
    return errors


def _code(error: dict[str, Any]) -> str:
    return str((error.get("extensions") or {}).get("code") or "")


def retry_in_seconds(answer: Answer) -> float | None:
    """monday's wait: ``retry_in_seconds`` in an error's extensions (or ``error_data``, or "reset in N seconds")."""
    body = answer.body.encode() if isinstance(answer.body, str) else answer.body
    if not body or (b"retry_in_seconds" not in body and b"reset in" not in body):
        return None
    waits = []
    for error in _errors(body):
        ext = error.get("extensions") or {}
        wait = ext.get("retry_in_seconds") or (ext.get("error_data") or {}).get("retry_in_seconds")
        if wait is None and (hit := _RESET.search(str(error.get("message", "")))):
            wait = hit.group(1)
        if wait is not None:
            waits.append(float(wait))
    return max(waits) if waits else None


def to_answer(result: Any) -> Answer:
    """An httpx result as the guard sees it: a throttling error in a 200 counts as a 429."""
    if isinstance(result, httpx.Response):
        status = result.status_code
        maybe = b'"errors":' in result.content or b'"error_code":' in result.content
        if status == 200 and maybe and any(_code(e) in THROTTLED for e in _errors(result.content)):
            status = 429
        return Answer(status, result.headers, result.content)
    if isinstance(result, (httpx.TimeoutException, httpx.TransportError)):
        return Answer(None, {}, None, result)
    raise result


@dataclass
class Reply:
    """A GraphQL answer: ``data`` (partial when some fields failed) and ``errors``."""

    data: dict[str, Any]
    errors: list[dict[str, Any]] = field(default_factory=list)

    def by_alias(self) -> dict[str, dict[str, Any]]:
        """Errors of single fields (a mutation alias), by the first element of their ``path``."""
        return {str(e["path"][0]): e for e in self.errors if e.get("path")}

    @staticmethod
    def describe(error: dict[str, Any], titles: dict[str, str] | None = None) -> str:
        """``CODE: message`` with monday's message verbatim, and the column (its title) when monday names one."""
        ext = error.get("extensions") or {}
        data = ext.get("error_data") if isinstance(ext.get("error_data"), dict) else {}
        column = data.get("column_id")
        where = f" (column {(titles or {}).get(column, column)!r})" if column else ""
        return f"{ext.get('code') or 'ERROR'}: {error.get('message', '')}{where}"

    def check(self, kind: str, connection: str) -> Reply:
        """Raise the first whole-request error (one without a path into the data), if any."""
        for error in self.errors:
            path = error.get("path") or []
            if not path or self.data.get(str(path[0])) is None:
                raise ConnectorError(f"{kind}: {self.describe(error)}", connection=connection, status=200,
                                     vendor_message=str(error.get("message", "")))
        return self


class _NotRunOnly(RetryPolicy):
    """Retry only answers that say the request did not run (throttled); never a timeout or 5xx."""

    def should_retry(self, answer: Answer) -> bool:
        return answer.status == 429


class GraphQL:
    """POST GraphQL documents to ``{base_url}/v2`` with monday's headers, through a guard."""

    def __init__(self, base_url: str, token: SecretStr, api_version: str, timeout: float, guard: Guard):
        self.guard = guard
        policy = guard.policy
        self.once = Guard(connection=guard.connection, meter=guard.meter, hints=guard.hints,
                          policy=_NotRunOnly(policy.attempts, policy.base, policy.cap),
                          sleep=lambda s: guard._sleep(s))
        self.once.budgets = guard.budgets  # the same budgets (list and all): one pause stops both
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers={
            "Authorization": token.get_secret_value(), "API-Version": api_version,
            "Content-Type": "application/json"})

    def __call__(self, kind: str, document: str, variables: dict[str, Any] | None = None, *,
                 not_idempotent: bool = False) -> Reply:
        body = json.dumps({"query": document, "variables": variables or {}}, separators=(",", ":")).encode()
        guard = self.once if not_idempotent else self.guard
        def send() -> httpx.Response:
            return self.http.post("/v2", content=body)

        response = guard.call(send, kind=kind, to_answer=to_answer)
        try:
            payload = response.json()
        except ValueError:
            raise ConnectorError(f"{kind}: HTTP {response.status_code}: not JSON: {response.text[:200]}",
                                 connection=self.guard.connection, status=response.status_code) from None
        errors = [e for e in payload.get("errors") or [] if isinstance(e, dict)]
        return Reply(payload.get("data") or {}, errors)

    def close(self) -> None:
        self.http.close()

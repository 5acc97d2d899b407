"""Calling a CRM politely: rate budgets, retries with backoff, timeouts, call metering.

Everything here lives once, in the core; a connector only *declares* its limits
(:class:`hub.connector.Limits`) and, where the vendor has them, header hints.

* :class:`RateBudget` — a client-side sliding window (N requests per T seconds),
  so the hub stays under a vendor limit instead of bouncing off it. A vendor's
  "slow down" (``Retry-After``, ``X-*-RateLimit-Remaining: 0``) pauses it.
* :class:`RetryPolicy` — which failures are retried, and how long to wait:
  ``Retry-After`` when the vendor says, else capped exponential backoff with jitter.
* :class:`CallMeter` — API calls per run, by kind and status; the numbers the
  benchmarks and ``leadhub sync`` report.
* :class:`Guard` — the three together around any call, whatever client makes it
  (httpx here, urllib3 inside ``hubspot-api-client``, requests inside
  ``simple-salesforce``).
* :class:`GuardedTransport` / :func:`make_client` — the httpx form.

Retries assume the call is idempotent. The hub makes its writes so (upsert by the
hub's lead id), which is why a retried write can never duplicate a record.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from hub.errors import AuthError, ConnectorError, RateLimitError, TransientError

__all__ = [
    "Rate",
    "RateBudget",
    "RetryPolicy",
    "CallMeter",
    "Answer",
    "Hint",
    "Guard",
    "GuardedTransport",
    "make_client",
    "parse_retry_after",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Rate:
    """``requests`` calls per ``per`` seconds."""

    requests: int
    per: float

    def __str__(self) -> str:
        return f"{self.requests}/{self.per:g}s"


class RateBudget:
    """A thread-safe sliding-window limiter: at most ``rate.requests`` starts per ``rate.per`` s.

    ``margin`` keeps a share of the vendor's figure free (other apps share the
    account); ``slack`` lengthens the window (default: 2 % of it, at least 50 ms).
    """

    def __init__(self, rate: Rate, *, margin: float = 0.0, slack: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.rate = rate
        self.capacity = max(1, int(rate.requests * (1 - margin)))
        # the vendor counts arrivals, we count departures: network jitter can squeeze two calls
        # closer together on their side, so our window is a little longer than theirs
        self.window = rate.per + (max(0.02 * rate.per, 0.05) if slack is None else slack)
        self._starts: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self.waited = 0.0

    def acquire(self) -> None:
        """Block until one more call fits in the window, then count it."""
        while True:
            with self._lock:
                now = self._clock()
                while self._starts and now - self._starts[0] >= self.window:
                    self._starts.popleft()
                wait = max(0.0, self._paused_until - now)
                if not wait and len(self._starts) < self.capacity:
                    self._starts.append(now)
                    return
                if not wait:
                    wait = self.window - (now - self._starts[0]) + 0.001
            self.waited += wait
            self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """The vendor said wait: no call starts for ``seconds``."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


@dataclass
class CallMeter:
    """Counts API calls: total, by kind (``search``, ``batch_update``…) and by outcome."""

    calls: int = 0
    by_kind: Counter = field(default_factory=Counter)
    by_status: Counter = field(default_factory=Counter)
    retries: int = 0
    throttled: int = 0  # answers of 429 (or the vendor's equivalent)
    waited: float = 0.0

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, kind: str, status: int | None) -> None:
        with self._lock:  # connectors without a batch endpoint write from several threads
            self.calls += 1
            self.by_kind[kind] += 1
            self.by_status[status if status is not None else "error"] += 1
            if status == 429:
                self.throttled += 1

    def snapshot(self) -> dict[str, Any]:
        return {"calls": self.calls, "by_kind": dict(self.by_kind), "throttled": self.throttled,
                "retries": self.retries, "waited_s": round(self.waited, 3)}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True, slots=True)
class Answer:
    """What the guard needs to know of one response, whatever client produced it."""

    status: int | None
    headers: Mapping[str, str]
    body: bytes | str | None = None
    error: BaseException | None = None  # a transport error (timeout, refused) instead of a response


#: A vendor hint reads an answer and returns seconds to wait before the next call, or None.
Hint = Callable[[Answer], float | None]


@dataclass
class RetryPolicy:
    """Which answers are retried and how long to wait between attempts."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 60.0
    retry_statuses: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})

    def should_retry(self, answer: Answer) -> bool:
        return answer.error is not None or answer.status in self.retry_statuses

    def backoff(self, attempt: int) -> float:
        return min(self.cap, self.base * 2 ** attempt) * (0.5 + random.random() / 2)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lname = name.lower()
    for k, v in headers.items():
        if k.lower() == lname:
            return v
    return None


class Guard:
    """Budget + retry + meter around a call.

    ``call(fn, kind=..., to_answer=...)`` runs ``fn`` until it succeeds or the
    policy gives up. ``to_answer`` turns ``fn``'s result *or exception* into an
    :class:`Answer` (each client has its own shapes); ``hints`` are the vendor's
    rate-limit headers, read after every answer.
    """

    def __init__(self, *, connection: str = "", budgets: Iterable[RateBudget] = (),
                 policy: RetryPolicy | None = None, meter: CallMeter | None = None,
                 hints: Iterable[Hint] = (), sleep: Callable[[float], None] = time.sleep):
        self.connection = connection
        self.budgets = list(budgets)
        self.policy = policy or RetryPolicy()
        self.meter = meter or CallMeter()
        self.hints = list(hints)
        self._sleep = sleep

    def wait_hint(self, answer: Answer) -> float | None:
        waits = [w for h in self.hints if (w := h(answer)) is not None]
        ra = parse_retry_after(_header(answer.headers, "Retry-After")) if answer.headers else None
        if ra is not None:
            waits.append(ra)
        return max(waits) if waits else None

    def call(self, fn: Callable[[], T], *, kind: str, to_answer: Callable[[Any], Answer],
             extra_budgets: Iterable[RateBudget] = ()) -> T:
        budgets = [*self.budgets, *extra_budgets]
        attempt = 0
        while True:
            for b in budgets:
                before = b.waited
                b.acquire()
                self.meter.waited += b.waited - before
            try:
                result: Any = fn()
                failed = False
            except Exception as exc:  # classified below; unknown errors re-raise
                result, failed = exc, True
            answer = to_answer(result)
            self.meter.record(kind, answer.status)
            wait = self.wait_hint(answer)
            if wait and answer.status not in (429, 503):
                # the vendor says the window is spent even though this call passed
                for b in budgets:
                    b.pause(wait)
            ok = answer.error is None and answer.status is not None and answer.status < 400
            if ok:
                if failed:
                    raise result
                return result
            if self.policy.should_retry(answer) and attempt + 1 < self.policy.attempts:
                delay = wait if wait is not None else self.policy.backoff(attempt)
                if answer.status == 429 and budgets:
                    for b in budgets:  # every caller sharing the budget waits, not just this one
                        b.pause(delay)
                else:
                    self._sleep(delay)
                    self.meter.waited += delay
                self.meter.retries += 1
                attempt += 1
                continue
            raise self.error_for(answer, kind) from (result if failed else None)

    def error_for(self, answer: Answer, kind: str) -> ConnectorError:
        """The error-tree member for a final failed answer. Never includes request headers."""
        body = answer.body.decode("utf-8", "replace") if isinstance(answer.body, bytes) else answer.body
        snippet = (body or "")[:500]
        if answer.error is not None:
            return TransientError(f"{kind}: {type(answer.error).__name__}: {answer.error}",
                                  connection=self.connection)
        if answer.status == 429:
            return RateLimitError(f"{kind}: still rate-limited after {self.policy.attempts} attempts: "
                                  f"{snippet}", connection=self.connection, status=429,
                                  retry_after=self.wait_hint(answer))
        if answer.status in (401, 403):
            return AuthError(f"{kind}: credentials refused (HTTP {answer.status}): {snippet}",
                             connection=self.connection, status=answer.status)
        if answer.status is not None and answer.status >= 500 or answer.status in self.policy.retry_statuses:
            return TransientError(f"{kind}: HTTP {answer.status} after {self.policy.attempts} attempts: "
                                  f"{snippet}", connection=self.connection, status=answer.status)
        return ConnectorError(f"{kind}: HTTP {answer.status}: {snippet}", connection=self.connection,
                              status=answer.status, vendor_message=body or "")


def _httpx_answer(result: Any) -> Answer:
    if isinstance(result, httpx.Response):
        return Answer(result.status_code, result.headers, result.content)
    if isinstance(result, (httpx.TimeoutException, httpx.TransportError)):
        return Answer(None, {}, None, result)
    raise result


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport that sends every request through a :class:`Guard`.

    It returns the final response (even an error response) to the caller, so the
    connector can read the vendor's error body; only exhausted retries on
    transport errors raise.
    """

    def __init__(self, guard: Guard, inner: httpx.BaseTransport | None = None,
                 kind: Callable[[httpx.Request], str] | None = None):
        self.guard = guard
        self.inner = inner or httpx.HTTPTransport()
        self.kind = kind or (lambda r: f"{r.method} {r.url.path}")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        def send() -> httpx.Response:
            req = httpx.Request(request.method, request.url, headers=request.headers, content=body,
                                extensions=request.extensions)
            resp = self.inner.handle_request(req)
            resp.read()
            return resp

        last: list[httpx.Response] = []

        def to_answer(result: Any) -> Answer:
            if isinstance(result, httpx.Response):
                last[:] = [result]
            return _httpx_answer(result)

        try:
            return self.guard.call(send, kind=self.kind(request), to_answer=to_answer)
        except ConnectorError as exc:
            if last and not isinstance(exc, TransientError | RateLimitError):
                return last[0]  # 4xx: let the connector read the vendor's message
            raise

    def close(self) -> None:
        self.inner.close()


def make_client(base_url: str, guard: Guard, *, headers: Mapping[str, str] | None = None,
                timeout: float = 30.0, auth: httpx.Auth | None = None,
                kind: Callable[[httpx.Request], str] | None = None,
                verify: str | bool = True) -> httpx.Client:
    """An httpx client whose every call goes through ``guard``.

    ``verify`` is a CA bundle path (a corporate proxy's, or a sandbox's loopback CA) or a bool.
    """
    inner = httpx.HTTPTransport(verify=verify)
    return httpx.Client(base_url=base_url, headers=dict(headers or {}), timeout=timeout, auth=auth,
                        transport=GuardedTransport(guard, inner, kind=kind))

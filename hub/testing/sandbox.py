"""What every CRM sandbox shares: state lock, settable clock, rate windows, faults, request log, serving.

A sandbox is a stateful fake of one CRM's API, faithful enough that the
vendor's own client works against it unmodified. A subclass declares its routes
and its error shape; this base does the plumbing once::

    class AcmeSandbox(Sandbox):
        def routes(self):
            return [("GET", "/v1/leads/{id}", self.get_lead)]

        def get_lead(self, call: Call) -> Response:
            return self.json({"id": call.params["id"]})

        def error(self, status, message, **extra):           # the vendor's error body
            return self.json({"error": message, **extra}, status)

    sandbox = AcmeSandbox()
    with sandbox.serve() as served:                            # http://127.0.0.1:<free port>
        sandbox.faults.add(status=503, count=2, path_contains="/leads")
        ...
    sandbox.requests   # [("GET", "/v1/leads/1", 503), ...]

Handlers are plain synchronous functions run under ``sandbox.lock``, so tests
may read or change state from their own thread while the server runs.

Time: ``sandbox.clock.now()`` stamps records; tests ``freeze``/``advance`` it.
Rate windows run on ``clock.monotonic()``: real time plus every ``advance``,
so freezing the clock never wedges a rate limit, and advancing it 10 s empties
a 10-second window deterministically.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import Response

from hub.testing.serve import Served, serve, serve_forever
from hub.testing.tls import LoopbackTLS, loopback_tls

__all__ = ["Clock", "Verdict", "RollingWindow", "Fault", "Faults", "Call", "Reject", "Handler", "Sandbox"]

log = logging.getLogger(__name__)


class Clock:
    """The sandbox's idea of now: real UTC time, or frozen, shifted by :meth:`advance`."""

    def __init__(self) -> None:
        self._frozen: datetime | None = None
        self._offset = 0.0  # seconds added to real wall time
        self._ticks = 0.0  # seconds added to real monotonic time

    def now(self) -> datetime:
        """An aware UTC datetime."""
        if self._frozen is not None:
            return self._frozen
        return datetime.now(timezone.utc) + timedelta(seconds=self._offset)

    def now_ms(self) -> int:
        """Now in epoch milliseconds (the precision CRMs stamp records with)."""
        return int(self.now().timestamp() * 1000)

    def monotonic(self) -> float:
        """Real monotonic seconds plus everything :meth:`advance` added; drives rate windows."""
        return time.monotonic() + self._ticks

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def freeze(self, at: datetime | None = None) -> None:
        """Stop the clock, at ``at`` (aware) or at the current time."""
        if at is not None and at.tzinfo is None:
            raise ValueError("freeze() needs an aware datetime (e.g. tzinfo=timezone.utc)")
        self._frozen = (at or self.now()).astimezone(timezone.utc)

    def unfreeze(self) -> None:
        """Let the clock run again from where it was frozen."""
        if self._frozen is not None:
            self._offset = (self._frozen - datetime.now(timezone.utc)).total_seconds()
            self._frozen = None

    def advance(self, seconds: float) -> None:
        """Move time forward (frozen or not), rate windows included."""
        if self._frozen is not None:
            self._frozen += timedelta(seconds=seconds)
        else:
            self._offset += seconds
        self._ticks += seconds


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rate window's answer: ``allowed``, calls ``remaining`` after this one, ``reset`` s until a slot frees."""

    allowed: bool
    remaining: int
    reset: float


class RollingWindow:
    """At most ``requests`` hits in any ``seconds``-long rolling window (thread-safe).

    Refused hits are not counted, so a client that waits the ``reset`` it was
    told always gets through.
    """

    def __init__(self, requests: int, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.requests = requests
        self.seconds = seconds
        self._clock = clock
        self._hits: deque[float] = deque()
        self._lock = threading.Lock()

    def _verdict(self, now: float, allowed: bool) -> Verdict:
        hits = self._hits
        while hits and now - hits[0] >= self.seconds:
            hits.popleft()
        remaining = self.requests - len(hits)
        reset = (self.seconds - (now - hits[0])) if hits and remaining <= 0 else 0.0
        return Verdict(allowed and remaining > 0, max(0, remaining), max(0.0, reset))

    def hit(self) -> Verdict:
        """Count one call if it fits; the verdict's ``remaining`` is after this call."""
        with self._lock:
            now = self._clock()
            v = self._verdict(now, True)
            if not v.allowed:
                return v
            self._hits.append(now)
            return Verdict(True, v.remaining - 1, 0.0)

    def peek(self) -> Verdict:
        """The state without counting a call."""
        with self._lock:
            return self._verdict(self._clock(), True)

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()


@dataclass
class Fault:
    """Make the next ``count`` matching requests fail with ``status`` (after ``delay`` s).

    ``status=None`` with a ``delay`` only slows the request down (to provoke
    client timeouts) and then answers it normally.
    """

    status: int | None = 500
    count: int = 1
    path_contains: str = ""
    method: str | None = None
    delay: float = 0.0
    message: str = "Injected fault"
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.count > 0 and self.path_contains in path
                and (self.method is None or self.method.upper() == method))


class Faults:
    """The injected faults of one sandbox, consumed in the order they were added."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, status: int | None = 500, count: int = 1, path_contains: str = "", *,
            method: str | None = None, delay: float = 0.0, message: str = "Injected fault") -> Fault:
        fault = Fault(status, count, path_contains, method, delay, message)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first live fault matching this request, with one of its uses spent."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    fault.hits += 1
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending(self) -> int:
        """Uses left across all faults."""
        return sum(f.count for f in self._faults)


@dataclass(slots=True)
class Call:
    """One request as a handler sees it."""

    method: str
    path: str
    route: str  # the matched template, e.g. "GET /v1/leads/{id}"
    params: dict[str, str]
    query: QueryParams
    headers: Headers
    body: bytes
    context: dict[str, Any] = field(default_factory=dict)  # what ``admit`` learnt (token, kind…)

    def json(self) -> Any:
        """The body as JSON; a malformed body raises :class:`Reject` (400)."""
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise Reject(400, f"Invalid input JSON on line {getattr(exc, 'lineno', 1)}, "
                              f"column {getattr(exc, 'colno', 1)}: {exc}") from None

    def query_list(self, name: str) -> list[str]:
        """A repeated and/or comma-separated query parameter as one list."""
        return [v for raw in self.query.getlist(name) for v in raw.split(",") if v]


class Reject(Exception):
    """Raised by a handler to answer with the sandbox's error shape."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


Handler = Callable[[Call], Response]


class Sandbox:
    """Base of every CRM sandbox. Subclasses implement :meth:`routes` and usually :meth:`error`/:meth:`admit`."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clock = Clock()
        self.faults = Faults()
        self.requests: list[tuple[str, str, int]] = []
        self.calls: Counter[str] = Counter()  # by route template ("POST /crm/v3/…/search")
        self._windows: dict[tuple[str, str], RollingWindow] = {}
        self._app: Callable[..., Any] | None = None
        self._table: list[tuple[str, re.Pattern[str], str, Handler]] | None = None

    # -- what a subclass provides ------------------------------------------------------
    def routes(self) -> Sequence[tuple[str, str, Handler]]:
        """``(method, "/path/{param}", handler)`` triples."""
        raise NotImplementedError

    def error(self, status: int, message: str, **extra: Any) -> Response:
        """The vendor's error answer. Default: ``{"error": message}``."""
        return self.json({"error": message, **extra}, status)

    def admit(self, call: Call) -> Response | dict[str, str] | None:
        """Before the handler: a Response refuses the call (auth, rate limit); a dict adds headers."""
        return None

    # -- helpers for subclasses ----------------------------------------------------------
    @staticmethod
    def json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return Response(body, status, headers, media_type="application/json;charset=utf-8")

    def window(self, name: str, key: str, requests: int, seconds: float) -> RollingWindow:
        """The rolling window ``name`` of one caller (``key``: a token), created on first use."""
        w = self._windows.get((name, key))
        if w is None or w.requests != requests or w.seconds != seconds:
            w = self._windows[(name, key)] = RollingWindow(requests, seconds, self.clock.monotonic)
        return w

    def reset_log(self) -> None:
        """Forget the request log, the call counter and the rate windows."""
        with self.lock:
            self.requests.clear()
            self.calls.clear()
            self._windows.clear()

    # -- serving -------------------------------------------------------------------------
    @property
    def app(self) -> Callable[..., Any]:
        """The ASGI app (built once)."""
        if self._app is None:
            self._table = [(m.upper(), re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", p) + "$"),
                            f"{m.upper()} {p}", h) for m, p, h in self.routes()]
            self._app = self._asgi
        return self._app

    #: serve over HTTPS with a loopback certificate (for clients that only speak https)
    tls: bool = False

    def _tls(self) -> LoopbackTLS | None:
        return loopback_tls() if self.tls else None

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> Served:
        """Serve in a background thread; use as a context manager or call ``.stop()``."""
        return serve(self.app, port, host, tls=self._tls())

    def serve_forever(self, port: int = 8080, host: str = "127.0.0.1", *,
                      ready: Callable[[str], None] | None = None) -> None:
        """Serve until Ctrl-C/SIGTERM. Prints nothing; ``ready(url)`` is called once listening."""
        serve_forever(self.app, host, port, ready=ready, tls=self._tls())

    def _match(self, method: str, path: str) -> tuple[str, dict[str, str], Handler | None, bool]:
        assert self._table is not None
        path = path.rstrip("/") or "/"  # clients differ: the HubSpot client asks for "/crm/v3/owners/"
        path_known = False
        for m, rx, route, handler in self._table:
            hit = rx.match(path)
            if hit:
                path_known = True
                if m == method:
                    return route, hit.groupdict(), handler, True
        return f"{method} {path}", {}, None, path_known

    async def _asgi(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        method, path = request.method, request.url.path
        fault = self.faults.take(method, path)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        body = await request.body()
        response = self._respond(method, path, request, body, fault)
        await response(scope, receive, send)

    def _respond(self, method: str, path: str, request: Request, body: bytes, fault: Fault | None) -> Response:
        route, params, handler, path_known = self._match(method, path)
        call = Call(method, path, route, params, request.query_params, request.headers, body)
        with self.lock:
            try:
                if fault is not None and fault.status is not None:
                    response = self.error(fault.status, fault.message)
                else:
                    response = self._handle(call, handler, path_known)
            except Exception:
                log.exception("sandbox %s failed on %s %s", type(self).__name__, method, path)
                response = self.error(500, "Internal error in the sandbox")
            self.requests.append((method, path, response.status_code))
            self.calls[route] += 1
        return response

    def _handle(self, call: Call, handler: Handler | None, path_known: bool) -> Response:
        headers: dict[str, str] | None = None
        try:
            admitted = self.admit(call)
            if isinstance(admitted, Response):
                return admitted
            headers = admitted
            if handler is None:
                if path_known:
                    raise Reject(405, f"Method {call.method} is not allowed on {call.path}")
                raise Reject(404, f"No route for {call.method} {call.path}")
            response = handler(call)
        except Reject as rej:
            response = self.error(rej.status, rej.message, **rej.extra)
        if headers:
            response.headers.update(headers)
        return response

"""The requests form of the guard (`hub.http_requests`), against a tiny app served on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter

import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.errors import RateLimitError, TransientError
from hub.http import CallMeter, Guard, Rate, RateBudget, RetryPolicy
from hub.http_requests import GuardedAdapter, guarded_session
from hub.testing.serve import serve
from hub.testing.tls import loopback_tls

FAST = RetryPolicy(attempts=3, base=0.01, cap=0.05)


class App:
    """Answers each path's scripted statuses in turn, then 200 with the request's echo."""

    def __init__(self) -> None:
        self.script: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.hits: Counter[str] = Counter()
        self.bodies: list[bytes] = []
        self.app = Starlette(routes=[Route("/{name}", self.handle, methods=["GET", "POST"])])

    async def handle(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.hits[name] += 1
        self.bodies.append(await request.body())
        if name == "slow":
            await asyncio.sleep(0.5)
        queue = self.script.get(name) or []
        if queue:
            status, headers = queue.pop(0)
            return JSONResponse([{"errorCode": f"E{status}", "message": f"scripted {status}"}], status, headers)
        return JSONResponse({"ok": True, "hit": self.hits[name]})


@pytest.fixture(scope="module")
def app():
    a = App()
    with serve(a.app) as served:
        a.url = served.url
        yield a


def session(**kw) -> tuple[requests.Session, CallMeter]:
    meter = CallMeter()
    guard = Guard(connection="crm", policy=kw.pop("policy", FAST), meter=meter, budgets=kw.pop("budgets", ()))
    return guarded_session(guard, **kw), meter


def test_server_errors_are_retried_and_the_body_is_resent(app):
    app.script["flaky"] = [(503, {}), (500, {})]
    s, meter = session()
    before = len(app.bodies)
    resp = s.post(f"{app.url}/flaky", json={"records": [1, 2]})
    assert resp.status_code == 200 and resp.json()["hit"] == 3
    assert meter.calls == 3 and meter.retries == 2 and meter.by_status == {503: 1, 500: 1, 200: 1}
    assert app.bodies[before:] == [b'{"records": [1, 2]}'] * 3


def test_a_429_waits_as_told_and_pauses_the_shared_budget(app):
    app.script["limited"] = [(429, {"Retry-After": "0.3"})]
    budget = RateBudget(Rate(100, 1))
    s, meter = session(budgets=[budget])
    t0 = time.monotonic()
    assert s.get(f"{app.url}/limited").status_code == 200
    assert time.monotonic() - t0 >= 0.3
    assert meter.throttled == 1 and meter.retries == 1


def test_a_4xx_comes_back_to_the_caller_with_the_vendor_body(app):
    app.script["bad"] = [(400, {})]
    s, meter = session()
    resp = s.get(f"{app.url}/bad")
    assert resp.status_code == 400 and resp.json() == [{"errorCode": "E400", "message": "scripted 400"}]
    assert meter.calls == 1 and meter.retries == 0


def test_exhausted_retries_raise_a_transient_error_naming_the_connection(app):
    app.script["down"] = [(502, {})] * 3
    s, meter = session()
    with pytest.raises(TransientError) as err:
        s.get(f"{app.url}/down")
    assert "[crm]" in str(err.value) and "502" in str(err.value) and "scripted 502" in str(err.value)
    assert meter.calls == 3


def test_a_429_that_never_lifts_is_a_rate_limit_error(app):
    app.script["always"] = [(429, {"Retry-After": "0"})] * 3
    s, _ = session()
    with pytest.raises(RateLimitError):
        s.get(f"{app.url}/always")


def test_refused_connections_and_timeouts_are_retried_then_raised(app):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    s, meter = session()
    with pytest.raises(TransientError, match="ConnectionError"):
        s.get(f"http://127.0.0.1:{port}/x")
    assert meter.calls == 3 and meter.by_status == {"error": 3}
    s, meter = session(timeout=0.1, policy=RetryPolicy(attempts=2, base=0.01))
    with pytest.raises(TransientError, match="ReadTimeout"):
        s.get(f"{app.url}/slow")
    assert meter.calls == 2


def test_the_ca_bundle_is_used_even_when_the_environment_names_another(monkeypatch):
    tls = loopback_tls()
    a = App()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())  # requests would let this win
    with serve(a.app, tls=tls) as served:
        s, _ = session(verify=tls.ca_file)
        assert s.get(f"{served.url}/hello").json()["ok"] is True
        s, meter = session()  # system CAs only: the loopback certificate is not trusted
        with pytest.raises(requests.exceptions.SSLError):
            s.get(f"{served.url}/hello")
        assert meter.retries == 0  # configuration, not bad luck: never retried
    assert a.hits["hello"] == 1


def test_the_adapter_labels_calls_for_the_meter(app):
    meter = CallMeter()
    s = requests.Session()
    s.mount("http://", GuardedAdapter(Guard(meter=meter, policy=FAST), kind=lambda r: r.method.lower()))
    s.get(f"{app.url}/a")
    s.post(f"{app.url}/b")
    assert meter.by_kind == {"get": 1, "post": 1}

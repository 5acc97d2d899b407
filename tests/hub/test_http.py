"""The HTTP layer: rate budget, retries honouring Retry-After and vendor hints, error tree.

respx stands in for the network here (unit tests of HTTP handling); end-to-end
behaviour is tested against the served sandboxes.
"""

from __future__ import annotations

import httpx
import pytest
import respx

from hub.errors import AuthError, RateLimitError, TransientError
from hub.http import Answer, CallMeter, Guard, GuardedTransport, Rate, RateBudget, RetryPolicy, parse_retry_after


class FakeClock:
    def __init__(self):
        self.t = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def _client(guard: Guard) -> httpx.Client:
    return httpx.Client(base_url="https://crm.test", transport=GuardedTransport(guard))


def test_budget_spaces_calls_to_stay_inside_the_window():
    clock = FakeClock()
    budget = RateBudget(Rate(10, 10.0), clock=clock, sleep=clock.sleep)
    for _ in range(25):
        budget.acquire()
    # 25 calls at 10 per 10 s need two full waits of about one window (plus its 2 % slack) each
    assert 20 < clock.t < 21


def test_pause_blocks_every_caller_of_the_budget():
    clock = FakeClock()
    budget = RateBudget(Rate(100, 10.0), clock=clock, sleep=clock.sleep)
    budget.pause(3.0)
    budget.acquire()
    assert clock.t == pytest.approx(3.0)


@respx.mock
def test_429_waits_as_told_by_retry_after_then_succeeds():
    clock = FakeClock()
    route = respx.get("https://crm.test/x").mock(side_effect=[
        httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "slow down"}),
        httpx.Response(200, json={"ok": True}),
    ])
    budget = RateBudget(Rate(100, 10), clock=clock, sleep=clock.sleep)
    meter = CallMeter()
    guard = Guard(budgets=[budget], meter=meter, sleep=clock.sleep)
    assert _client(guard).get("/x").json() == {"ok": True}
    assert route.call_count == 2
    assert clock.t == pytest.approx(7.0, abs=0.01)
    assert meter.calls == 2 and meter.throttled == 1 and meter.retries == 1


@respx.mock
def test_5xx_is_retried_with_backoff_then_raises_transient():
    clock = FakeClock()
    respx.get("https://crm.test/x").mock(return_value=httpx.Response(503, text="maintenance"))
    guard = Guard(policy=RetryPolicy(attempts=3, base=1, cap=4), sleep=clock.sleep)
    with pytest.raises(TransientError, match="503"):
        _client(guard).get("/x")
    assert len(clock.sleeps) == 2
    assert guard.meter.calls == 3


@respx.mock
def test_timeouts_are_retried():
    clock = FakeClock()
    respx.get("https://crm.test/x").mock(side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200)])
    guard = Guard(sleep=clock.sleep)
    assert _client(guard).get("/x").status_code == 200
    assert guard.meter.retries == 1


@respx.mock
def test_401_is_an_auth_error_without_retry_and_without_the_token():
    respx.get("https://crm.test/x").mock(return_value=httpx.Response(401, json={"message": "bad token"}))
    guard = Guard(connection="marketing")
    client = httpx.Client(base_url="https://crm.test", transport=GuardedTransport(guard),
                          headers={"Authorization": "Bearer s3cr3t-token"})
    resp = client.get("/x")  # 4xx comes back to the connector so it can read the vendor's body
    assert resp.status_code == 401
    assert guard.meter.calls == 1
    err = guard.error_for(Answer(401, {}, b'{"message": "bad token"}'), "GET /x")
    assert isinstance(err, AuthError)
    assert "marketing" in str(err) and "s3cr3t" not in str(err)


@respx.mock
def test_persistent_429_raises_rate_limit_error():
    clock = FakeClock()
    respx.get("https://crm.test/x").mock(return_value=httpx.Response(429, headers={"Retry-After": "1"}))
    guard = Guard(policy=RetryPolicy(attempts=3), sleep=clock.sleep)
    with pytest.raises(RateLimitError):
        _client(guard).get("/x")


@respx.mock
def test_vendor_hint_pauses_the_budget_before_a_429_happens():
    clock = FakeClock()
    budget = RateBudget(Rate(100, 10), clock=clock, sleep=clock.sleep)
    respx.get("https://crm.test/x").mock(return_value=httpx.Response(200, headers={"X-Left": "0"}))

    def hint(a: Answer):
        return 5.0 if a.headers.get("X-Left") == "0" else None

    guard = Guard(budgets=[budget], hints=[hint], sleep=clock.sleep)
    client = _client(guard)
    client.get("/x")
    client.get("/x")
    assert clock.t == pytest.approx(5.0, abs=0.01)


def test_retry_after_forms():
    assert parse_retry_after("12") == 12
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: no wait
    assert parse_retry_after("soon") is None

"""The sandbox base: clock, rolling windows, faults, request log, routing, serving."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest
from starlette.responses import Response

from hub.testing.sandbox import Call, Clock, Faults, Reject, RollingWindow, Sandbox


class Ticker:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Notes(Sandbox):
    """A tiny CRM: notes by id, a bearer token, ``limit`` calls per 10 s per token."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: dict[str, str] = {}
        self.limit = 100

    def routes(self):
        return [("GET", "/v1/notes/{id}", self.get_note), ("PUT", "/v1/notes/{id}", self.put_note),
                ("POST", "/v1/boom", self.boom)]

    def admit(self, call: Call):
        token = call.headers.get("authorization", "").removeprefix("Bearer ")
        if token != "t0k":
            return self.error(401, "who are you?")
        verdict = self.window("calls", token, self.limit, 10).hit()
        if not verdict.allowed:
            return self.error(429, "slow down", retry=round(verdict.reset, 1))
        return {"X-Remaining": str(verdict.remaining)}

    def get_note(self, call: Call) -> Response:
        if call.params["id"] not in self.notes:
            raise Reject(404, f"no note {call.params['id']}")
        return self.json({"id": call.params["id"], "text": self.notes[call.params["id"]],
                          "at": self.clock.now().isoformat(), "tags": call.query_list("tag")})

    def put_note(self, call: Call) -> Response:
        body = call.json()
        self.notes[call.params["id"]] = body["text"]
        return self.json({"ok": True}, 201)

    def boom(self, call: Call) -> Response:
        raise RuntimeError("bug in a handler")


@pytest.fixture
def notes():
    box = Notes()
    with box.serve() as served:
        client = httpx.Client(base_url=served.url, headers={"Authorization": "Bearer t0k"}, timeout=5)
        yield box, client
        client.close()


# -- clock ----------------------------------------------------------------------------------

def test_clock_runs_in_utc_and_freezes_advances_and_unfreezes():
    clock = Clock()
    before = datetime.now(timezone.utc)
    assert clock.now().tzinfo is not None and abs(clock.now() - before) < timedelta(seconds=1)
    at = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    clock.freeze(at)
    assert clock.frozen and clock.now() == at and clock.now_ms() == int(at.timestamp() * 1000)
    mono = clock.monotonic()
    clock.advance(90)
    assert clock.now() == at + timedelta(seconds=90)
    assert clock.monotonic() - mono >= 90  # rate windows see advanced time too
    clock.unfreeze()
    assert not clock.frozen
    assert timedelta(0) <= clock.now() - (at + timedelta(seconds=90)) < timedelta(seconds=1)
    running = clock.now()
    clock.advance(3600)
    assert clock.now() - running >= timedelta(hours=1)


def test_clock_refuses_a_naive_datetime():
    with pytest.raises(ValueError):
        Clock().freeze(datetime(2026, 3, 1, 12, 0))


# -- rolling window -------------------------------------------------------------------------

def test_rolling_window_counts_refuses_and_frees_slots_as_they_age():
    tick = Ticker()
    w = RollingWindow(3, 10, clock=tick)
    assert [w.hit().remaining for _ in range(3)] == [2, 1, 0]
    tick.t += 4
    refused = w.hit()
    assert not refused.allowed and refused.remaining == 0 and refused.reset == pytest.approx(6)
    assert w.peek().remaining == 0  # refused calls are not counted
    tick.t += 6
    again = w.hit()
    assert again.allowed and again.remaining == 2  # the three first hits aged out, one used now
    assert w.peek() == w.peek()
    w.clear()
    assert w.peek().remaining == 3


def test_rolling_window_is_rolling_not_fixed():
    tick = Ticker()
    w = RollingWindow(2, 10, clock=tick)
    w.hit()
    tick.t += 6
    w.hit()
    tick.t += 5  # 11 s after the first, 5 s after the second
    assert w.hit().allowed
    assert not w.hit().allowed


# -- faults ---------------------------------------------------------------------------------

def test_faults_match_by_path_and_method_and_are_consumed_in_order():
    faults = Faults()
    first = faults.add(status=500, count=2, path_contains="/search")
    faults.add(status=503, count=1, path_contains="/search", method="POST")
    assert faults.take("GET", "/v1/other") is None
    assert faults.take("GET", "/x/search") is first
    assert faults.take("POST", "/x/search") is first
    second = faults.take("POST", "/x/search")
    assert second is not None and second.status == 503
    assert faults.take("POST", "/x/search") is None and faults.pending == 0
    assert first.hits == 2


def test_injected_faults_answer_in_the_sandbox_error_shape_then_stop(notes):
    box, client = notes
    box.notes["1"] = "hello"
    box.faults.add(status=503, count=2, path_contains="/notes")
    assert [client.get("/v1/notes/1").status_code for _ in range(3)] == [503, 503, 200]
    assert client.get("/v1/notes/1").json()["text"] == "hello"
    assert box.faults.pending == 0


def test_a_delayed_fault_provokes_a_client_timeout_and_a_slow_one_still_answers(notes):
    box, client = notes
    box.notes["1"] = "hello"
    box.faults.add(status=500, delay=1.0, path_contains="/notes/1")
    with pytest.raises(httpx.ReadTimeout):
        client.get("/v1/notes/1", timeout=0.2)
    box.faults.add(status=None, delay=0.2, path_contains="/notes/1")
    slow = client.get("/v1/notes/1")
    assert slow.status_code == 200 and slow.json()["text"] == "hello"


# -- routing, log, hooks ---------------------------------------------------------------------

def test_routes_params_query_lists_and_json_bodies(notes):
    box, client = notes
    assert client.put("/v1/notes/7", json={"text": "seven"}).status_code == 201
    got = client.get("/v1/notes/7", params=[("tag", "a,b"), ("tag", "c")]).json()
    assert got["text"] == "seven" and got["tags"] == ["a", "b", "c"]
    assert box.notes == {"7": "seven"}


def test_unknown_paths_wrong_methods_bad_json_and_handler_bugs_get_error_answers(notes, caplog):
    _, client = notes
    assert client.get("/v1/nothing").status_code == 404
    assert client.delete("/v1/notes/1").status_code == 405
    bad = client.put("/v1/notes/1", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "Invalid input JSON" in bad.json()["error"]
    assert client.get("/v1/notes/404").json() == {"error": "no note 404"}
    crash = client.post("/v1/boom")
    assert crash.status_code == 500
    assert "bug in a handler" in caplog.text


def test_the_request_log_and_call_counter_record_every_answer(notes):
    box, client = notes
    box.notes["1"] = "x"
    client.get("/v1/notes/1")
    client.get("/v1/notes/2")
    httpx.get(str(client.base_url) + "/v1/notes/1")  # no token
    assert box.requests == [("GET", "/v1/notes/1", 200), ("GET", "/v1/notes/2", 404), ("GET", "/v1/notes/1", 401)]
    assert box.calls["GET /v1/notes/{id}"] == 3
    box.reset_log()
    assert box.requests == [] and not box.calls


def test_admit_refuses_or_adds_headers_and_windows_follow_the_sandbox_clock(notes):
    box, client = notes
    box.notes["1"] = "x"
    box.limit = 3
    answers = [client.get("/v1/notes/1") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers.get("x-remaining") for a in answers[:3]] == ["2", "1", "0"]
    assert 9 < answers[3].json()["retry"] <= 10
    box.clock.advance(10)  # the window empties deterministically, no sleeping
    assert client.get("/v1/notes/1").status_code == 200


def test_state_changed_by_the_test_thread_is_seen_by_the_server(notes):
    box, client = notes
    with box.lock:
        box.notes["9"] = "from the test"
    box.clock.freeze(datetime(2030, 1, 1, tzinfo=timezone.utc))
    got = client.get("/v1/notes/9").json()
    assert got["text"] == "from the test" and got["at"].startswith("2030-01-01T00:00:00")


def test_app_is_an_asgi_callable_and_a_base_sandbox_needs_routes():
    box = Notes()
    assert box.app is box.app and callable(box.app)
    with pytest.raises(NotImplementedError):
        _ = Sandbox().app

"""Serving ASGI apps on loopback: background threads for tests, serve_forever for the CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest

from hub.testing.serve import Served, serve, serve_forever


async def hello(scope, receive, send):
    assert scope["type"] == "http"
    if scope["path"] == "/slow":
        await asyncio.sleep(0.3)
    body = f"{scope['method']} {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


_already: set[threading.Thread] = set()


@pytest.fixture(autouse=True)
def _servers_from_elsewhere():
    """Servers other test modules keep for their session are not this test's to stop."""
    _already.clear()
    _already.update(t for t in threading.enumerate() if t.name.startswith("serve:"))
    yield


def serving_threads() -> list[threading.Thread]:
    """Server threads this test started and did not stop."""
    return [t for t in threading.enumerate() if t.name.startswith("serve:") and t not in _already]


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=1.0)
    except httpx.ConnectError:
        return True
    return False


def test_serve_picks_a_free_port_answers_and_stops_without_a_trace():
    with serve(hello) as served:
        assert isinstance(served, Served)
        assert served.url == f"http://127.0.0.1:{served.port}" and served.port > 0
        assert served.running
        r = httpx.get(served.url + "/ping")
        assert r.status_code == 200 and r.text == "GET /ping"
        assert "uvicorn" in r.headers["server"]
    assert not served.running
    assert refused(served.url + "/ping")
    assert not serving_threads()


def test_two_servers_run_side_by_side_and_stop_is_idempotent():
    a, b = serve(hello), serve(hello)
    try:
        assert a.port != b.port
        assert httpx.post(a.url + "/a").text == "POST /a"
        assert httpx.post(b.url + "/b").text == "POST /b"
    finally:
        a.stop()
        b.stop()
        b.stop()  # twice is fine
    assert not serving_threads()


def test_a_fixed_port_is_honoured_and_a_taken_port_is_an_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with serve(hello, port=port) as served:
        assert served.port == port
        with pytest.raises(OSError):
            serve(hello, port=port)
    assert not serving_threads()


def test_stop_lets_a_request_in_flight_finish():
    served = serve(hello)
    result: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: result.append(httpx.get(served.url + "/slow", timeout=5)))
    worker.start()
    time.sleep(0.1)
    served.stop()
    worker.join(5)
    assert result and result[0].text == "GET /slow"
    assert not serving_threads()


def test_serve_forever_reports_ready_and_returns_when_asked_to_stop():
    stop = threading.Event()
    urls: list[str] = []
    ready = threading.Event()

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    runner = threading.Thread(target=serve_forever, args=(hello, "127.0.0.1", 0),
                              kwargs={"ready": on_ready, "stop": stop})
    runner.start()
    assert ready.wait(5)
    assert httpx.get(urls[0] + "/x").text == "GET /x"
    stop.set()
    runner.join(5)
    assert not runner.is_alive()
    assert refused(urls[0] + "/x")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_forever_in_a_process_stops_cleanly_on_a_signal(sig):
    code = textwrap.dedent("""
        import sys
        from hub.testing.serve import serve_forever
        from tests.hub.testing.test_serve import hello
        serve_forever(hello, "127.0.0.1", 0, ready=lambda url: print(url, flush=True))
        print("stopped", flush=True)
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=root)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url + "/up").status_code == 200
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert out.strip() == "stopped"


def test_answers_do_not_wait_for_delayed_acks():
    """Without TCP_NODELAY on accepted sockets, a POST answered in two writes waits ~40 ms (Nagle)."""
    body = b"x" * 5_000

    async def api(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"5000")]})
        await send({"type": "http.response.body", "body": body})

    with serve(api) as served, httpx.Client(base_url=served.url) as client:
        client.post("/warm", json={})
        times = []
        for i in range(11):
            start = time.perf_counter()
            assert len(client.post("/", json={"after": str(i)}).content) == 5_000
            times.append(time.perf_counter() - start)
    times.sort()
    assert times[len(times) // 2] < 0.03, times  # the median: ~1 ms when right, >= 40 ms when not

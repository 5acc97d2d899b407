"""Fixtures for the Pipedrive tests: one loopback server per module, a fresh sandbox behind it per test,
and a recorder of every exchange (for checking them against Pipedrive's spec)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from connectors.pipedrive import PipedriveConnector, PipedriveSettings
from connectors.pipedrive.sandbox import PipedriveSandbox
from hub.http import RetryPolicy
from hub.sync import Connection
from hub.testing.serve import serve


@dataclass
class Exchange:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""


class Switch:
    """An ASGI app that forwards to the current test's sandbox, recording what passes and how many at once."""

    def __init__(self) -> None:
        self.target: PipedriveSandbox | None = None
        self.log: list[Exchange] = []
        self.record = False
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.record:
            await self.target.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def recv() -> Any:
            message = await receive()
            chunks.append(message.get("body", b""))
            return message

        query = httpx.QueryParams(scope.get("query_string", b"").decode())
        ex = Exchange(scope["method"], scope["path"], list(query.multi_items()),
                      {k.decode(): v.decode() for k, v in scope["headers"]}, b"")

        async def sent(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                ex.status = message["status"]
                ex.response_headers = {k.decode(): v.decode() for k, v in message["headers"]}
            elif message["type"] == "http.response.body":
                ex.content += message.get("body", b"")
            await send(message)

        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.target.app(scope, recv, sent)
        finally:
            with self._lock:
                self.in_flight -= 1
        ex.body = b"".join(chunks)
        self.log.append(ex)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Switch, str]]:
    switch = Switch()
    with serve(switch) as served:
        yield switch, served.url


@pytest.fixture
def make(server: tuple[Switch, str]) -> Iterator[Any]:
    """``make(**sandbox_kwargs) -> (sandbox, httpx client)``; unlimited unless told otherwise."""
    switch, url = server
    clients: list[httpx.Client] = []

    def make(**kw: Any) -> tuple[PipedriveSandbox, httpx.Client]:
        box = PipedriveSandbox(**{"rate": None, **kw})
        box.url = url
        switch.target, switch.log, switch.record = box, [], False
        switch.most_in_flight = 0
        clients.append(httpx.Client(base_url=url, headers={"x-api-token": box.token}, timeout=10))
        return box, clients[-1]

    yield make
    for c in clients:
        c.close()


def connect(box: PipedriveSandbox, name: str = "sales", **settings: Any) -> Connection:
    """A connection to ``box`` (unlimited unless ``rate`` or ``unlimited`` is given; retries 10 ms apart)."""
    if "rate" not in settings:
        settings.setdefault("unlimited", True)
    s = PipedriveSettings(**{"base_url": box.url, "token": box.token, **settings})
    return Connection(name, PipedriveConnector(s, connection=name, policy=RetryPolicy(base=0.01)))

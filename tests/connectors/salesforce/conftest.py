"""One HTTPS server for the whole session, answering as whichever sandbox the current test put behind it.

Starting and stopping uvicorn per test costs ~0.3 s; the sandbox's own ``serve()``
is still exercised (``test_the_connector_stops_before_the_daily_budget_runs_out``).
"""

from __future__ import annotations

from typing import Any

import pytest

from connectors.salesforce.sandbox import SalesforceSandbox
from hub.testing.serve import serve
from hub.testing.tls import loopback_tls


class Switchboard:
    """An ASGI app that hands each request to the current sandbox's app."""

    def __init__(self) -> None:
        self.box: SalesforceSandbox | None = None
        self.url = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert self.box is not None, "no sandbox behind the switchboard"
        await self.box.app(scope, receive, send)


@pytest.fixture(scope="session")
def switchboard():
    board = Switchboard()
    with serve(board, tls=loopback_tls()) as served:
        board.url = served.url
        yield board


@pytest.fixture
def put(switchboard):
    """``put(box)`` serves ``box`` for this test and returns its URL (also set as ``box.url``)."""
    def put(box: SalesforceSandbox) -> str:
        switchboard.box = box
        box.url = switchboard.url
        return box.url
    yield put
    switchboard.box = None

"""The LeadHub pytest plugin (entry point ``pytest11: leadhub``), loaded once ``leadhub`` is installed.

Fixtures for any connector's tests:

* ``leadhub_store`` — a migrated, empty SQLite store in the test's ``tmp_path``;
* ``served_sandbox`` — serve a sandbox on loopback for the length of the test:
  ``url = served_sandbox(box)``;
* ``conformance_kit`` — a :class:`hub.testing.kit.Kit` for a connector and sandbox pair, for checks
  of your own beside the suite: ``kit = conformance_kit(AcmeConnector, AcmeSandbox)``.

At the end of a run it prints the API calls per record that every
:class:`hub.testing.conformance.ConformanceSuite` measured. The suite itself needs none of these
fixtures (it brings its own), so it also runs with the plugin disabled (``-p no:leadhub``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["leadhub_store", "served_sandbox", "conformance_kit", "pytest_terminal_summary"]


@pytest.fixture
def leadhub_store(tmp_path: Path) -> Iterator[Any]:
    """A migrated, empty :class:`hub.store.Store` on SQLite."""
    from hub.store import Store

    store = Store(f"sqlite:///{tmp_path / 'leadhub.db'}")
    store.migrate()
    yield store
    store.dispose()


@pytest.fixture
def served_sandbox() -> Iterator[Callable[[Any], str]]:
    """``served_sandbox(box) -> url``: serve ``box`` until the test ends."""
    running: list[Any] = []

    def serve(box: Any) -> str:
        served = box.serve()
        running.append(served)
        return served.url

    yield serve
    for served in reversed(running):
        served.stop()


@pytest.fixture
def conformance_kit(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``conformance_kit(Connector, Sandbox, **sandbox_kwargs) -> Kit``, served until the test ends."""
    from hub.testing.conformance import ConformanceSuite
    from hub.testing.kit import Kit

    opened: list[Any] = []

    def open_kit(connector: type, sandbox: type, **sandbox_kwargs: Any) -> Any:
        suite = type(f"{connector.__name__}Kit", (ConformanceSuite,), {"connector": connector,
                                                                         "sandbox": sandbox})
        kit = Kit(suite, tmp_path / f"kit{len(opened)}", **sandbox_kwargs).__enter__()
        opened.append(kit)
        return kit

    yield open_kit
    for kit in reversed(opened):
        kit.__exit__(None, None, None)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    conformance = sys.modules.get("hub.testing.conformance")
    reports = getattr(conformance, "REPORTS", None)
    if reports:
        terminalreporter.write_sep("-", "leadhub conformance: API calls per record")
        for report in reports:
            terminalreporter.write_line(str(report))

"""Shared fixtures: a real SQLite file and a real PostgreSQL server (pgserver) per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.store import Store

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL server started for this test session (pgserver), or $LEADHUB_TEST_PG_URL."""
    if url := os.environ.get("LEADHUB_TEST_PG_URL"):
        yield url
        return
    pgserver = pytest.importorskip("pgserver", reason="pgserver is not installed: pip install -e '.[test]'")
    folder = tempfile.mkdtemp(prefix="leadhub-pg-")
    server = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


_pg_db_counter = iter(range(1, 10_000))


def _fresh_pg_database(base_url: str) -> str:
    import sqlalchemy as sa

    from hub.store import normalise_url

    name = f"leadhub_test_{os.getpid()}_{next(_pg_db_counter)}"
    engine = sa.create_engine(normalise_url(base_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = sa.engine.make_url(normalise_url(base_url)).set(database=name)
    return url.render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path) -> Iterator[Store]:
    """A migrated, empty store on real SQLite and on a real PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hub.db'}"
    else:
        url = _fresh_pg_database(request.getfixturevalue("pg_url"))
    s = Store(url)
    s.migrate()
    yield s
    s.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """One migrated SQLite file per session; tests get copies (migrating each time costs ~0.3 s)."""
    path = tmp_path_factory.mktemp("template") / "hub.db"
    s = Store(f"sqlite:///{path}")
    s.migrate()
    s.dispose()
    return path


@pytest.fixture
def sqlite_store(sqlite_template, tmp_path) -> Iterator[Store]:
    """A migrated, empty SQLite store of this test's own."""
    shutil.copy(sqlite_template, tmp_path / "hub.db")
    s = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    yield s
    s.dispose()


@pytest.fixture
def db(sqlite_store) -> Store:
    """The rule tests' name for :func:`sqlite_store`."""
    return sqlite_store

"""The hub's own books: leads, their links into each CRM, history, cursors, outbox, runs.

SQLModel tables over SQLite (the embedded default) or PostgreSQL (production),
chosen by URL. The schema is owned by Alembic migrations in ``hub/migrations``
(:meth:`Store.migrate`); a test checks the migrations and these models agree.

Tables and what they promise:

* ``leads`` — one canonical lead per person (:class:`hub.model.Lead` fields), with its
  match keys (:mod:`hub.identity`) and each field's provenance (who set it, when).
* ``links`` — a lead's record in one connection: ``(connection, object, remote_id)``
  is unique, and so is ``(lead_id, connection, object)``. ``synced`` holds the
  canonical fields the remote holds as the hub last wrote or read them, and
  ``synced_hash`` their hash: a pulled record with the same hash is no change
  (no echoes), and a changed one is compared field by field. A deleted or merged-away
  record leaves a tombstone (``deleted_at``, ``merged_into``): the hub never re-creates it.
* ``status_history`` — every status move: from, to, when, by whom, from where.
* ``cursors`` — per connection and object, committed with the page it follows.
* ``outbox`` — pending writes; one open row per (connection, lead), idempotent
  by the hub's lead id, retried until done or dismissed.
* ``runs`` — the run log; ``record_issues`` — malformed or rejected records, verbatim.
* ``conflicts`` — illegal status moves and field clashes reported by a CRM, kept, never applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Session, SQLModel

from hub.model import LEAD_FIELDS, Lead

__all__ = [
    "UTCDateTime",
    "LeadRow",
    "Link",
    "StatusChange",
    "Cursor",
    "OutboxRow",
    "Run",
    "RecordIssue",
    "Conflict",
    "Store",
    "lead_from_row",
    "row_values",
]


class UTCDateTime(TypeDecorator):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite drops tz)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _ts(**kw: Any) -> Any:
    return Field(default=None, sa_type=UTCDateTime, **kw)


class LeadRow(SQLModel, table=True):
    __tablename__ = "leads"

    id: str = Field(primary_key=True, max_length=64)
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = Field(default=None, index=True)
    phone: str | None = None
    company: str | None = None
    domain: str | None = Field(default=None, index=True)
    title: str | None = None
    country: str | None = None
    source: str | None = None
    owner: str | None = Field(default=None, index=True)
    status: str = Field(index=True)
    status_since: datetime | None = _ts()
    score: float | None = None
    value: float | None = None
    currency: str | None = None
    probability: float | None = None
    expected_close: date | None = None
    next_action: date | None = None
    loss_reason: str | None = None
    rejection_reason: str | None = None
    custom: dict = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()
    # match keys (hub.identity), derived from the fields above by row_values
    email_key: str | None = Field(default=None, index=True, max_length=320)
    phone_key: str | None = Field(default=None, index=True, max_length=32)
    name_key: str | None = Field(default=None, index=True, max_length=400)
    # field -> [connection or "rule:<name>", ISO time]: who set the value and when (conflict rules)
    provenance: dict = Field(default_factory=dict, sa_type=sa.JSON)


class Link(SQLModel, table=True):
    __tablename__ = "links"
    __table_args__ = (
        sa.UniqueConstraint("connection", "object", "remote_id", name="uq_links_remote"),
        sa.UniqueConstraint("lead_id", "connection", "object", name="uq_links_lead"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: str = Field(foreign_key="leads.id", max_length=64)
    connection: str = Field(max_length=100)
    object: str = Field(max_length=100)
    remote_id: str = Field(max_length=255)
    remote_modified: datetime | None = _ts()
    synced_hash: str | None = Field(default=None, max_length=64)
    synced: dict = Field(default_factory=dict, sa_type=sa.JSON)  # the remote's canonical fields, as last seen
    deleted_at: datetime | None = _ts()  # a tombstone: the record is gone; the hub never re-creates it
    merged_into: str | None = Field(default=None, max_length=255)  # the remote id that absorbed it, if merged


class StatusChange(SQLModel, table=True):
    __tablename__ = "status_history"

    id: int | None = Field(default=None, primary_key=True)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=64)
    from_status: str | None = None
    to_status: str
    at: datetime | None = _ts()
    by: str  # "connection:<name>", "rule:<name>", or a user
    connection: str | None = None
    incomplete: list = Field(default_factory=list, sa_type=sa.JSON)


class Cursor(SQLModel, table=True):
    __tablename__ = "cursors"

    connection: str = Field(primary_key=True, max_length=100)
    object: str = Field(primary_key=True, max_length=100)
    value: dict = Field(default_factory=dict, sa_type=sa.JSON)
    updated_at: datetime | None = _ts()


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_pending", "connection", "state"),)

    id: int | None = Field(default=None, primary_key=True)
    connection: str = Field(max_length=100)
    object: str = Field(max_length=100)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=64)
    remote_id: str | None = None
    fields: dict = Field(default_factory=dict, sa_type=sa.JSON)
    reasons: dict = Field(default_factory=dict, sa_type=sa.JSON)  # field -> the rule that decided it
    state: str = Field(default="pending", max_length=20)  # pending | failed | done | dismissed
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()


class Run(SQLModel, table=True):
    __tablename__ = "runs"

    id: int | None = Field(default=None, primary_key=True)
    connection: str = Field(index=True, max_length=100)
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    status: str = Field(default="running", max_length=20)  # running | ok | error
    counts: dict = Field(default_factory=dict, sa_type=sa.JSON)
    api_calls: int = 0
    error: str | None = None


class RecordIssue(SQLModel, table=True):
    __tablename__ = "record_issues"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="runs.id", index=True)
    connection: str = Field(max_length=100)
    remote_id: str | None = None
    lead_id: str | None = None
    kind: str = Field(max_length=20)  # malformed | rejected
    message: str
    at: datetime | None = _ts()


class Conflict(SQLModel, table=True):
    __tablename__ = "conflicts"

    id: int | None = Field(default=None, primary_key=True)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=64)
    connection: str = Field(max_length=100)
    field: str = Field(max_length=100)
    hub_value: str | None = None
    remote_value: str | None = None
    reason: str
    at: datetime | None = _ts()
    resolved_at: datetime | None = _ts()


_DERIVED = ("created_at", "updated_at", "email_key", "phone_key", "name_key", "provenance")
_ROW_FIELDS = [f for f in LeadRow.model_fields if f not in _DERIVED]


def row_values(lead: Lead) -> dict[str, Any]:
    """Column values for a lead (for inserts and updates), its match keys included."""
    from hub.identity import match_keys

    data = lead.model_dump()
    return {**{k: data[k] for k in _ROW_FIELDS}, **match_keys(data).as_dict()}


def lead_from_row(row: LeadRow | sa.Row) -> Lead:
    mapping = row._mapping if isinstance(row, sa.Row) else row.__dict__
    return Lead.model_validate({k: mapping[k] for k in _ROW_FIELDS if k in LEAD_FIELDS or k == "custom"})


MIGRATIONS = Path(__file__).parent / "migrations"

#: Modules whose SQLModel tables the migrations cover (beyond this one). A module that adds
#: tables is listed here and ships an Alembic revision for them in ``hub/migrations/versions``.
TABLE_MODULES: tuple[str, ...] = (
    "hub.actions",
    "rules.routing.tables",
    "rules.dedup.tables",
)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and pick the psycopg 3 driver for it."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


class Store:
    """The hub's database. ``Store(url).migrate()`` brings the schema up to date."""

    def __init__(self, url: str):
        self.url = normalise_url(url)
        if self.url.startswith("sqlite"):
            path = sa.engine.make_url(self.url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(self.url, connect_args={"timeout": 30})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(self.url, pool_pre_ping=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema with Alembic (safe to call on every start)."""
        from alembic import command

        command.upgrade(self.alembic_config(), revision)

    def alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        return cfg

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on error: one transaction."""
        with Session(self.engine, expire_on_commit=False) as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def get_lead(self, lead_id: str) -> Lead | None:
        with Session(self.engine) as s:
            row = s.get(LeadRow, lead_id)
            return lead_from_row(row) if row else None

    def count(self, table: type[SQLModel], *where: Any) -> int:
        with Session(self.engine) as s:
            return s.exec(sa.select(sa.func.count()).select_from(table).where(*where)).one()[0]

    def dispose(self) -> None:
        self.engine.dispose()

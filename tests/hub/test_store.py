"""The store against real SQLite and a real PostgreSQL server."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from hub import outbox
from hub.model import Lead
from hub.store import Cursor, LeadRow, Link, OutboxRow, StatusChange, lead_from_row, row_values


def test_migrations_match_the_models(store):
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == []


def test_migrate_is_idempotent(store):
    store.migrate()
    assert store.count(LeadRow) == 0


def test_lead_round_trips_with_types_and_custom_fields(store):
    lead = Lead(first_name="Zoë", last_name="Müller", email="zoe@example.de", status="Opportunity",
                value=12500.5, probability=0.4, expected_close=date(2027, 3, 1),
                status_since=datetime(2026, 11, 1, 12, 30, tzinfo=timezone.utc),
                custom={"industry": "Software", "seats": 40})
    with store.session() as s:
        s.add(LeadRow(**row_values(lead)))
    back = store.get_lead(lead.id)
    assert back == lead
    assert back.status_since.tzinfo is not None


def test_link_is_unique_per_remote_record_and_per_lead(store):
    a, b = Lead(last_name="A"), Lead(last_name="B")
    with store.session() as s:
        s.add_all([LeadRow(**row_values(a)), LeadRow(**row_values(b))])
        s.flush()
        s.add(Link(lead_id=a.id, connection="m", object="contacts", remote_id="1"))
    with pytest.raises(sa.exc.IntegrityError):
        with store.session() as s:
            s.add(Link(lead_id=b.id, connection="m", object="contacts", remote_id="1"))
    with pytest.raises(sa.exc.IntegrityError):
        with store.session() as s:
            s.add(Link(lead_id=a.id, connection="m", object="contacts", remote_id="2"))
    assert store.count(Link) == 1


def test_failed_transaction_leaves_nothing_behind(store):
    lead = Lead(last_name="Rollback")
    with pytest.raises(RuntimeError):
        with store.session() as s:
            s.add(LeadRow(**row_values(lead)))
            s.flush()
            s.merge(Cursor(connection="m", object="contacts", value={"since": 1}))
            raise RuntimeError("crash mid-page")
    assert store.count(LeadRow) == 0
    assert store.count(Cursor) == 0


def test_outbox_keeps_one_open_row_per_lead_and_merges(store):
    lead = Lead(last_name="Queue")
    with store.session() as s:
        s.add(LeadRow(**row_values(lead)))
        s.flush()
        outbox.enqueue(s, connection="m", object="contacts", lead_id=lead.id, fields={"status": "MQL"})
    with store.session() as s:
        outbox.enqueue(s, connection="m", object="contacts", lead_id=lead.id, fields={"owner": "a@x.io"},
                       remote_id="9")
    with store.session() as s:
        rows = outbox.open_rows(s, "m")
        assert len(rows) == 1
        assert rows[0].fields == {"status": "MQL", "owner": "a@x.io"}
        assert rows[0].remote_id == "9"
        outbox.mark_failed(rows[0], "VALIDATION_ERROR: bad email")
    with store.session() as s:
        assert outbox.pending_count(s, "m") == 1  # a failed write stays open: retried next run
        row = outbox.open_rows(s, "m")[0]
        outbox.mark_done(row)
    with store.session() as s:
        assert outbox.pending_count(s, "m") == 0
        assert s.exec(sa.select(OutboxRow)).scalars().one().attempts == 2


def test_status_history_reads_back_in_order(store):
    lead = Lead(last_name="H")
    with store.session() as s:
        s.add(LeadRow(**row_values(lead)))
        s.flush()
        for i, (a, b) in enumerate([(None, "Lead"), ("Lead", "MQL"), ("MQL", "SAL")]):
            s.add(StatusChange(lead_id=lead.id, from_status=a, to_status=b, by="test",
                               at=datetime(2026, 1, 1 + i, tzinfo=timezone.utc)))
    with store.session() as s:
        rows = s.exec(sa.select(StatusChange).where(StatusChange.lead_id == lead.id)
                      .order_by(StatusChange.at)).scalars().all()
        assert [r.to_status for r in rows] == ["Lead", "MQL", "SAL"]
        assert lead_from_row(s.get(LeadRow, lead.id)).last_name == "H"

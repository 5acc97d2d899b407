"""The Dynamics 365 connector against its served sandbox, through the sync engine and a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from connectors.dynamics import DynamicsConnector, DynamicsSettings
from connectors.dynamics.sandbox import DynamicsSandbox
from hub import outbox
from hub.connector import WriteOp
from hub.model import Lead, Status
from hub.store import Conflict, Cursor, LeadRow, Link, OutboxRow, row_values
from hub.sync import Connection, Syncer, SyncOutcome
from hub.testing.kit import on_sandbox_clock

HUB_ID = "leadhub_leadhubid"


@pytest.fixture
def connect(box):
    """Build connections to the served sandbox; every connector is closed afterwards."""
    made: list[DynamicsConnector] = []

    def make(sandbox: DynamicsSandbox | None = None, **overrides) -> Connection:
        sb = sandbox or box
        settings = DynamicsSettings(**{**sb.connector_settings(sb.url), **overrides})
        made.append(DynamicsConnector(settings, connection="sales"))
        return Connection("sales", made[-1], "sales")

    yield make
    for c in made:
        c.close()


def leads_and_links(store) -> tuple[int, list[str]]:
    with Session(store.engine) as s:
        leads = s.execute(sa.select(sa.func.count()).select_from(LeadRow)).scalar_one()
        links = s.execute(sa.select(Link.remote_id)).scalars().all()
    return leads, links


def status_of(store, remote_id: str) -> str:
    with Session(store.engine) as s:
        lead_id = s.execute(sa.select(Link.lead_id).where(Link.remote_id == remote_id)).scalar_one()
        return s.get(LeadRow, lead_id).status


def queue(store, lead: Lead, fields: dict, remote_id: str | None = None) -> None:
    with store.session() as s:
        if s.get(LeadRow, lead.id) is None:
            s.add(LeadRow(**row_values(lead)))
            s.flush()
        outbox.enqueue(s, connection="sales", object="leads", lead_id=lead.id, fields=fields,
                       remote_id=remote_id)


def test_first_sync_takes_every_lead_once_and_the_next_writes_nothing(sqlite_store, box, connect):
    box.seed(450, seed=1)
    first = Syncer(sqlite_store).run(connect())
    assert first.error is None and first.created == 450
    leads, links = leads_and_links(sqlite_store)
    assert leads == 450 and len(links) == len(set(links)) == 450
    assert all(row[HUB_ID] for row in box.leads.values())  # the hub's id stamped into every lead...
    assert first.pushed == 450 and first.push_calls == 5  # ...by UpsertMultiple, 100 targets a call
    assert box.odata_headers == {("4.0", "4.0", "application/json")}
    second = Syncer(sqlite_store).run(connect())  # the stamps come back through the delta link
    assert second.error is None and second.pulled == 450 and second.unchanged == 450
    assert (second.created, second.updated, second.pushed, second.push_calls) == (0, 0, 0, 0)
    third = Syncer(sqlite_store).run(connect())
    assert (third.pulled, third.pushed) == (0, 0)


def test_leads_sharing_one_modified_time_survive_an_interrupted_pull(sqlite_store, box, connect):
    box.clock.freeze(datetime(2026, 11, 1, 9, 0, tzinfo=UTC))
    for i in range(450):
        box.add_lead({"lastname": f"P{i}", "emailaddress1": f"p{i}@tie.example"})
    box.clock.unfreeze()

    class Crash(Exception):
        pass

    def crash_after_the_first_leads(phase: str, n: int) -> None:
        if n:
            raise Crash

    with pytest.raises(Crash):
        Syncer(sqlite_store).run(connect(page_size=200), push=False, progress=crash_after_the_first_leads)
    assert leads_and_links(sqlite_store)[0] == 200  # the page and its cursor (a nextLink) committed together
    with Session(sqlite_store.engine) as s:
        assert "$skiptoken=" in s.get(Cursor, ("sales", "leads")).value["leads"]["next"]
    out = Syncer(sqlite_store).run(connect(page_size=200), push=False)
    leads, links = leads_and_links(sqlite_store)
    assert leads == 450 and len(set(links)) == 450
    assert out.created == 250 and out.pulled == 250  # resumed at the paging cookie: nothing read twice


def test_remote_edits_deals_and_deletions_apply(sqlite_store, box, connect):
    a = box.add_lead({"lastname": "A", "emailaddress1": "a@acme.example"})
    b = box.add_lead({"lastname": "B", "statecode": 0, "statuscode": 582300001})  # Sales Qualified: SQL
    c = box.add_lead({"lastname": "C"})
    syncer = Syncer(sqlite_store)
    assert syncer.run(connect()).created == 3
    box.update_lead(a, {"statuscode": 582300000, "telephone1": "+49 30 123456"})  # Marketing Qualified
    deal = box.qualify(b, estimatedvalue=12_000.0, salesstage=1)
    box.delete_lead(c)
    out = syncer.run(connect())
    assert out.error is None and (out.updated, out.deleted) == (2, 1)
    assert status_of(sqlite_store, a) == "MQL" and status_of(sqlite_store, b) == "Opportunity"
    with Session(sqlite_store.engine) as s:
        phone = s.execute(sa.select(LeadRow.phone).where(LeadRow.last_name == "A")).scalar_one()
        assert phone == "+49 30 123456"
        assert s.execute(sa.select(LeadRow.value).where(LeadRow.last_name == "B")).scalar_one() == 12_000.0
        assert s.execute(sa.select(Link.deleted_at).where(Link.remote_id == c)).scalar_one() is not None
    box.update_opportunity(deal, {"statecode": 1, "statuscode": 3})  # the deal is won; the lead is untouched
    won = syncer.run(connect())
    assert won.updated == 1 and status_of(sqlite_store, b) == "Closed Won"


def test_an_illegal_move_reported_by_dynamics_becomes_a_conflict(sqlite_store, box, connect):
    lead = box.add_lead({"lastname": "Jump"})
    syncer = Syncer(sqlite_store)
    syncer.run(connect())
    box.update_opportunity(box.qualify(lead), {"statecode": 1, "statuscode": 3})  # Lead -> Closed Won
    assert syncer.run(connect()).conflicts == 1
    with Session(sqlite_store.engine) as s:
        conflict = s.execute(sa.select(Conflict)).scalars().one()
        assert (conflict.hub_value, conflict.remote_value) == ("Lead", "Closed Won")


def test_creates_are_idempotent_by_hub_id_even_after_a_crash_before_commit(sqlite_store, box, connect):
    owner = next(u for u in box.tables["systemusers"].rows.values() if u["internalemailaddress"])
    lead = Lead(first_name="Ada", last_name="Lovelace", email="ada@engine.example", status="SAL",
                source="referral", owner=owner["internalemailaddress"])
    queue(sqlite_store, lead, {})
    conn = connect()
    conn.connector.write([WriteOp(lead.id, lead.model_dump(), None)])  # written, then the hub dies
    c = conn
    out = SyncOutcome(c.name)
    Syncer(sqlite_store).push(c, out)  # the rerun pushes again (a pull first would match it instead)
    assert out.pushed == 1 and out.error is None
    rows = [r for r in box.leads.values() if r[HUB_ID] == lead.id]
    assert len(rows) == 1
    assert (rows[0]["statecode"], rows[0]["statuscode"], rows[0]["leadsourcecode"]) == (0, 2, 3)
    assert rows[0]["_ownerid_value"] == owner["systemuserid"]
    with Session(sqlite_store.engine) as s:
        linked = s.execute(sa.select(Link.remote_id).where(Link.lead_id == lead.id)).scalar_one()
        assert linked == rows[0]["leadid"]
    again = Syncer(sqlite_store).run(connect())
    assert (again.updated, again.created, again.pushed) == (0, 0, 0)


def test_an_update_writes_status_and_owner_by_binding_the_user(sqlite_store, box, connect):
    rid = box.add_lead({"lastname": "Owned"})
    Syncer(sqlite_store).run(connect())
    owner = next(u for u in box.tables["systemusers"].rows.values() if u["internalemailaddress"])
    email = owner["internalemailaddress"]
    with sqlite_store.session() as s:  # the hub moves the lead to Nurture and assigns it
        lead_id = s.execute(sa.select(Link.lead_id).where(Link.remote_id == rid)).scalar_one()
        row = s.get(LeadRow, lead_id)
        row.status, row.owner = Status.NURTURE.value, email
        outbox.enqueue(s, connection="sales", object="leads", lead_id=lead_id,
                       fields={"status": row.status, "owner": email}, remote_id=rid)
    out = Syncer(sqlite_store).run(connect())
    assert out.pushed == 1 and out.error is None
    written = box.leads[rid]
    assert (written["statecode"], written["statuscode"], written["_ownerid_value"]) == \
        (0, 582300002, owner["systemuserid"])
    again = Syncer(sqlite_store).run(connect())  # the write comes back through the delta link...
    assert again.pulled == 1 and (again.updated, again.pushed) == (0, 0)  # ...as no news


def test_a_rejected_record_keeps_the_vendor_message_and_the_rest_is_written(sqlite_store, box, connect):
    good = [Lead(last_name=f"G{i}", email=f"g{i}@ok.example") for i in range(5)]
    bad = Lead(last_name="Bad", **box.invalid_fields())
    for lead in good[:2] + [bad] + good[2:]:
        queue(sqlite_store, lead, {})
    out = Syncer(sqlite_store).run(connect())
    assert out.pushed == 5 and out.rejected == 1
    with Session(sqlite_store.engine) as s:
        row = s.execute(sa.select(OutboxRow).where(OutboxRow.lead_id == bad.id)).scalars().one()
        assert row.state == "failed"
        assert row.last_error == ("A validation error occurred.  The length of the 'emailaddress1' attribute "
                                  "of the 'lead' entity exceeded the maximum allowed length of '100'.")
    assert sorted(r[HUB_ID] for r in box.leads.values()) == sorted(g.id for g in good)
    again = Syncer(sqlite_store).run(connect())  # retried next run, refused again, still verbatim
    assert again.rejected == 1


def test_an_edit_to_a_lead_deleted_in_dynamics_is_refused_not_recreated(sqlite_store, box, connect):
    kept, gone = box.add_lead({"lastname": "Kept"}), box.add_lead({"lastname": "Gone"})
    syncer = Syncer(sqlite_store)
    syncer.run(connect())
    box.delete_lead(gone)
    with sqlite_store.session() as s:  # the hub edits both before it hears of the deletion
        for rid in (kept, gone):
            lead_id = s.execute(sa.select(Link.lead_id).where(Link.remote_id == rid)).scalar_one()
            s.get(LeadRow, lead_id).title = "Buyer"
            outbox.enqueue(s, connection="sales", object="leads", lead_id=lead_id, fields={"title": "Buyer"},
                           remote_id=rid)
    out = SyncOutcome("sales")
    syncer.push(connect(), out)  # pushed before the deletion is pulled: Dynamics refuses it, nothing is re-created
    assert (out.pushed, out.rejected) == (1, 1)
    assert list(box.leads) == [kept] and box.leads[kept]["jobtitle"] == "Buyer"
    with Session(sqlite_store.engine) as s:
        errors = s.execute(sa.select(OutboxRow.last_error).where(OutboxRow.state == "failed")).scalars().all()
    assert errors == [f"lead With Id = {gone} Does Not Exist"]
    out = syncer.run(connect())  # the cycle pulls the deletion first: the refused write is dismissed, not retried
    assert (out.deleted, out.pushed, out.rejected, out.dismissed) == (1, 0, 0, 1)
    with Session(sqlite_store.engine) as s:
        assert s.execute(sa.select(OutboxRow.state).where(OutboxRow.state.in_(("pending", "failed")))).all() == []


def test_a_wrong_secret_is_a_clear_auth_error_without_the_secret(sqlite_store, box, connect):
    box.seed(3)
    out = Syncer(sqlite_store).run(connect(client_secret="wrong-secret-123"))
    assert out.error and "credentials refused" in out.error and "AADSTS7000215" in out.error
    assert "[sales]" in out.error and "wrong-secret-123" not in out.error and box.token not in out.error


def test_an_expired_token_is_renewed_and_an_expired_delta_link_resyncs_without_duplicates(sqlite_store, box,
                                                                                         connect):
    ids = box.seed(30, seed=5)
    syncer, conn = Syncer(sqlite_store), connect()
    assert syncer.run(conn).created == 30
    box.clock.advance(8 * 86_400)  # past the token's life and past ExpireChangeTrackingInDays
    box.update_lead(ids[0], {"jobtitle": "Chief Resync Officer"})
    conn.connector.meter.by_status.clear()
    out = syncer.run(conn)  # msal still holds the token it thinks fresh
    assert out.error is None and out.created == 0 and out.pulled >= 30  # a full snapshot again
    assert conn.connector.meter.by_status[401] == 1 and conn.connector.meter.by_status[410] >= 1
    leads, links = leads_and_links(sqlite_store)
    assert leads == 30 and len(set(links)) == 30
    with Session(sqlite_store.engine) as s:
        assert s.execute(sa.select(LeadRow.title).where(LeadRow.title == "Chief Resync Officer")).scalar_one()
        cursor = s.get(Cursor, ("sales", "leads")).value
    assert "$deltatoken=" in cursor["leads"]["delta"] and "$deltatoken=" in cursor["opportunities"]["delta"]


def test_rate_limit_answers_are_waited_out_as_told(sqlite_store, connect):
    box = DynamicsSandbox(rate=4, window=2)
    box.seed(40, seed=6)
    with box.serve() as served:
        box.url = served.url
        conn = connect(box, page_size=10)
        on_sandbox_clock(conn.connector, box.clock)  # waits advance the sandbox's clock, not ours
        before = box.clock.monotonic()
        out = Syncer(sqlite_store).run(conn)  # 7 calls: 4 pass, then 429 with Retry-After
        conn.connector.close()
    assert out.error is None and out.created == 40 and out.pushed == 40
    assert out.throttled >= 1 and conn.connector.meter.waited >= 1.0
    assert box.clock.monotonic() - before >= 1.0  # the window was waited out, on the sandbox's time


def test_server_errors_are_retried_and_the_run_completes(sqlite_store, box, connect):
    box.seed(120, seed=3)
    box.faults.add(status=500, count=2, path_contains="/leads")
    box.faults.add(status=503, count=1, path_contains="UpdateMultiple")
    conn = connect()
    on_sandbox_clock(conn.connector, box.clock)  # backoff in 20 ms steps
    out = Syncer(sqlite_store).run(conn)
    assert out.error is None and out.created == 120 and out.pushed == 120
    assert conn.connector.meter.retries == 3 and conn.connector.meter.by_status[503] == 1


def test_every_status_maps_both_ways(box, connect):
    cn = connect().connector
    for values in box.remote_status_values():
        assert cn.statuses.to_canonical(values) is not None, values
    for status in Status:
        assert cn.mapped({"status": status.value}) == {"status": status.value}

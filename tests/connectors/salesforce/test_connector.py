"""The Salesforce connector against its served sandbox (HTTPS, simple-salesforce), through the sync engine
and a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from connectors.salesforce import DailyBudget, SalesforceConnector, SalesforceSettings
from connectors.salesforce.sandbox import SalesforceSandbox
from hub import outbox
from hub.connector import WriteOp
from hub.errors import RateLimitError
from hub.http import Answer, RetryPolicy
from hub.model import Lead
from hub.store import Conflict, LeadRow, Link, OutboxRow, row_values
from hub.sync import Connection, Syncer, SyncOutcome

OWNER = "james.lewis@northwind-sales.example"  # a fakedata.team(0) member, so a user of the sandbox org


@pytest.fixture
def box(put):
    sandbox = SalesforceSandbox(rate=None)
    put(sandbox)
    return sandbox


@pytest.fixture
def make(box):
    made = []

    def make(policy: RetryPolicy | None = None, **settings) -> Connection:
        s = SalesforceSettings(**{**box.connector_settings(box.url), **settings})
        conn = Connection("sales", SalesforceConnector(s, connection="sales", policy=policy), "sales")
        made.append(conn.connector)
        return conn
    yield make
    for connector in made:
        connector.close()


def leads_and_links(store):
    with Session(store.engine) as s:
        leads = s.execute(sa.select(sa.func.count()).select_from(LeadRow)).scalar_one()
        links = s.execute(sa.select(Link.remote_id)).scalars().all()
    return leads, links


def lead_by_email(store, email):
    with Session(store.engine) as s:
        return s.execute(sa.select(LeadRow).where(LeadRow.email == email)).scalars().one()


def queue(store, lead: Lead, fields: dict, remote_id=None):
    """Make ``lead`` the hub's state (with ``fields`` applied) and queue their write."""
    lead = lead.model_copy(update=fields)
    with store.session() as s:
        row = s.get(LeadRow, lead.id)
        if row is None:
            s.add(LeadRow(**row_values(lead)))
        else:
            for k, v in row_values(lead).items():
                setattr(row, k, v)
        s.flush()
        outbox.enqueue(s, connection="sales", object="Lead", lead_id=lead.id, fields=fields, remote_id=remote_id)


def test_first_sync_takes_every_lead_once_and_the_second_writes_nothing(sqlite_store, box, make):
    box.seed(450, seed=1)
    first = Syncer(sqlite_store).run(make())
    assert first.error is None and first.created == 450
    leads, links = leads_and_links(sqlite_store)
    assert leads == 450 and len(links) == len(set(links)) == 450
    # the hub's id is stamped on every lead Salesforce lets it edit (converted leads refuse edits)
    stamped = [lead for lead in box.leads.values() if lead["LeadHub_Id__c"]]
    assert len(stamped) == sum(1 for lead in box.leads.values() if not lead["IsConverted"]) > 300
    assert first.push_calls == 3  # 200 + 200 + the rest, by Id
    with Session(sqlite_store.engine) as s:
        statuses = dict(s.execute(sa.select(LeadRow.status, sa.func.count()).group_by(LeadRow.status)).all())
    assert set(statuses) == {"Lead", "MQL", "SAL", "SQL", "Opportunity", "Negotiation", "Closed Won",
                             "Closed Lost", "Nurture"}
    second = Syncer(sqlite_store).run(make())
    assert second.error is None
    assert (second.created, second.updated, second.pushed, second.push_calls) == (0, 0, 0, 0)
    assert second.unchanged == second.pulled  # the stamps came back as what the hub wrote


def test_records_sharing_one_timestamp_survive_an_interrupted_pull(sqlite_store, box, make):
    box.clock.freeze(datetime(2026, 11, 1, 9, 0, tzinfo=UTC))
    for i in range(450):
        box.add_lead({"Email": f"p{i}@tie.example", "LastName": f"P{i}", "Company": "Tie"})
    box.clock.unfreeze()

    class Crash(Exception):
        pass

    def crash_after_first_page(phase, n):
        raise Crash

    with pytest.raises(Crash):
        Syncer(sqlite_store).run(make(page_size=200), push=False, progress=crash_after_first_page)
    assert leads_and_links(sqlite_store)[0] == 200  # the first page and its cursor committed together
    out = Syncer(sqlite_store).run(make(page_size=200), push=False)
    leads, links = leads_and_links(sqlite_store)
    assert leads == 450 and len(set(links)) == 450
    assert out.created == 250 and out.pulled == 250  # the seen-set skipped the 200 already taken


def test_remote_edits_apply_and_illegal_status_moves_become_conflicts(sqlite_store, box, make):
    a = box.add_lead({"Email": "a@acme.example", "LastName": "A", "Company": "Acme"})
    b = box.add_lead({"Email": "b@acme.example", "LastName": "B", "Company": "Acme"})
    syncer = Syncer(sqlite_store)
    syncer.run(make())
    box.clock.advance(1)
    box.update_lead(a, {"Status": "Marketing Qualified", "Phone": "+49 30 123456"})
    box.update_lead(b, {"Status": "Sales Qualified"})  # Lead -> SQL skips the process
    out = syncer.run(make())
    assert out.updated == 1 and out.conflicts == 1
    row = lead_by_email(sqlite_store, "a@acme.example")
    assert row.status == "MQL" and row.phone == "+49 30 123456"
    assert lead_by_email(sqlite_store, "b@acme.example").status == "Lead"
    with Session(sqlite_store.engine) as s:
        conflict = s.execute(sa.select(Conflict)).scalars().one()
    assert (conflict.hub_value, conflict.remote_value) == ("Lead", "SQL")


def test_the_status_follows_the_converted_leads_deal_to_closed_won(sqlite_store, box, make):
    rid = box.add_lead({"Email": "d@deal.example", "LastName": "D", "Company": "Deal", "Status": "Sales Qualified"})
    syncer = Syncer(sqlite_store)
    syncer.run(make())
    box.clock.advance(1)
    opp = box.convert_lead(rid, "Needs Analysis", {"Amount": 42_000, "CloseDate": "2026-12-01"})
    out = syncer.run(make())
    assert out.updated == 1
    row = lead_by_email(sqlite_store, "d@deal.example")
    assert (row.status, row.value, row.probability) == ("Opportunity", 42_000, 0.2)
    stamp = box.leads[rid]["SystemModstamp"]
    for stage, status in (("Negotiation/Review", "Negotiation"), ("Closed Won", "Closed Won")):
        box.clock.advance(1)
        box.update_opportunity(opp, {"StageName": stage})
        out = syncer.run(make())
        assert out.error is None and out.updated == 1
        assert lead_by_email(sqlite_store, "d@deal.example").status == status
    assert box.leads[rid]["SystemModstamp"] == stamp  # the lead itself never changed: the deal stream saw it
    assert syncer.run(make()).pulled == 0


def test_a_deleted_lead_arrives_as_a_deletion(sqlite_store, box, make):
    rid = box.add_lead({"LastName": "Gone", "Company": "X", "Email": "gone@x.example"})
    syncer = Syncer(sqlite_store)
    syncer.run(make())
    box.clock.advance(1)
    box.delete_lead(rid)
    out = syncer.run(make())
    assert out.deleted == 1
    with Session(sqlite_store.engine) as s:
        assert s.execute(sa.select(Link.deleted_at)).scalar_one() is not None


def test_creates_are_idempotent_by_hub_id_even_after_a_crash_before_commit(sqlite_store, box, make):
    lead = Lead(first_name="Ada", last_name="Lovelace", email="ada@engine.example", company="Engines",
                status="SAL", source="referral", owner=OWNER)
    queue(sqlite_store, lead, {})
    make().connector.write([WriteOp(lead.id, lead.model_dump(), None)])  # taken, then the hub dies
    c = make()
    out = SyncOutcome(c.name)
    Syncer(sqlite_store).push(c, out)  # the rerun pushes again (a pull first would match it instead)
    assert out.pushed == 1 and out.error is None
    matching = [r for r in box.leads.values() if r["LeadHub_Id__c"] == lead.id]
    assert len(matching) == 1
    assert (matching[0]["Status"], matching[0]["LeadSource"]) == ("Working - Contacted", "External Referral")
    assert box.remote_get(matching[0]["Id"])["owner"] == OWNER
    again = Syncer(sqlite_store).run(make())
    assert (again.updated, again.created, again.pushed) == (0, 0, 0)


def test_a_rejected_record_keeps_the_vendor_message_and_the_rest_is_written(sqlite_store, box, make):
    good = [Lead(last_name=f"G{i}", email=f"g{i}@ok.example", company="Ok") for i in range(5)]
    bad = Lead(last_name="Bad", email="not-an-email@", company="Ok")
    for lead in good[:2] + [bad] + good[2:]:
        queue(sqlite_store, lead, {})
    out = Syncer(sqlite_store).run(make())
    assert out.pushed == 5 and out.rejected == 1
    with Session(sqlite_store.engine) as s:
        row = s.execute(sa.select(OutboxRow).where(OutboxRow.lead_id == bad.id)).scalars().one()
    assert row.state == "failed"
    assert row.last_error == "INVALID_EMAIL_ADDRESS: Email: invalid email address: not-an-email@"
    assert sum(1 for r in box.leads.values() if r["LeadHub_Id__c"]) == 5


def test_a_request_refused_whole_is_split_until_the_bad_record_stands_alone(sqlite_store, box, make):
    # an install maps title onto a number field: Salesforce refuses the whole request for one value
    leads = [Lead(last_name=f"N{i}", company="Num", title=str(i)) for i in range(6)]
    leads[3].title = "lots"
    for lead in leads:
        queue(sqlite_store, lead, {})
    out = Syncer(sqlite_store).run(make(field_map={"title": "NumberOfEmployees"}))
    assert out.pushed == 5 and out.rejected == 1
    with Session(sqlite_store.engine) as s:
        error = s.execute(sa.select(OutboxRow.last_error).where(OutboxRow.lead_id == leads[3].id)).scalar_one()
    assert error.startswith("JSON_PARSER_ERROR: Cannot deserialize instance of int from VALUE_STRING value lots")


def test_status_writes_to_a_converted_lead_move_its_deal(sqlite_store, box, make):
    rid = box.add_lead({"Email": "c@conv.example", "LastName": "C", "Company": "Conv", "OwnerId":
                        box.user_ids[OWNER]})
    opp = box.convert_lead(rid, "Prospecting", {"Amount": 1000, "CloseDate": "2026-12-01"})
    syncer = Syncer(sqlite_store)
    conn = make()
    syncer.run(conn)  # first sync: no write to the converted lead, its id is linked as it is
    row = lead_by_email(sqlite_store, "c@conv.example")
    assert row.status == "Opportunity" and box.leads[rid]["LeadHub_Id__c"] is None
    queue(sqlite_store, sqlite_store.get_lead(row.id), {"status": "Negotiation"}, rid)
    queue(sqlite_store, Lead(last_name="X", company="Other"), {})  # an unrelated create, same push
    out = syncer.run(conn)
    assert out.pushed == 2 and out.rejected == 0
    assert box.opportunities[opp]["StageName"] == "Negotiation/Review"
    # fields only the lead holds cannot be written any more: the vendor's reason is kept
    queue(sqlite_store, sqlite_store.get_lead(row.id), {"phone": "+1 555 0100"}, rid)
    out = syncer.run(make())
    assert out.rejected == 1
    with Session(sqlite_store.engine) as s:
        error = s.execute(sa.select(OutboxRow.last_error).where(OutboxRow.state == "failed")).scalar_one()
    assert error.startswith("CANNOT_UPDATE_CONVERTED_LEAD: cannot reference converted lead") and "Phone" in error


def test_a_bad_token_is_a_clear_auth_error_without_the_token(sqlite_store, box, make):
    box.seed(5)
    out = Syncer(sqlite_store).run(make(access_token="00Dwrong!secret-token-123"))
    assert out.error and "credentials refused" in out.error and "INVALID_SESSION_ID" in out.error
    assert "[sales]" in out.error and "secret-token-123" not in out.error


def test_client_credentials_get_a_token_and_a_fresh_one_when_it_expires(sqlite_store, box, make):
    box.seed(20)
    creds = {"access_token": None, "token_url": f"{box.url}/services/oauth2/token", "client_id": box.client_id,
             "client_secret": box.client_secret}
    conn = make(**creds)
    assert Syncer(sqlite_store).run(conn).created == 20
    box.clock.advance(box.token_ttl + 1)
    box.add_lead({"LastName": "Late", "Company": "X"})
    out = Syncer(sqlite_store).run(conn)
    assert out.error is None and out.created == 1
    assert [r for r in box.requests if r[0] == "POST" and r[1].endswith("/token")] == \
           [("POST", "/services/oauth2/token", 200)] * 2
    wrong = make(**{**creds, "client_secret": "nope-not-it"})
    out = Syncer(sqlite_store).run(wrong)
    assert "client credentials refused" in out.error and "invalid_client" in out.error
    assert "nope-not-it" not in out.error


def test_a_429_waits_as_told_and_succeeds(sqlite_store, box, make):
    box.seed(30, seed=3)
    box.retry_after = 0.4
    box.faults.add(status=429, count=1, path_contains="/composite/sobjects")  # a proxy in front of the org
    conn = make()
    out = Syncer(sqlite_store).run(conn)
    assert out.error is None and out.created == 30 and out.throttled == 1
    meter = conn.connector.meter
    assert meter.retries == 1 and 0.39 < meter.waited < 1.0  # as told by Retry-After, not the backoff


def test_server_errors_are_retried_and_the_run_completes(sqlite_store, box, make):
    box.seed(300, seed=3)
    box.faults.add(status=500, count=2, path_contains="/query")
    box.faults.add(status=502, count=1, path_contains="/composite/sobjects")
    conn = make(policy=RetryPolicy(base=0.01))
    out = Syncer(sqlite_store).run(conn)
    assert out.error is None and out.created == 300 and out.pushed > 200
    meter = conn.connector.meter
    assert meter.retries == 3 and (meter.by_status[500], meter.by_status[502]) == (2, 1)


def test_the_connector_stops_before_the_daily_budget_runs_out(sqlite_store):
    box = SalesforceSandbox(rate=5)
    box.seed(10)
    with box.serve() as served:
        def run(**settings):
            s = SalesforceSettings(**{**box.connector_settings(served.url), **settings})
            conn = Connection("sales", SalesforceConnector(s, connection="sales"), "sales")
            try:
                return Syncer(sqlite_store).run(conn)
            finally:
                conn.connector.close()

        assert run().error is None  # owners, leads, one write: 3 calls
        out = run()  # owners, leads: 5/5 used, then it stops itself
        assert "daily API request budget is spent" in out.error and "api-usage=5/5" in out.error
        assert all(status != 403 for _, _, status in box.requests)
        # without the client-side check, Salesforce's own refusal is a RateLimitError too
        out = run(unlimited=True)
        assert "REQUEST_LIMIT_EXCEEDED" in out.error and "TotalRequests Limit exceeded." in out.error


def test_the_daily_budget_keeps_a_reserve_and_looks_again_later():
    now = [0.0]
    budget = DailyBudget(100_000, reserve=50, connection="sales", recheck=300, clock=lambda: now[0])
    budget(Answer(200, {"Sforce-Limit-Info": "api-usage=99949/100000"}))
    budget.acquire()  # 51 left: one more call may go
    budget(Answer(200, {"sforce-limit-info": "api-usage=99950/100000"}))
    with pytest.raises(RateLimitError, match=r"api-usage=99950/100000, keeping 50 for other integrations"):
        budget.acquire()
    now[0] = 301.0  # the window rolls on: one call may look again
    budget.acquire()
    budget(Answer(200, {"Sforce-Limit-Info": "api-usage=90000/100000"}))
    budget.acquire()


def test_without_the_ca_bundle_the_error_says_what_to_set(sqlite_store, box, make):
    out = Syncer(sqlite_store).run(make(ca_bundle=None))
    assert "TLS verification failed" in out.error and "ca_bundle" in out.error

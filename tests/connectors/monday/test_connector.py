"""The monday connector against its served sandbox, through the sync engine and a real SQLite store."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session

from connectors.monday import MondayConnector, MondayDeliveryConnector, MondaySettings
from connectors.monday.paging import ChangeFeed
from connectors.monday.sandbox import MondaySandbox
from hub import outbox
from hub.connector import WriteOp
from hub.model import Lead
from hub.store import LeadRow, Link, OutboxRow, row_values
from hub.sync import Connection, Syncer, SyncOutcome

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def box():
    sandbox = MondaySandbox(rate=None, complexity_limit=None)
    with sandbox.serve() as served:
        sandbox.url = served.url
        yield sandbox


def make_conn(box, cls=MondayConnector, **settings) -> Connection:
    s = MondaySettings(**{**box.connector_settings(box.url), "unlimited": True, **settings})
    return Connection("sales", cls(s, connection="sales"), "sales")


def waits_on_the_sandbox_clock(conn, box) -> list[float]:
    """Make the guard's sleeps move the sandbox's clock instead of the test's, and record them."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        box.clock.advance(seconds)

    conn.connector.guard._sleep = sleep
    return waits


def leads_and_links(store):
    with Session(store.engine) as s:
        leads = s.execute(sa.select(sa.func.count()).select_from(LeadRow)).scalar_one()
        links = s.execute(sa.select(Link.remote_id)).scalars().all()
    return leads, links


def queue(store, lead: Lead, fields: dict | None = None, connection="sales"):
    with store.session() as s:
        if s.get(LeadRow, lead.id) is None:
            s.add(LeadRow(**row_values(lead)))
            s.flush()
        outbox.enqueue(s, connection=connection, object="items", lead_id=lead.id, fields=fields or {})


def test_first_sync_takes_every_lead_once_and_the_next_syncs_write_nothing(sqlite_store, box):
    box.seed(240, seed=1)
    first = Syncer(sqlite_store).run(make_conn(box))
    assert first.error is None and first.created == 240 and first.malformed == 0
    leads, links = leads_and_links(sqlite_store)
    assert leads == 240 and len(links) == len(set(links)) == 240
    # the hub's id is stamped into every item: 240 aliased mutations in batches of 50
    assert all(i["LeadHub ID"] for i in box.items())
    assert first.pushed == 240 and first.push_calls == 5
    second = Syncer(sqlite_store).run(make_conn(box))
    assert second.error is None and (second.created, second.updated, second.pushed) == (0, 0, 0)
    assert second.unchanged == second.pulled
    third = Syncer(sqlite_store).run(make_conn(box))
    assert (third.pulled, third.pushed, third.pull_calls) == (0, 0, 2)  # the board, one empty items_page
    with Session(sqlite_store.engine) as s:
        row = s.execute(sa.select(LeadRow).where(LeadRow.email.is_not(None))).scalars().first()
    remote = box.remote_get(next(i for i in links if box.remote_get(i)["hub_id"] == row.id))
    assert (remote["email"], remote["status"], remote["owner"]) == (row.email, row.status, row.owner)


def test_records_sharing_one_second_survive_an_interrupted_pull(sqlite_store, box):
    box.clock.freeze(T0)
    for i in range(250):
        box.remote_create({"last_name": f"P{i}", "email": f"p{i}@tie.example", "status": "Lead"})
    box.clock.unfreeze()

    class Crash(Exception):
        pass

    def crash(phase, n):
        raise Crash

    with pytest.raises(Crash):
        Syncer(sqlite_store).run(make_conn(box, page_size=100), push=False, progress=crash)
    assert leads_and_links(sqlite_store)[0] == 100  # the first page and its cursor committed together
    out = Syncer(sqlite_store).run(make_conn(box, page_size=100), push=False)
    leads, links = leads_and_links(sqlite_store)
    assert leads == 250 and len(set(links)) == 250
    assert out.created == 150 and out.pulled == 150  # the seen-set skipped the 100 already taken


def test_an_item_edited_mid_pull_loses_nothing_even_when_the_pull_dies(sqlite_store, box):
    # 251 items a second apart; pages of 50; the edit moves an item not yet read to the newest second
    box.clock.freeze(T0)
    ids = []
    for i in range(251):
        box.clock.advance(1)
        ids.append(box.remote_create({"last_name": f"P{i:03}", "status": "Lead"}))
    calls = []

    class Crash(Exception):
        pass

    def edit_then_crash(phase, n):
        calls.append(n)
        if len(calls) == 1:  # while page 1 is applied (page 2 already read): the last item of page 3 changes
            box.remote_update(ids[149], {"company": "Edited mid-pull"})
        if len(calls) == 3:
            raise Crash

    with pytest.raises(Crash):
        Syncer(sqlite_store).run(make_conn(box, page_size=50), push=False, progress=edit_then_crash)
    assert leads_and_links(sqlite_store)[0] == 150
    Syncer(sqlite_store).run(make_conn(box, page_size=50), push=False)
    leads, links = leads_and_links(sqlite_store)
    assert leads == 251 and len(set(links)) == 251
    with Session(sqlite_store.engine) as s:
        assert s.execute(sa.select(LeadRow.company).where(LeadRow.last_name == "P149")).scalar_one() == \
            "Edited mid-pull"


def test_the_feed_never_stores_a_cursor_past_items_not_yet_read():
    # b was edited after the result set was fixed, within the ceiling's second, and comes back at its
    # old place, ahead of items older than its new stamp: the cursor must not pass those
    feed = ChangeFeed(None)
    feed.set_ceiling(100_000)
    for key, ms in (("a:1", 10_000), ("b:2", 100_000)):
        assert feed.admit(key, ms)
        feed.take(key, ms)
    assert feed.commit([20_000, 30_000]) == {"since": 20_000, "seen": []}  # not {"since": 100_000, ...}
    assert feed.commit([]) == {"since": 100_000, "seen": ["b:2"]}  # every item read: b's stamp is done
    # the next run: the same version is skipped, another version with the same stamp is not
    feed = ChangeFeed(feed.committed)
    assert not feed.admit("b:2", 100_000) and feed.admit("b:3", 100_000) and feed.admit("c:1", 100_000)
    # newer than the ceiling (edited mid-pull): taken, but the cursor stays put
    feed.set_ceiling(100_000)
    feed.take("d:1", 105_000)
    assert feed.commit([]) == {"since": 100_000, "seen": ["b:2"]}


def test_an_expired_cursor_restarts_at_the_stored_cursor(sqlite_store, box):
    box.seed(175, seed=5)

    pages = []

    def an_hour_passes(phase, n):
        pages.append(n)
        if len(pages) == 1:  # page 2 is already read; page 3's cursor will have expired
            box.clock.advance(3_601)

    out = Syncer(sqlite_store).run(make_conn(box, page_size=50), push=False, progress=an_hour_passes)
    leads, links = leads_and_links(sqlite_store)
    assert out.error is None and leads == 175 and len(set(links)) == 175
    assert out.pulled == 175 and sum(pages) == 175  # the restart re-read page 2, and took nothing twice


def test_remote_edits_and_status_labels_apply(sqlite_store, box):
    a = box.remote_create({"first_name": "Ada", "last_name": "Lovelace", "email": "ada@acme.example",
                           "status": "MQL", "source": "referral"})
    syncer = Syncer(sqlite_store)
    syncer.run(make_conn(box))
    box.remote_update(a, {"status": "Attempted to contact", "phone": "+49 30 1234567", "country": "DE"})
    out = syncer.run(make_conn(box))
    assert out.updated == 1 and out.conflicts == 0
    with Session(sqlite_store.engine) as s:
        row = s.execute(sa.select(LeadRow)).scalars().one()
    assert (row.status, row.phone, row.first_name, row.last_name, row.source) == \
        ("SAL", "+49 30 1234567", "Ada", "Lovelace", "referral")
    assert syncer.run(make_conn(box)).pushed == 0


def test_creates_are_idempotent_by_hub_id_even_after_a_crash_before_commit(sqlite_store, box):
    box.add_users([{"email": "rep@northwind.example", "first_name": "Rita", "last_name": "Rep"}])
    lead = Lead(first_name="Grace", last_name="Hopper", email="grace@navy.example", status="SAL", source="event",
                owner="rep@northwind.example", value=1200.0, company="Navy")
    queue(sqlite_store, lead)
    conn = make_conn(box)
    conn.connector.write([WriteOp(lead.id, lead.model_dump(), None)])  # the CRM takes it; the hub dies
    c = make_conn(box)
    out = SyncOutcome(c.name)
    Syncer(sqlite_store).push(c, out)  # the rerun pushes again (a pull first would match it instead)
    assert out.pushed == 1 and out.error is None
    matching = [i for i in box.items() if i["LeadHub ID"] == lead.id]
    assert len(matching) == 1
    assert (matching[0]["name"], matching[0]["Status"], matching[0]["Owner"], matching[0]["Deal value"],
            matching[0]["Source"]) == ("Grace Hopper", "Sales Accepted", "Rita Rep", "1200", "Event")
    again = Syncer(sqlite_store).run(make_conn(box))
    assert (again.updated, again.created, again.pushed) == (0, 0, 0)


class LosesOneAnswer(httpx.BaseTransport):
    """Delivers every request; the answer to the first create never comes back (a timeout)."""

    def __init__(self):
        self.inner, self.armed = httpx.HTTPTransport(), True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.armed and b"create_item" in request.read():
            self.armed = False
            response.read()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


def test_a_create_whose_answer_is_lost_is_not_repeated(box):
    lead = Lead(last_name="Timeout", email="t@slow.example")
    cn = make_conn(box).connector
    assert list(cn.read_changes(None)) and cn._owners  # a complete pull: creates go without a look-up
    cn.gql.http = httpx.Client(base_url=box.url, headers=cn.gql.http.headers, transport=LosesOneAnswer())
    [result] = cn.write([WriteOp(lead.id, lead.model_dump(), None)])
    assert not result.ok and result.retryable and "ReadTimeout" in result.error
    assert [i["LeadHub ID"] for i in box.items()] == [lead.id]  # yet monday made the item
    [result] = cn.write([WriteOp(lead.id, lead.model_dump(), None)])  # not retried blindly: looked up first
    assert result.ok and [i["LeadHub ID"] for i in box.items()] == [lead.id]
    assert (cn.meter.by_kind["create"], cn.meter.by_kind["lookup"], cn.meter.by_kind["update"]) == (1, 1, 1)


def test_one_invalid_record_is_rejected_with_mondays_message_and_the_rest_written(sqlite_store, box):
    good = [Lead(last_name=f"G{i}", email=f"g{i}@ok.example") for i in range(5)]
    bad = Lead(last_name="Bad", email="not-an-email@")
    for lead in good[:2] + [bad] + good[2:]:
        queue(sqlite_store, lead)
    out = Syncer(sqlite_store).run(make_conn(box))
    assert out.pushed == 5 and out.rejected == 1
    with Session(sqlite_store.engine) as s:
        row = s.execute(sa.select(OutboxRow).where(OutboxRow.lead_id == bad.id)).scalars().one()
    assert row.state == "failed"
    assert row.last_error.startswith("ColumnValueException: invalid value, please check our API documentation")
    assert sorted(i["Email"] for i in box.items()) == sorted(g.email for g in good)
    assert Syncer(sqlite_store).run(make_conn(box)).rejected == 1  # retried every run, refused again


def test_bad_token_is_a_clear_auth_error_without_the_token(sqlite_store, box):
    box.seed(5)
    settings = {**box.connector_settings(box.url), "token": "wrong-token-123"}
    conn = Connection("sales", MondayConnector(MondaySettings(**settings), connection="sales"))
    out = Syncer(sqlite_store).run(conn)
    assert out.error and "credentials refused (HTTP 401)" in out.error and "[sales]" in out.error
    assert "wrong-token-123" not in out.error


def test_the_minute_limit_is_waited_out_as_retry_after_says(sqlite_store, box):
    box.seed(120, seed=3)
    box.rate = 4
    conn = make_conn(box, page_size=50)
    waits = waits_on_the_sandbox_clock(conn, box)
    out = Syncer(sqlite_store).run(conn)
    assert out.error is None and out.created == 120 and out.pushed == 120
    assert out.throttled >= 1 and waits and all(1 <= w <= 60 for w in waits)


@pytest.mark.parametrize("status", [429, 200])
def test_complexity_exhaustion_waits_retry_in_seconds_whatever_the_http_status(sqlite_store, box, status):
    box.seed(120, seed=4)
    box.budget, box.complexity_status = None, status
    from connectors.monday.sandbox.complexity import Budget

    box.budget = Budget(600_000, box.clock.monotonic)  # one batch of 50 item mutations costs 500,000
    conn = make_conn(box, page_size=100)
    waits = waits_on_the_sandbox_clock(conn, box)
    out = Syncer(sqlite_store).run(conn)
    assert out.error is None and out.created == 120 and out.pushed == 120
    assert out.throttled >= 1 and waits and all(0 < w <= 60 for w in waits)


def test_server_errors_are_retried_and_the_run_completes(sqlite_store, box):
    box.seed(150, seed=6)
    box.faults.add(status=500, count=2)
    box.faults.add(status=502, count=1)
    conn = make_conn(box)
    waits_on_the_sandbox_clock(conn, box)
    out = Syncer(sqlite_store).run(conn)
    assert out.error is None and out.created == 150 and out.pushed == 150


def test_a_closed_won_lead_becomes_one_kickoff_item_on_the_delivery_board(box):
    box.add_users([{"email": "am@northwind.example", "first_name": "Alex", "last_name": "Manager"}])
    conn = make_conn(box, MondayDeliveryConnector, board_id=str(box.delivery_board_id))
    won = Lead(last_name="Buyer", company="Acme GmbH", status="Closed Won", value=48_000.0,
               owner="am@northwind.example", email="buyer@acme.example")
    open_deal = Lead(last_name="Maybe", company="Later AG", status="Negotiation")
    fields = {n: won.get(n) for n in conn.connector.mapped_fields}
    first = conn.connector.write([WriteOp(won.id, fields), WriteOp(open_deal.id, {"status": "Negotiation"})])
    again = conn.connector.write([WriteOp(won.id, fields)])  # a retry: found by hub id, not created twice
    by_id = {r.hub_id: r for r in first}
    assert by_id[won.id].ok and again[0].ok and again[0].remote_id == by_id[won.id].remote_id
    assert not by_id[open_deal.id].ok and "Closed Won leads only" in by_id[open_deal.id].error
    [item] = box.items(box.delivery_board_id)
    assert (item["name"], item["Status"], item["Owner"], item["Deal value"], item["LeadHub ID"]) == \
        ("Acme GmbH", "Kickoff", "Alex Manager", "48000", won.id)
    assert box.items(box.leads_board_id) == []

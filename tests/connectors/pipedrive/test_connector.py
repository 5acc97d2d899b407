"""The Pipedrive connector against its served sandbox, through hub.sync.Syncer and a real SQLite store."""

from __future__ import annotations

import importlib
from datetime import UTC, date, datetime

import pluggy
import pytest
import sqlalchemy as sa
from sqlmodel import Session

import connectors.pipedrive as plugin
from connectors.pipedrive import PipedriveConnector, PipedriveSettings
from connectors.pipedrive.sandbox import HUB_ID, PERSON_HUB_ID
from hub import outbox
from hub.connector import WriteOp
from hub.model import Lead
from hub.store import LeadRow, Link, OutboxRow, RecordIssue, row_values
from hub.sync import Syncer
from hub.testing.kit import on_sandbox_clock

from .conftest import connect
from .specs import exchange_errors

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def stored(store) -> dict[str, LeadRow]:
    with Session(store.engine) as s:
        return {ln.remote_id: s.get(LeadRow, ln.lead_id) for ln in s.execute(sa.select(Link)).scalars()}


def queue(store, lead: Lead, fields: dict | None = None, remote_id: str | None = None) -> None:
    with store.session() as s:
        if s.get(LeadRow, lead.id) is None:
            s.add(LeadRow(**row_values(lead)))
            s.flush()
        outbox.enqueue(s, connection="sales", object="leads", lead_id=lead.id, fields=fields or {},
                       remote_id=remote_id)


def test_the_plugin_registers_the_connector_whose_settings_keep_the_token_secret_and_name_its_sandbox():
    from hub import hookspecs
    from hub.testing.kit import ConformanceSandbox

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    found: list[type] = []
    pm.hook.hub_register_connectors(register=found.append)
    assert found == [PipedriveConnector]
    settings = PipedriveSettings.model_validate({"token": "pd-secret-1", "rate": [100, 2], "pipeline_id": 3})
    assert settings.base_url == "https://api.pipedrive.com" and "pd-secret-1" not in repr(settings)
    connector = PipedriveConnector(settings)
    assert connector.workers == 8 and connector.guard.budgets[0].capacity == 100  # 100/2s: 8 writes at once
    module, _, name = PipedriveConnector.sandbox.partition(":")
    box_cls = getattr(importlib.import_module(module), name)
    assert box_cls().rate == 40 and box_cls(rate=None).search_rate is None
    assert isinstance(box_cls(), ConformanceSandbox)


def test_first_sync_takes_every_lead_once_and_the_second_writes_nothing(sqlite_store, make):
    box, _ = make()
    box.seed(250, seed=1)
    first = Syncer(sqlite_store).run(connect(box))
    assert first.error is None and first.pulled == first.created == 250
    held = stored(sqlite_store)
    assert set(held) == set(box.remote_ids())
    assert all(held[i].status == box.remote_get(i)["status"] for i in held)
    # the hub's id is stamped into every lead, and into the deals of converted ones: one call each
    assert all(box.remote_get(i)["hub_id"] == held[i].id for i in held)
    assert first.pushed == 250 and first.push_calls == 250
    second = Syncer(sqlite_store).run(connect(box))
    assert second.error is None and (second.created, second.updated, second.pushed, second.push_calls) == (0, 0, 0, 0)
    assert second.unchanged == second.pulled


def test_every_request_the_connector_sends_and_every_answer_are_as_pipedrives_specs_say(sqlite_store, make, server):
    box, _ = make()
    box.seed(25, seed=9)
    server[0].record = True
    syncer = Syncer(sqlite_store)
    syncer.run(connect(box))  # reads, stamps (leads and deals)
    rid = next(i for i in box.remote_ids() if box.remote_get(i)["status"] == "SQL")
    lead_id = stored(sqlite_store)[rid].id
    queue(sqlite_store, Lead(first_name="New", last_name="Person", email="new@acme.example", company="New Co",
                             status="Lead", value=10.0))  # a create: search, organization, person, lead
    queue(sqlite_store, Lead(id=lead_id), {"status": "Closed Won", "email": "won@acme.example"})
    with store_session(sqlite_store) as s:
        row = s.get(LeadRow, lead_id)
        row.status, row.email = "Closed Won", "won@acme.example"  # what the outbox row says changed
    box.clock.advance(1)
    box.remote_update(next(i for i in box.remote_ids() if box.remote_get(i)["status"] == "Lead"),
                      {"phone": "+49 30 7654321"})  # a person's own edit: looked up from the persons phase
    out = syncer.run(connect(box))
    assert out.error is None and out.pushed == 2 and out.updated == 1
    routes = {(ex.method, _template(ex.path)) for ex in server[0].log}
    assert {("POST", "/api/v2/leads/{}/convert/deal"), ("POST", "/api/v2/persons"), ("GET", "/api/v2/itemSearch"),
            ("PATCH", "/api/v2/deals/{}"), ("PATCH", "/api/v2/persons/{}")} <= routes
    checked: dict[tuple[str, str, int], list[str]] = {}
    for ex in server[0].log:  # one exchange per route and status: the shapes repeat
        key = (ex.method, _template(ex.path), ex.status)
        if key not in checked:
            checked[key] = exchange_errors(ex.method, ex.path, ex.query, ex.headers, ex.body, ex.status,
                                           ex.response_headers, ex.content)
    assert {k: v for k, v in checked.items() if v} == {}


def _template(path: str) -> str:
    return "/".join("{}" if part.isdigit() or len(part) == 36 else part for part in path.split("/"))


def test_records_sharing_one_modified_time_survive_an_interrupted_pull(sqlite_store, make):
    box, _ = make()
    box.clock.freeze(T0)
    for i in range(250):
        box.remote_create({"last_name": f"P{i}", "email": f"p{i}@tie.example", "company": "Tie Ltd"})
    box.clock.unfreeze()

    class Crash(Exception):
        pass

    def crash(phase, n):
        raise Crash

    with pytest.raises(Crash):
        Syncer(sqlite_store).run(connect(box, page_size=100), push=False, progress=crash)
    assert len(stored(sqlite_store)) == 100  # the first page and its cursor committed together
    out = Syncer(sqlite_store).run(connect(box, page_size=100), push=False)
    assert out.created == out.pulled == 150 and len(stored(sqlite_store)) == 250


def test_remote_edits_apply_a_person_edit_a_new_label_and_a_conversion_followed_to_won(sqlite_store, make):
    box, _ = make()
    a = box.remote_create({"last_name": "A", "email": "a@acme.example", "company": "Acme", "status": "Lead"})
    b = box.remote_create({"last_name": "B", "email": "b@acme.example", "company": "Acme", "status": "SQL"})
    c = box.remote_create({"last_name": "C", "email": "c@acme.example", "company": "Acme", "status": "Lead"})
    syncer = Syncer(sqlite_store)
    syncer.run(connect(box))
    box.clock.advance(1)
    box.remote_update(a, {"email": "anna@acme.example", "phone": "+49 30 1234567"})  # the person, not the lead
    box.remote_update(c, {"status": "MQL"})  # a label
    box.remote_update(b, {"status": "Opportunity", "value": 12_000.0, "probability": 0.4,
                          "expected_close": date(2027, 1, 31)})  # converted: the lead is gone, a deal goes on
    out = syncer.run(connect(box))
    assert out.error is None and out.updated == 3 and out.created == 0 and out.conflicts == 0
    held = stored(sqlite_store)
    assert (held[a].email, held[a].phone) == ("anna@acme.example", "+49 30 1234567")
    assert held[c].status == "MQL"
    assert (held[b].status, held[b].value, held[b].probability) == ("Opportunity", 12_000.0, 0.4)
    box.clock.advance(1)
    box.remote_update(b, {"status": "Closed Won"})
    out = syncer.run(connect(box))
    assert out.updated == 1 and stored(sqlite_store)[b].status == "Closed Won"
    assert syncer.run(connect(box)).updated == 0


def test_the_hubs_status_moves_label_convert_and_lose_with_the_reason(sqlite_store, make):
    box, _ = make()
    rid = box.remote_create({"last_name": "Move", "email": "m@acme.example", "company": "Acme", "status": "SAL"})
    del box.state.labels[next(i for i, lb in box.state.labels.items() if lb["name"] == "Hot")]
    syncer = Syncer(sqlite_store)
    syncer.run(connect(box))
    lead_id = stored(sqlite_store)[rid].id
    for status, extra in (("SQL", {}), ("Opportunity", {"value": 5000.0}),
                          ("Closed Lost", {"loss_reason": "Price"})):
        queue(sqlite_store, Lead(id=lead_id), {"status": status, **extra})
        with store_session(sqlite_store) as s:  # the hub's own change, as a rule would make it
            row = s.get(LeadRow, lead_id)
            row.status = status
            for k, v in extra.items():
                setattr(row, k, v)
        out = syncer.run(connect(box))
        assert out.error is None and out.pushed == 1 and out.rejected == 0
        assert box.remote_get(rid)["status"] == status
        assert syncer.run(connect(box)).updated == 0  # no echo
    assert any(lb["name"] == "Hot" for lb in box.state.labels.values())  # re-created by name
    deal = next(d for d in box.state.deals.values() if d["source_lead_id"] == rid)
    assert (deal["status"], deal["lost_reason"], deal["custom"][HUB_ID]) == ("lost", "Price", lead_id)


def store_session(store):
    return store.session()


def test_creates_are_idempotent_by_hub_id_even_after_a_crash_between_person_and_lead(sqlite_store, make):
    box, _ = make()
    whole = Lead(first_name="Ada", last_name="Lovelace", email="ada@engine.example", company="Engines Ltd",
                 status="SAL", source="referral")
    half = Lead(first_name="Mary", last_name="Somerville", email="mary@engine.example", company="Engines Ltd")
    for lead in (whole, half):
        queue(sqlite_store, lead)
    conn = connect(box)
    conn.connector.write([WriteOp(whole.id, whole.model_dump(), None)])  # taken; the hub died before recording it
    box.faults.add(status=503, count=1, path_contains="/v1/leads", method="POST")  # did it create? nobody knows
    out = Syncer(sqlite_store).run(conn)
    # the cycle pulls first: the whole one comes back with its hub id and needs no write; the half one stays
    # pending (retryable)
    assert out.error is None and (out.matched, out.skipped, out.pushed) == (1, 1, 0)
    persons = [p for p in box.state.persons.values() if p["custom"].get(PERSON_HUB_ID) == half.id]
    assert len(persons) == 1 and not any(ld["person_id"] == persons[0]["id"] for ld in box.state.leads.values())
    out = Syncer(sqlite_store).run(connect(box))
    assert out.error is None and out.pushed == 1 and out.created == 0
    for lead in (whole, half):
        carriers = [i for i in box.remote_ids() if box.remote_get(i)["hub_id"] == lead.id]
        assert len(carriers) == 1
        assert len([p for p in box.state.persons.values() if p["custom"].get(PERSON_HUB_ID) == lead.id]) == 1
    assert box.remote_get(next(i for i in box.remote_ids() if box.remote_get(i)["hub_id"] == whole.id))["status"] == "SAL"
    again = Syncer(sqlite_store).run(connect(box))
    assert (again.created, again.updated, again.pushed) == (0, 0, 0)


def test_a_refused_record_keeps_pipedrives_message_while_the_rest_is_written(sqlite_store, make):
    box, _ = make()
    good = [Lead(last_name=f"G{i}", email=f"g{i}@ok.example", company="Fine Co") for i in range(5)]
    bad = Lead(last_name="Bad", email="jan.kowalski@", company="Fine Co")
    for lead in good[:2] + [bad] + good[2:]:
        queue(sqlite_store, lead)
    out = Syncer(sqlite_store).run(connect(box))
    assert out.pushed == 5 and out.rejected == 1
    with Session(sqlite_store.engine) as s:
        row = s.execute(sa.select(OutboxRow).where(OutboxRow.lead_id == bad.id)).scalars().one()
        issue = s.execute(sa.select(RecordIssue).where(RecordIssue.lead_id == bad.id)).scalars().one()
    assert row.state == "failed" and row.last_error == issue.message
    assert row.last_error.startswith("Validation failed: emails[0].value: 'jan.kowalski@' is not a valid email")
    assert sum(1 for i in box.remote_ids() if box.remote_get(i)["hub_id"]) == 5


def test_a_bad_token_is_a_clear_auth_error_without_the_token(sqlite_store, make):
    box, _ = make()
    box.seed(5)
    out = Syncer(sqlite_store).run(connect(box, token="wrong-token-123"))
    assert out.error and "credentials refused (HTTP 401)" in out.error and "[sales]" in out.error
    assert "unauthorized access" in out.error and "wrong-token-123" not in out.error


def test_the_burst_window_is_kept_by_pipedrives_headers_and_a_429_is_waited_out_as_told(sqlite_store, make):
    box, _ = make(rate=4)
    box.seed(120, seed=2)
    conn = connect(box, page_size=50)  # no client-side budget: only the answers' headers pace the run
    on_sandbox_clock(conn.connector, box.clock)  # waits advance the sandbox's clock, not ours
    out = Syncer(sqlite_store).run(conn, push=False)
    m = conn.connector.meter
    assert out.error is None and out.pulled == 120 and m.throttled == 0  # x-ratelimit-remaining: 0 → wait reset
    assert m.waited >= 1.9 * (m.calls // 4 - 1)  # one wait of the 2-second window per 4 calls
    box.faults.add(status=429, count=1, path_contains="/v1/leads")
    conn = connect(box)
    on_sandbox_clock(conn.connector, box.clock)
    out = Syncer(sqlite_store).run(conn, push=False)
    assert out.error is None and conn.connector.meter.throttled == 1 and conn.connector.meter.waited >= 1.98


def test_5xx_answers_are_retried(sqlite_store, make):
    box, _ = make()
    box.seed(60, seed=4)
    box.faults.add(status=502, count=1, path_contains="/v1/leads")
    box.faults.add(status=500, count=2, path_contains="/api/v2/persons")
    box.faults.add(status=503, count=1, path_contains="/v1/leads/", method="PATCH")
    conn = connect(box, base_url=box.url + "/", v1_prefix="/api/v1")  # a company domain's v1 path
    out = Syncer(sqlite_store).run(conn)
    statuses = conn.connector.meter.by_status
    assert out.error is None and out.pulled == out.pushed == 60
    assert (statuses[502], statuses[500], statuses[503]) == (1, 2, 1)


def test_the_daily_token_budget_stops_a_run_before_it_runs_out(sqlite_store, make):
    box, _ = make(daily=200)
    box.seed(30, seed=3)
    out = Syncer(sqlite_store).run(connect(box, token_reserve=50))
    assert out.error and "daily API token budget is nearly spent" in out.error and "50 kept in reserve" in out.error
    assert 150 - 40 <= box.spent <= 150  # stopped with the reserve untouched
    box.spent = 200  # spent by another integration: Pipedrive says so, and it is not retried until midnight
    out = Syncer(sqlite_store).run(connect(box, token_reserve=0))
    assert out.error and "daily request budget exceeded" in out.error
    assert sum(1 for _, _, status in box.requests if status == 429) == 1


def test_writes_run_concurrently_and_a_deleted_deal_is_seen(sqlite_store, make, server):
    box, _ = make()
    box.seed(60, seed=5)
    box.faults.add(status=None, count=1000, delay=0.02, path_contains="/v1/leads/", method="PATCH")
    server[0].record = True
    out = Syncer(sqlite_store).run(connect(box, concurrency=8))
    assert out.error is None and out.pushed == 60
    assert server[0].most_in_flight >= 4  # several single-record writes at once
    rid = next(d["source_lead_id"] for d in box.state.deals.values())
    box.clock.advance(1)
    box.remote_delete(rid)
    out = Syncer(sqlite_store).run(connect(box))
    assert out.deleted == 1
    with Session(sqlite_store.engine) as s:
        assert s.execute(sa.select(Link.deleted_at).where(Link.remote_id == rid)).scalar_one() is not None

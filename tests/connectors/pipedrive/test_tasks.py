"""Pipedrive tasks: the hub's tasks become task activities on the lead, owned and due, never twice; closed in
the hub, they are marked done in Pipedrive, once; every exchange as Pipedrive's v2 spec has it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.pipedrive.api import Refused
from hub.connector import TaskClose, TaskOp
from hub.tasks_push import push_tasks

from ..task_store import claimed, close, linked_task, push_and_crash, task
from .conftest import connect
from .specs import exchange_errors

OWNER = "james.lewis@northwind-sales.example"  # a fakedata.team(0) member: a Pipedrive user
DUE = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def setup(make):
    box, _ = make()
    conn = connect(box)
    yield box, conn.connector
    conn.connector.close()


def op(connector, lead, task_id=7, **kw):
    fields = {"owner_remote": connector.remote_owner(OWNER), "title": "SLA breached: call back", "due_at": DUE,
              "kind": "breach", "note": "LeadHub breach (sla)", **kw}
    return TaskOp(task_id, lead, **fields)


def test_a_task_is_a_task_activity_on_the_lead_with_owner_and_due_date(setup, server):
    box, connector = setup
    lead = box.remote_create({"first_name": "Ada", "last_name": "Lovelace", "company": "Analytical Engines"})
    server[0].record = True
    [res] = connector.write_tasks([op(connector, lead)])
    assert res.ok
    act = box.activities[int(res.remote_id)]
    assert (act["type"], act["lead_id"], act["subject"], act["done"]) == ("task", lead, "SLA breached: call back",
                                                                          False)
    assert act["owner_id"] == int(connector.remote_owner(OWNER))
    assert (act["due_date"], act["due_time"]) == ("2026-12-01", "09:30")
    assert act["note"].endswith("leadhub-task:7")
    connector.write_tasks([op(connector, lead, maybe_exists=True)])  # the lookup's exchange too
    for ex in server[0].log:
        assert exchange_errors(ex.method, ex.path, ex.query, ex.headers, ex.body, ex.status,
                               ex.response_headers, ex.content) == [], (ex.method, ex.path)


def test_pushing_the_same_task_again_finds_it_instead_of_creating_a_second(setup):
    box, connector = setup
    a = box.remote_create({"first_name": "Ada", "last_name": "Lovelace", "company": "Analytical Engines"})
    b = box.remote_create({"first_name": "Bob", "last_name": "Builder", "company": "Fix It"})
    [first] = connector.write_tasks([op(connector, a)])
    again = connector.write_tasks([op(connector, a, maybe_exists=True), op(connector, b, task_id=70, maybe_exists=True),
                                   op(connector, a, task_id=71, maybe_exists=True)])  # 7's marker is not 71's
    assert [r.ok for r in again] == [True, True, True] and again[0].remote_id == first.remote_id
    assert len(box.activities) == 3


def test_a_refused_task_carries_pipedrives_words_and_the_others_are_created(setup):
    box, connector = setup
    lead = box.remote_create({"first_name": "Ada", "last_name": "Lovelace", "company": "Analytical Engines"})
    results = connector.write_tasks([op(connector, lead, task_id=1),
                                     op(connector, "00000000-0000-0000-0000-000000000000", task_id=2),
                                     op(connector, lead, task_id=3, owner_remote="4242")])
    assert [r.ok for r in results] == [True, False, False]
    assert "does not exist" in results[1].error and "4242" in results[2].error
    assert len(box.activities) == 1


def test_a_converted_leads_task_goes_on_its_deal(setup):
    box, connector = setup
    lead = box.remote_create({"first_name": "Ada", "last_name": "Lovelace", "company": "Analytical Engines"})
    with box.lock:
        deal = box.state.convert(box.state.leads[lead], None, box.clock.now_ms())
    connector.api.leads.put(lead, {"deal_id": deal["id"]})  # as a pull that saw the conversion leaves it
    [res] = connector.write_tasks([op(connector, lead, owner_remote=None, due_at=None)])
    act = box.activities[int(res.remote_id)]
    assert (act["deal_id"], act["lead_id"], act["due_date"]) == (deal["id"], None, None)
    assert act["owner_id"] == 1  # the token's user


def test_a_task_closed_in_the_hub_is_done_in_pipedrive_once_and_a_deleted_one_is_not_retried(make, server,
                                                                                              sqlite_store):
    store = sqlite_store
    box, client = make()
    conn = connect(box)
    connector = conn.connector
    leads = [box.remote_create({"first_name": n, "last_name": "Lovelace", "company": "Analytical Engines"})
             for n in ("Ada", "Bob")]
    ta, tb = (linked_task(store, "sales", "leads", lead, owner=OWNER) for lead in leads)
    assert push_tasks(store, "sales", connector).pushed == 2
    close(store, ta)
    server[0].record = True
    out = push_tasks(store, "sales", connector)
    assert (out.closed, out.api_calls) == (1, 1)  # one PATCH /api/v2/activities/{id}
    got = client.get(f"/api/v2/activities/{task(store, ta).remote_id}").json()["data"]
    assert got["done"] is True and got["marked_as_done_time"]
    assert box.activities[int(task(store, tb).remote_id)]["done"] is False
    for ex in server[0].log:
        assert exchange_errors(ex.method, ex.path, ex.query, ex.headers, ex.body, ex.status,
                               ex.response_headers, ex.content) == [], (ex.method, ex.path)
    assert push_tasks(store, "sales", connector).api_calls == 0  # closed once: nothing sent again

    assert client.delete(f"/api/v2/activities/{task(store, tb).remote_id}").json()["success"]  # deleted there
    close(store, tb, state="dismissed")
    out = push_tasks(store, "sales", connector)
    assert (out.closed, out.gone, out.failed) == (0, 1, 0)
    assert "not found" in task(store, tb).close_error and task(store, tb).remote_closed_at
    assert push_tasks(store, "sales", connector).api_calls == 0  # counted as closed: not retried
    connector.close()


def test_a_task_closed_after_a_push_whose_answer_was_lost_is_found_and_done_never_created(setup, sqlite_store):
    store = sqlite_store
    box, connector = setup
    a, b = (box.remote_create({"first_name": n, "last_name": "Lovelace", "company": "Analytical Engines"})
            for n in ("Ada", "Bob"))
    made = linked_task(store, "sales", "leads", a, owner=OWNER)
    push_and_crash(store, "sales", connector)  # Pipedrive made it; the hub never booked its id
    assert len(box.activities) == 1 and task(store, made).remote_id is None
    lost = linked_task(store, "sales", "leads", b, owner=OWNER)
    claimed(store, lost, "sales")  # claimed, and the process died before sending it
    close(store, made, lost)
    out = push_tasks(store, "sales", connector)
    assert (out.pushed, out.closed, out.gone, out.failed, out.error) == (1, 1, 1, 0, None)
    assert out.api_calls == 3  # each lead's activities listed once, one PATCH; no create
    [remote] = box.activities
    assert task(store, made).remote_id == str(remote) and box.activities[remote]["done"] is True
    assert task(store, lost).remote_closed_at and "nothing to close" in task(store, lost).close_error
    assert push_tasks(store, "sales", connector).api_calls == 0 and len(box.activities) == 1


def test_closing_twice_is_harmless_and_the_sandbox_checks_done_is_a_boolean(setup):
    box, connector = setup
    lead = box.remote_create({"first_name": "Ada", "last_name": "Lovelace", "company": "Analytical Engines"})
    made = connector.write_tasks([op(connector, lead, task_id=n) for n in (1, 2)])
    closes = [TaskClose(n, r.remote_id, dismissed=n == 2) for n, r in zip((1, 2), made)]
    assert [r.ok for r in connector.close_tasks(closes)] == [True, True]
    first = {r.remote_id: box.activities[int(r.remote_id)]["done_at"] for r in made}
    assert [r.ok for r in connector.close_tasks(closes)] == [True, True]  # already done: harmless
    assert {r.remote_id: box.activities[int(r.remote_id)]["done_at"] for r in made} == first  # done time kept
    with pytest.raises(Refused) as caught:
        connector.api.call("PATCH", f"/activities/{made[0].remote_id}", v2=True, body={"done": "yes"})
    assert caught.value.status == 400 and "done: Expected boolean" in caught.value.vendor_message

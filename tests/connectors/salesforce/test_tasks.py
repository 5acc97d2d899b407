"""Salesforce tasks: the hub's tasks become Task records on the lead (or its deal), owned and due, never twice;
closed in the hub, they are Completed in Salesforce, once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.salesforce import SalesforceConnector, SalesforceSettings
from connectors.salesforce.sandbox import SalesforceSandbox
from hub.connector import TaskClose, TaskOp
from hub.tasks_push import push_tasks

from ..task_store import claimed, close, linked_task, push_and_crash, task

OWNER = "james.lewis@northwind-sales.example"  # a fakedata.team(0) member, so a user of the sandbox org
DUE = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)


@pytest.fixture
def box(put):
    sandbox = SalesforceSandbox(rate=None)
    put(sandbox)
    return sandbox


@pytest.fixture
def connector(box):
    c = SalesforceConnector(SalesforceSettings(**box.connector_settings(box.url)), connection="sales")
    yield c
    c.close()


def op(connector, lead, task_id=7, **kw):
    fields = {"owner_remote": connector.remote_owner(OWNER), "title": "SLA breached: call back", "due_at": DUE,
              "kind": "breach", "note": "LeadHub breach (sla)", **kw}
    return TaskOp(task_id, lead, **fields)


def lead(box, name="Lovelace"):
    return box.add_lead({"LastName": name, "Company": "Analytical Engines"})


def test_a_task_is_created_on_the_lead_with_owner_due_date_and_marker(box, connector):
    lead_id = lead(box)
    [res] = connector.write_tasks([op(connector, lead_id)])
    assert res.ok
    task = box.tasks[res.remote_id]
    assert res.remote_id.startswith("00T")
    assert task["WhoId"] == lead_id and task["WhatId"] is None
    assert task["OwnerId"] == box.user_ids[OWNER]
    assert task["ActivityDate"] == "2026-12-01"  # the due day in UTC
    assert (task["Subject"], task["Status"], task["Priority"]) == ("SLA breached: call back", "Not Started", "High")
    assert task["Description"].endswith("leadhub-task:7") and task["IsClosed"] is False


def test_pushing_the_same_task_again_finds_it_instead_of_creating_a_second(box, connector):
    a, b = lead(box), lead(box, "Builder")
    [first] = connector.write_tasks([op(connector, a)])
    calls = connector.meter.by_kind["create"]
    again = connector.write_tasks([op(connector, a, maybe_exists=True),
                                   op(connector, b, task_id=70, maybe_exists=True)])  # never made: created now
    assert [r.ok for r in again] == [True, True] and again[0].remote_id == first.remote_id
    assert len(box.tasks) == 2
    assert connector.meter.by_kind["create"] == calls + 1


def test_a_converted_leads_task_goes_to_its_opportunity(box, connector):
    lead_id = lead(box)
    opp = box.convert_lead(lead_id)
    [res] = connector.write_tasks([op(connector, lead_id, owner_remote=None, kind="review")])
    assert res.ok
    task = box.tasks[res.remote_id]
    assert (task["WhatId"], task["WhoId"]) == (opp, None)
    assert task["OwnerId"] == box.org.api_user and task["Priority"] == "Normal"  # no owner: the API user's
    [again] = connector.write_tasks([op(connector, lead_id, maybe_exists=True)])
    assert again.remote_id == res.remote_id and len(box.tasks) == 1


def test_a_refused_task_carries_salesforces_words_and_the_others_are_created(box, connector):
    good, gone = lead(box), lead(box, "Gone")
    box.delete_lead(gone)
    results = connector.write_tasks([op(connector, good, task_id=1), op(connector, gone, task_id=2),
                                     op(connector, good, task_id=3, owner_remote="005000000000000AAA")])
    assert [r.ok for r in results] == [True, False, False]
    assert results[1].error == "ENTITY_IS_DELETED: entity is deleted"
    assert results[2].error.startswith("INVALID_CROSS_REFERENCE_KEY") or "MALFORMED_ID" in results[2].error
    assert len(box.tasks) == 1


def get(connector, remote_id):
    """The Task as Salesforce's REST GET answers it."""
    return connector._call(lambda sf: sf.restful(f"sobjects/Task/{remote_id}"))


def test_a_task_closed_in_the_hub_is_completed_in_salesforce_once_and_a_deleted_one_is_not_retried(
        sqlite_store, box, connector):
    store = sqlite_store
    ta = linked_task(store, "sales", "Lead", lead(box), owner=OWNER)
    tb = linked_task(store, "sales", "Lead", lead(box, "Builder"), owner=OWNER)
    assert push_tasks(store, "sales", connector).pushed == 2
    close(store, ta)
    out = push_tasks(store, "sales", connector)
    assert (out.closed, out.api_calls) == (1, 1)  # one sObject Collections PATCH
    done = get(connector, task(store, ta).remote_id)
    assert (done["Status"], done["IsClosed"]) == ("Completed", True)
    assert get(connector, task(store, tb).remote_id)["IsClosed"] is False
    assert push_tasks(store, "sales", connector).api_calls == 0  # closed once: nothing sent again

    box.delete_task(task(store, tb).remote_id)  # deleted in Salesforce, then dismissed in the hub
    close(store, tb, state="dismissed")
    out = push_tasks(store, "sales", connector)
    assert (out.closed, out.gone, out.failed) == (0, 1, 0)
    assert task(store, tb).close_error == "ENTITY_IS_DELETED: entity is deleted" and task(store, tb).remote_closed_at
    assert push_tasks(store, "sales", connector).api_calls == 0  # counted as closed: not retried


def test_a_task_closed_after_a_push_whose_answer_was_lost_is_found_and_completed_never_created(
        sqlite_store, box, connector):
    store = sqlite_store
    made = linked_task(store, "sales", "Lead", lead(box), owner=OWNER)
    push_and_crash(store, "sales", connector)  # Salesforce made it; the hub never booked its id
    assert len(box.tasks) == 1 and task(store, made).remote_id is None and task(store, made).push_attempts == 1
    lost = linked_task(store, "sales", "Lead", lead(box, "Builder"), owner=OWNER)
    claimed(store, lost, "sales")  # claimed, and the process died before sending it
    close(store, made)
    close(store, lost, state="dismissed")
    creates = connector.meter.by_kind["create"]
    out = push_tasks(store, "sales", connector)
    assert (out.pushed, out.closed, out.gone, out.failed, out.error) == (1, 1, 1, 0, None)
    # the converted leads' query and the tasks' (both tasks in one lookup), one Collections PATCH; no create
    assert out.api_calls == 3 and connector.meter.by_kind["create"] == creates
    [remote] = box.tasks
    assert task(store, made).remote_id == remote and task(store, made).remote_closed_at
    got = get(connector, remote)
    assert (got["Status"], got["IsClosed"]) == ("Completed", True)
    assert task(store, lost).remote_id is None and task(store, lost).remote_closed_at
    assert "nothing to close" in task(store, lost).close_error
    assert push_tasks(store, "sales", connector).api_calls == 0  # both settled: never looked at again
    assert len(box.tasks) == 1


def test_closing_is_one_collection_call_harmless_twice_and_names_the_deleted_tasks(box, connector):
    lead_id = lead(box)
    made = connector.write_tasks([op(connector, lead_id, task_id=n) for n in (1, 2, 3)])
    ids = [r.remote_id for r in made]
    box.delete_task(ids[2])
    closes = [TaskClose(1, ids[0]), TaskClose(2, ids[1], dismissed=True), TaskClose(3, ids[2]),
              TaskClose(4, "00T000000000000EAA")]  # never a task here
    calls = connector.meter.by_kind["update"]
    results = connector.close_tasks(closes)
    assert [(r.ok, r.gone) for r in results] == [(True, False), (True, False), (False, True), (False, True)]
    assert results[3].error == "INVALID_CROSS_REFERENCE_KEY: invalid cross reference id"
    assert [box.tasks[i]["Status"] for i in ids[:2]] == ["Completed", "Completed"]
    assert connector.meter.by_kind["update"] == calls + 1
    assert [r.ok for r in connector.close_tasks(closes[:2])] == [True, True]  # already closed: harmless

"""Dynamics 365 tasks: the hub's tasks become task activities regarding the lead, owned and due, never twice;
closed in the hub, they are completed (or canceled, when dismissed) in Dataverse, once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.dynamics import DynamicsConnector, DynamicsSettings
from connectors.dynamics.tasks import activity_id
from hub.connector import TaskClose, TaskOp
from hub.errors import ConnectorError
from hub.tasks_push import push_tasks

from ..task_store import claimed, close, linked_task, push_and_crash, task

OWNER = "james.lewis@northwind-sales.example"  # a fakedata.team(0) member: a Dynamics user
DUE = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def connector(box):
    c = DynamicsConnector(DynamicsSettings(**box.connector_settings(box.url)), connection="sales")
    yield c
    c.close()


def op(connector, lead, task_id=7, **kw):
    fields = {"owner_remote": connector.remote_owner(OWNER), "title": "SLA breached: call back", "due_at": DUE,
              "kind": "escalation", "note": "LeadHub escalation (sla)", **kw}
    return TaskOp(task_id, lead, **fields)


def tasks(box):
    return box.tables["tasks"].rows


def test_a_task_is_created_regarding_the_lead_with_owner_due_date_and_marker(box, connector):
    lead = box.add_lead({"lastname": "Lovelace", "companyname": "Analytical Engines"})
    [res] = connector.write_tasks([op(connector, lead)])
    assert res.ok and res.remote_id == activity_id(op(connector, lead))
    row = tasks(box)[res.remote_id]
    assert row["_regardingobjectid_value"] == lead
    assert row["_ownerid_value"] == connector.remote_owner(OWNER) != None  # noqa: E711
    assert row["scheduledend"] == "2026-12-01T09:30:00Z"
    assert (row["subject"], row["prioritycode"], row["statecode"], row["statuscode"]) == (
        "SLA breached: call back", 2, 0, 2)  # open, Not Started
    assert row["description"].endswith("leadhub-task:7")


def test_pushing_the_same_task_again_is_the_same_row(box, connector):
    lead = box.add_lead({"lastname": "Lovelace", "companyname": "Analytical Engines"})
    [first] = connector.write_tasks([op(connector, lead)])
    [plain] = connector.write_tasks([op(connector, lead)])  # even unflagged: an upsert on the same key
    assert plain.remote_id == first.remote_id and len(tasks(box)) == 1
    box.tables["tasks"].rows[first.remote_id]["statecode"] = 1  # the owner completed it meanwhile
    upserts = connector.meter.by_kind["POST UpsertMultiple"]
    [again] = connector.write_tasks([op(connector, lead, maybe_exists=True)])
    assert again.remote_id == first.remote_id and len(tasks(box)) == 1
    assert connector.meter.by_kind["POST UpsertMultiple"] == upserts  # found: not written over
    assert tasks(box)[first.remote_id]["statecode"] == 1


def test_a_batch_with_a_missing_lead_is_refused_whole_with_dataverses_words(box, connector):
    lead = box.add_lead({"lastname": "Lovelace", "companyname": "Analytical Engines"})
    gone = box.add_lead({"lastname": "Gone", "companyname": "Nowhere"})
    box.tables["leads"].delete(gone)
    with pytest.raises(ConnectorError) as caught:
        connector.write_tasks([op(connector, lead, task_id=1), op(connector, gone, task_id=2)])
    assert caught.value.status == 400 and "Does Not Exist" in caught.value.vendor_message
    assert tasks(box) == {}  # all or nothing
    [res] = connector.write_tasks([op(connector, lead, task_id=1, owner_remote=None, due_at=None, kind="todo")])
    row = tasks(box)[res.remote_id]
    assert row["_ownerid_value"] == box.app_user_id and row["scheduledend"] is None and row["prioritycode"] == 1


def state(api, remote_id):
    """The task's (statecode, statuscode) as the Web API's GET answers them."""
    row = api.get(f"tasks({remote_id})", params={"$select": "statecode,statuscode"}).json()
    return row["statecode"], row["statuscode"]


def test_a_task_closed_in_the_hub_is_closed_in_dynamics_once_and_a_deleted_one_is_not_retried(
        sqlite_store, box, api, connector):
    store = sqlite_store
    leads = [box.add_lead({"lastname": n, "companyname": "Analytical Engines"}) for n in ("Ada", "Bob", "Cy")]
    done, dismissed, deleted = (linked_task(store, "sales", "leads", lead, owner=OWNER) for lead in leads)
    assert push_tasks(store, "sales", connector).pushed == 3
    close(store, done)
    close(store, dismissed, state="dismissed")
    updates = connector.meter.by_kind["POST UpdateMultiple"]
    out = push_tasks(store, "sales", connector)
    assert (out.closed, out.api_calls) == (2, 1) and connector.meter.by_kind["POST UpdateMultiple"] == updates + 1
    assert state(api, task(store, done).remote_id) == (1, 5)  # Completed / Completed
    assert state(api, task(store, dismissed).remote_id) == (2, 6)  # Canceled / Canceled
    assert state(api, task(store, deleted).remote_id) == (0, 2)  # still open, Not Started
    assert push_tasks(store, "sales", connector).api_calls == 0  # closed once: nothing sent again

    with box.lock:
        box.tables["tasks"].delete(task(store, deleted).remote_id)  # deleted in Dynamics, then closed in the hub
    close(store, deleted)
    out = push_tasks(store, "sales", connector)
    assert (out.closed, out.gone, out.failed) == (0, 1, 0)
    assert "Does Not Exist" in task(store, deleted).close_error and task(store, deleted).remote_closed_at
    assert push_tasks(store, "sales", connector).api_calls == 0  # counted as closed: not retried


def test_a_task_closed_after_a_push_whose_answer_was_lost_is_found_and_closed_never_created(
        sqlite_store, box, api, connector):
    store = sqlite_store
    a, b = (box.add_lead({"lastname": n, "companyname": "Analytical Engines"}) for n in ("Ada", "Bob"))
    made = linked_task(store, "sales", "leads", a, owner=OWNER)
    push_and_crash(store, "sales", connector)  # Dataverse made it; the hub never booked its id
    assert len(tasks(box)) == 1 and task(store, made).remote_id is None
    lost = linked_task(store, "sales", "leads", b, owner=OWNER)
    claimed(store, lost, "sales")  # claimed, and the process died before sending it
    close(store, made, state="dismissed")
    close(store, lost)
    upserts = connector.meter.by_kind["POST UpsertMultiple"]
    out = push_tasks(store, "sales", connector)
    assert (out.pushed, out.closed, out.gone, out.failed, out.error) == (1, 1, 1, 0, None)
    assert out.api_calls == 2 and connector.meter.by_kind["POST UpsertMultiple"] == upserts  # one query, one close
    [remote] = tasks(box)
    assert task(store, made).remote_id == remote and state(api, remote) == (2, 6)  # Canceled: dismissed
    assert task(store, lost).remote_closed_at and "nothing to close" in task(store, lost).close_error
    assert push_tasks(store, "sales", connector).api_calls == 0 and len(tasks(box)) == 1


def test_a_refused_batch_is_sorted_by_one_query_into_deleted_closed_and_open_tasks(box, connector):
    lead = box.add_lead({"lastname": "Lovelace", "companyname": "Analytical Engines"})
    made = connector.write_tasks([op(connector, lead, task_id=n) for n in (1, 2, 3)])
    ids = [r.remote_id for r in made]
    with box.lock:
        box.tables["tasks"].delete(ids[0])
        box.tables["tasks"].rows[ids[1]].update(statecode=1, statuscode=5)  # a user completed it
    results = connector.close_tasks([TaskClose(1, ids[0]), TaskClose(2, ids[1], dismissed=True),
                                     TaskClose(3, ids[2], dismissed=True)])
    assert [(r.ok, r.gone) for r in results] == [(False, True), (True, False), (True, False)]
    assert "Does Not Exist" in results[0].error
    assert (tasks(box)[ids[1]]["statecode"], tasks(box)[ids[1]]["statuscode"]) == (1, 5)  # the user's stands
    assert (tasks(box)[ids[2]]["statecode"], tasks(box)[ids[2]]["statuscode"]) == (2, 6)
    # refused, then the query, then the open one alone
    assert connector.meter.by_kind["POST UpdateMultiple"] == 2
    assert [r.ok for r in connector.close_tasks([TaskClose(3, ids[2], dismissed=True)])] == [True]  # harmless


def test_the_sandbox_checks_a_tasks_state_and_status_reason_together(box, api, connector):
    lead = box.add_lead({"lastname": "Lovelace", "companyname": "Analytical Engines"})
    [made] = connector.write_tasks([op(connector, lead)])
    resp = api.post("tasks/Microsoft.Dynamics.CRM.UpdateMultiple", json={"Targets": [
        {"@odata.type": "Microsoft.Dynamics.CRM.task", "activityid": made.remote_id, "statecode": 1, "statuscode": 6}]})
    assert resp.status_code == 400 and "6 is not a valid status code" in resp.json()["error"]["message"]
    assert state(api, made.remote_id) == (0, 2)

"""Dynamics 365 tasks: the hub's tasks become task activities regarding the lead, owned and due, never twice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.dynamics import DynamicsConnector, DynamicsSettings
from connectors.dynamics.tasks import activity_id
from hub.connector import TaskOp
from hub.errors import ConnectorError

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

"""Salesforce tasks: the hub's tasks become Task records on the lead (or its deal), owned and due, never twice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.salesforce import SalesforceConnector, SalesforceSettings
from connectors.salesforce.sandbox import SalesforceSandbox
from hub.connector import TaskOp

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

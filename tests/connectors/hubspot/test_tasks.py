"""HubSpot tasks: the hub's tasks become tasks on the contact, owned and due, and never twice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.hubspot import HubSpotConnector, HubSpotSettings
from connectors.hubspot.sandbox import HubSpotSandbox
from hub.connector import TaskOp
from hub.errors import ConnectorError

OWNER = "james.lewis@northwind-sales.example"  # a fakedata.team(0) member: a HubSpot owner
DUE = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def box():
    sandbox = HubSpotSandbox(rate=None, search_rate=None)
    with sandbox.serve() as served:
        sandbox.url = served.url
        yield sandbox


@pytest.fixture
def connector(box):
    c = HubSpotConnector(HubSpotSettings(base_url=box.url, token=box.token), connection="marketing")
    yield c
    c.close()


def op(connector, contact, task_id=7, **kw):
    fields = {"owner_remote": connector.remote_owner(OWNER), "title": "SLA breached: call back",
              "due_at": DUE, "kind": "breach", "note": "LeadHub breach (sla)", **kw}
    return TaskOp(task_id, contact, **fields)


def test_a_task_is_created_on_the_contact_with_owner_due_date_and_marker(box, connector):
    contact = box.add_contact({"email": "ada@example.com", "lastname": "Lovelace"})
    [res] = connector.write_tasks([op(connector, contact)])
    assert res.ok and res.remote_id in box.tasks
    task = box.tasks[res.remote_id]
    props = task["properties"]
    assert task["contacts"] == [contact]
    assert props["hubspot_owner_id"] == connector.remote_owner(OWNER) != None  # noqa: E711
    assert props["hs_timestamp"] == "2026-12-01T09:30:00.000Z"
    assert props["hs_task_subject"] == "SLA breached: call back"
    assert props["hs_task_status"] == "NOT_STARTED" and props["hs_task_priority"] == "HIGH"
    assert props["hs_task_body"].endswith("leadhub-task:7")
    assert connector.meter.by_kind["task_create"] == 1


def test_pushing_the_same_task_again_finds_it_instead_of_creating_a_second(box, connector):
    contact = box.add_contact({"email": "ada@example.com", "lastname": "Lovelace"})
    other = box.add_contact({"email": "bob@example.com", "lastname": "Builder"})
    [first] = connector.write_tasks([op(connector, contact)])
    # a crash between HubSpot's answer and the hub's commit: the hub sends it again, flagged
    again = connector.write_tasks([op(connector, contact, maybe_exists=True),
                                   op(connector, other, task_id=17, maybe_exists=True),  # its marker is not 7's
                                   op(connector, other, task_id=70, maybe_exists=True)])
    assert [r.ok for r in again] == [True, True, True]
    assert again[0].remote_id == first.remote_id
    assert len(box.tasks) == 3 and len({r.remote_id for r in again}) == 3
    assert connector.meter.by_kind["task_create"] == 2  # the second create carried only tasks 17 and 70


def test_a_refused_task_is_reported_with_hubspots_words_and_the_others_are_created(box, connector):
    contact = box.add_contact({"email": "ada@example.com", "lastname": "Lovelace"})
    good, bad = op(connector, contact, task_id=1), op(connector, "999999", task_id=2)
    results = {r.task_id: r for r in connector.write_tasks([good, bad])}
    assert results[1].ok and not results[2].ok
    assert "contact 999999 does not exist" in results[2].error
    assert len(box.tasks) == 1


def test_a_batch_refused_whole_raises_for_the_core_to_split(box, connector):
    with pytest.raises(ConnectorError) as caught:
        connector.write_tasks([op(connector, "424242")])
    assert caught.value.status == 400 and "does not exist" in caught.value.vendor_message


def test_a_task_without_owner_or_due_date_is_unassigned_and_due_now(box, connector):
    contact = box.add_contact({"email": "ada@example.com", "lastname": "Lovelace"})
    [res] = connector.write_tasks([op(connector, contact, owner_remote=None, due_at=None, kind="review")])
    props = box.tasks[res.remote_id]["properties"]
    assert "hubspot_owner_id" not in props and props["hs_task_priority"] == "MEDIUM"
    assert abs(datetime.fromisoformat(props["hs_timestamp"]) - datetime.now(UTC)).total_seconds() < 60

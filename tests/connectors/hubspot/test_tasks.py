"""HubSpot tasks: the hub's tasks become tasks on the contact, owned and due, and never twice; closed in the
hub, they are completed in HubSpot, once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.hubspot import HubSpotConnector, HubSpotSettings
from connectors.hubspot.sandbox import HubSpotSandbox
from hub.connector import TaskClose, TaskOp
from hub.errors import ConnectorError
from hub.tasks_push import push_tasks

from ..task_store import claimed, close, linked_task, push_and_crash, task

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


def status(connector, remote_id):
    """The task's status as HubSpot's GET answers it."""
    got = connector.client.crm.objects.tasks.basic_api.get_by_id(remote_id, properties=["hs_task_status"])
    return got.properties["hs_task_status"]


def test_a_task_closed_in_the_hub_is_completed_in_hubspot_once_and_a_deleted_one_is_not_retried(
        sqlite_store, box, connector):
    store = sqlite_store
    a, b = (box.add_contact({"email": f"{n}@example.com", "lastname": n}) for n in ("ada", "bob"))
    ta = linked_task(store, "marketing", "contacts", a, owner=OWNER)
    tb = linked_task(store, "marketing", "contacts", b, owner=OWNER)
    assert push_tasks(store, "marketing", connector).pushed == 2
    close(store, ta)
    out = push_tasks(store, "marketing", connector)
    assert (out.closed, out.api_calls) == (1, 1)
    assert status(connector, task(store, ta).remote_id) == "COMPLETED"
    assert status(connector, task(store, tb).remote_id) == "NOT_STARTED"
    assert push_tasks(store, "marketing", connector).api_calls == 0  # closed once: nothing sent again

    box.archive_task(task(store, tb).remote_id)  # deleted in HubSpot, then closed in the hub
    close(store, tb, state="dismissed")
    out = push_tasks(store, "marketing", connector)
    assert (out.closed, out.gone, out.failed) == (0, 1, 0)
    assert "OBJECT_NOT_FOUND" in task(store, tb).close_error and task(store, tb).remote_closed_at
    assert push_tasks(store, "marketing", connector).api_calls == 0  # counted as closed: not retried


def test_a_task_closed_after_a_push_whose_answer_was_lost_is_found_and_completed_never_created(
        sqlite_store, box, connector):
    store = sqlite_store
    a, b = (box.add_contact({"email": f"{n}@example.com", "lastname": n}) for n in ("ada", "bob"))
    made = linked_task(store, "marketing", "contacts", a, owner=OWNER)
    push_and_crash(store, "marketing", connector)  # HubSpot made it; the hub never booked its id
    assert len(box.tasks) == 1 and task(store, made).remote_id is None and task(store, made).push_attempts == 1
    lost = linked_task(store, "marketing", "contacts", b, owner=OWNER)
    claimed(store, lost, "marketing")  # claimed, and the process died before sending it
    close(store, made, lost)  # closed in the hub before the next push
    out = push_tasks(store, "marketing", connector)
    assert (out.pushed, out.closed, out.gone, out.failed, out.error) == (1, 1, 1, 0, None)
    # one associations read and one tasks read (the two tasks in one lookup), one batch update; no create
    assert out.api_calls == 3 and connector.meter.by_kind["task_associations"] == 1
    assert connector.meter.by_kind["task_create"] == 1  # the lost push's only
    [remote] = box.tasks
    assert task(store, made).remote_id == remote and task(store, made).remote_closed_at
    assert status(connector, remote) == "COMPLETED"
    assert task(store, lost).remote_id is None and task(store, lost).remote_closed_at
    assert "nothing to close" in task(store, lost).close_error
    assert push_tasks(store, "marketing", connector).api_calls == 0  # both settled: never looked at again
    assert len(box.tasks) == 1


def test_closing_is_one_batch_update_harmless_twice_and_names_the_deleted_tasks(box, connector):
    contact = box.add_contact({"email": "ada@example.com", "lastname": "Lovelace"})
    made = connector.write_tasks([op(connector, contact, task_id=n) for n in (1, 2, 3)])
    ids = [r.remote_id for r in made]
    box.archive_task(ids[2])
    closes = [TaskClose(1, ids[0]), TaskClose(2, ids[1], dismissed=True), TaskClose(3, ids[2])]
    results = connector.close_tasks(closes)
    assert [(r.ok, r.gone) for r in results] == [(True, False), (True, False), (False, True)]
    assert "OBJECT_NOT_FOUND" in results[2].error
    assert [box.tasks[i]["properties"]["hs_task_status"] for i in ids[:2]] == ["COMPLETED", "COMPLETED"]
    assert connector.meter.by_kind["task_update"] == 1  # one call, the 207 naming the deleted one
    again = connector.close_tasks(closes[:2])  # already closed: harmless
    assert [r.ok for r in again] == [True, True] and connector.meter.by_kind["task_update"] == 2
    [gone] = connector.close_tasks(closes[2:])  # only deleted ones: refused whole (404), one read tells
    assert (gone.ok, gone.gone) == (False, True) and "OBJECT_NOT_FOUND" in gone.error


def test_the_sandbox_refuses_a_status_hubspot_does_not_have(box, connector):
    from hubspot.crm.objects.tasks import BatchInputSimplePublicObjectBatchInput, SimplePublicObjectBatchInput
    from hubspot.crm.objects.tasks.exceptions import ApiException

    contact = box.add_contact({"email": "ada@example.com", "lastname": "Lovelace"})
    [made] = connector.write_tasks([op(connector, contact)])
    body = BatchInputSimplePublicObjectBatchInput(inputs=[SimplePublicObjectBatchInput(
        id=made.remote_id, properties={"hs_task_status": "DONE"})])
    with pytest.raises(ApiException) as caught:
        connector.client.crm.objects.tasks.batch_api.update(body)
    assert caught.value.status == 400 and "INVALID_OPTION" in caught.value.body
    assert box.tasks[made.remote_id]["properties"]["hs_task_status"] == "NOT_STARTED"

"""hub.tasks_push: open tasks become tasks in ONE CRM (the lead's, by preference), through a served HubSpot
sandbox and a real store; refused tasks are retried without blocking the others, and nothing is created twice.
Tasks closed in the hub after they were pushed are closed in the CRM, once, in batches."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from connectors.hubspot import HubSpotConnector, HubSpotSettings
from connectors.hubspot.sandbox import HubSpotSandbox
from hub.actions import Task
from hub.model import Lead, utcnow
from hub.store import LeadRow, Link, RecordIssue, row_values
from hub.tasks_push import preference, push_tasks, unclosed, unpushed

OWNER = "james.lewis@northwind-sales.example"  # a fakedata.team(0) member: a HubSpot owner
DUE = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def box():
    sandbox = HubSpotSandbox(rate=None, search_rate=None)
    with sandbox.serve() as served:
        sandbox.url = served.url
        yield sandbox


@pytest.fixture
def hubspot(box):
    c = HubSpotConnector(HubSpotSettings(base_url=box.url, token=box.token), connection="marketing")
    yield c
    c.close()


def lead(store, links: dict[str, str], owner: str | None = OWNER) -> str:
    """A lead linked to ``{connection: remote_id}``; returns its id."""
    row = Lead(last_name="Lovelace", owner=owner, status="SAL")
    with store.session() as s:
        s.add(LeadRow(**row_values(row)))
        s.flush()
        for conn, rid in links.items():
            s.add(Link(lead_id=row.id, connection=conn, object="contacts" if conn == "marketing" else "leads",
                       remote_id=rid))
    return row.id


def task(store, lead_id: str, title: str = "SLA breached: call back", kind: str = "breach", state: str = "open",
         assignee: str | None = None) -> int:
    with store.session() as s:
        t = Task(lead_id=lead_id, rule="sla", kind=kind, assignee=assignee, title=title, due_at=DUE,
                 created_at=DUE, state=state)
        s.add(t)
        s.flush()
        return t.id


def tasks(store) -> dict[int, Task]:
    with Session(store.engine) as s:
        return {t.id: t for t in s.exec(sa.select(Task)).scalars()}


def close(store, *ids: int, state: str = "done") -> None:
    """Close tasks in the hub, as a rule does (an SLA met) or a person dismissing them."""
    with store.session() as s:
        s.exec(sa.update(Task).where(Task.id.in_(ids)).values(state=state, closed_at=utcnow()))


def contact(box, n: int = 0) -> str:
    return box.add_contact({"email": f"c{n}@example.com", "lastname": f"C{n}"})


def test_open_tasks_go_to_the_leads_crm_once_with_owner_due_date_and_books(store, box, hubspot):
    a, b = contact(box, 1), contact(box, 2)
    ta = task(store, lead(store, {"marketing": a}))
    tb = task(store, lead(store, {"marketing": b}, owner=None), kind="review", assignee=OWNER)
    done = task(store, lead(store, {"marketing": contact(box, 3)}), state="done")
    out = push_tasks(store, "marketing", hubspot)
    assert (out.pushed, out.failed, out.unlinked, out.error) == (2, 0, [], None)
    assert out.api_calls == 2  # the owners, and one batch create
    rows = tasks(store)
    for tid, cid in ((ta, a), (tb, b)):
        t = rows[tid]
        assert t.remote_id in box.tasks and t.connection == "marketing" and t.push_attempts == 1
        assert t.pushed_at is not None and t.push_error is None
        remote = box.tasks[t.remote_id]
        assert remote["contacts"] == [cid]
        assert remote["properties"]["hubspot_owner_id"] == hubspot.remote_owner(OWNER)  # assignee, else lead owner
        assert remote["properties"]["hs_timestamp"] == "2026-12-01T09:30:00.000Z"
    assert rows[done].remote_id is None and len(box.tasks) == 2
    again = push_tasks(store, "marketing", hubspot)
    assert (again.pushed, again.failed) == (0, 0) and len(box.tasks) == 2 and unpushed(store) == 0


def test_a_refused_task_is_retried_every_run_and_never_blocks_the_others(sqlite_store, box, hubspot):
    store = sqlite_store
    good = task(store, lead(store, {"marketing": contact(box)}))
    bad_lead = lead(store, {"marketing": "999999"})  # a contact HubSpot does not have
    bad = task(store, bad_lead)
    out = push_tasks(store, "marketing", hubspot, run_id=None)
    assert (out.pushed, out.failed) == (1, 1)
    assert "contact 999999 does not exist" in out.errors[0]
    rows = tasks(store)
    assert rows[good].remote_id and rows[bad].remote_id is None
    assert "does not exist" in rows[bad].push_error and rows[bad].push_attempts == 1
    with Session(store.engine) as s:
        issue = s.exec(sa.select(RecordIssue)).scalars().one()
    assert (issue.kind, issue.lead_id, issue.remote_id) == ("task_rejected", bad_lead, "999999")

    again = push_tasks(store, "marketing", hubspot)  # still refused: tried again, alone (the batch is split)
    assert (again.pushed, again.failed) == (0, 1) and tasks(store)[bad].push_attempts == 2
    fixed = contact(box, 9)
    with store.session() as s:  # the sync re-links the lead to its real contact
        s.exec(sa.update(Link).where(Link.lead_id == bad_lead).values(remote_id=fixed))
    last = push_tasks(store, "marketing", hubspot)
    assert (last.pushed, last.failed) == (1, 0)
    t = tasks(store)[bad]
    assert t.remote_id and t.push_error is None and box.tasks[t.remote_id]["contacts"] == [fixed]
    assert len(box.tasks) == 2


def test_a_crash_after_the_crm_answered_does_not_create_the_task_twice(sqlite_store, box, hubspot):
    store = sqlite_store
    tid = task(store, lead(store, {"marketing": contact(box)}))

    class Crash(Exception):
        pass

    real = hubspot.write_tasks

    def answered_then_crashed(ops):
        real(ops)
        raise Crash  # the process dies before the hub commits what HubSpot answered

    hubspot.write_tasks = answered_then_crashed
    with pytest.raises(Crash):
        push_tasks(store, "marketing", hubspot)
    assert len(box.tasks) == 1 and tasks(store)[tid].remote_id is None
    hubspot.write_tasks = real
    out = push_tasks(store, "marketing", hubspot)  # sent again, flagged: HubSpot's task is found
    assert out.pushed == 1 and len(box.tasks) == 1
    assert tasks(store)[tid].remote_id == next(iter(box.tasks)) and tasks(store)[tid].push_attempts == 2


def test_each_task_goes_to_one_connection_by_preference_and_unlinked_ones_stay_open(sqlite_store, box, hubspot):
    store = sqlite_store
    both = task(store, lead(store, {"marketing": contact(box, 1), "sales": "00Q5L0000000001AAA"}))
    mine = task(store, lead(store, {"marketing": contact(box, 2)}))
    nowhere = task(store, lead(store, {"delivery": "12345"}))  # only on a monday board: no task-capable CRM
    out = push_tasks(store, "marketing", hubspot, prefer=["sales", "marketing"])
    assert (out.pushed, out.elsewhere, out.unlinked) == (1, 1, [nowhere])
    rows = tasks(store)
    assert rows[mine].remote_id and rows[both].remote_id is None and rows[both].connection is None
    assert rows[nowhere].state == "open" and rows[nowhere].connection is None
    assert push_tasks(store, "sales", hubspot, prefer=["marketing"]).pushed == 0  # not a task connection here
    assert len(box.tasks) == 1


def test_a_crm_that_refuses_the_credentials_or_keeps_failing_stops_the_push_until_next_run(sqlite_store, box):
    from hub.http import RetryPolicy

    store = sqlite_store
    tid = task(store, lead(store, {"marketing": contact(box)}))
    wrong = HubSpotConnector(HubSpotSettings(base_url=box.url, token="not-the-token"), connection="marketing")
    out = push_tasks(store, "marketing", wrong)
    assert out.error and "credentials refused" in out.error and out.pushed == 0
    assert tasks(store)[tid].push_attempts == 0 and tasks(store)[tid].connection is None  # nothing claimed

    flaky = HubSpotConnector(HubSpotSettings(base_url=box.url, token=box.token), connection="marketing",
                             policy=RetryPolicy(attempts=2, base=0.01))
    box.faults.add(503, count=2, path_contains="/tasks/batch/create")
    out = push_tasks(store, "marketing", flaky)
    assert out.error and (out.pushed, out.failed) == (0, 1)
    assert "503" in tasks(store)[tid].push_error and tasks(store)[tid].push_attempts == 1
    assert push_tasks(store, "marketing", flaky).pushed == 1 and len(box.tasks) == 1  # the next run


def test_the_preference_puts_task_capable_sales_connections_first():
    from types import SimpleNamespace as C

    from connectors.monday import MondayConnector

    conns = [C(name="marketing", role="marketing", connector=HubSpotConnector),
             C(name="delivery", role="delivery", connector=MondayConnector),
             C(name="archive", role="sales", connector=HubSpotConnector, writes=False),
             C(name="sales", role="sales", connector=HubSpotConnector)]
    assert preference(conns) == ["sales", "marketing"]


def test_a_connector_that_cannot_write_tasks_is_left_alone(sqlite_store):
    from connectors.monday import MondayConnector

    task(sqlite_store, lead(sqlite_store, {"delivery": "12345"}))
    assert not MondayConnector.can_write_tasks
    out = push_tasks(sqlite_store, "delivery", MondayConnector.__new__(MondayConnector))
    assert (out.pushed, out.unlinked) == (0, []) and unpushed(sqlite_store) == 1


# -- closing ------------------------------------------------------------------------------------------
def test_tasks_closed_in_the_hub_are_closed_in_the_crm_in_one_batch_and_only_once(store, box, hubspot):
    done, dismissed, still_open = (task(store, lead(store, {"marketing": contact(box, n)})) for n in range(3))
    never_pushed = task(store, lead(store, {"marketing": contact(box, 3)}), state="dismissed")
    assert push_tasks(store, "marketing", hubspot).pushed == 3
    assert push_tasks(store, "marketing", hubspot).api_calls == 0  # nothing to create or close: no call
    close(store, done)
    close(store, dismissed, state="dismissed")
    assert unclosed(store, "marketing") == 2
    out = push_tasks(store, "marketing", hubspot)
    assert (out.closed, out.gone, out.pushed, out.failed, out.error) == (2, 0, 0, 0, None)
    assert out.api_calls == 1 and hubspot.meter.by_kind["task_update"] == 1  # one batch update, no owner read
    rows = tasks(store)
    for tid in (done, dismissed):  # HubSpot has no canceled state: a dismissed task is completed too
        assert box.tasks[rows[tid].remote_id]["properties"]["hs_task_status"] == "COMPLETED"
        assert rows[tid].remote_closed_at is not None and rows[tid].close_error is None
    assert box.tasks[rows[still_open].remote_id]["properties"]["hs_task_status"] == "NOT_STARTED"
    assert rows[still_open].remote_closed_at is None
    assert rows[never_pushed].remote_id is None and rows[never_pushed].remote_closed_at is None  # never sent
    assert len(box.tasks) == 3 and unclosed(store) == 0
    again = push_tasks(store, "marketing", hubspot)
    assert (again.closed, again.api_calls) == (0, 0)  # closed once: nothing sent the second time


def test_closes_go_in_the_crms_batch_size(sqlite_store, box, hubspot):
    store = sqlite_store
    ids = [task(store, lead(store, {"marketing": contact(box, n)})) for n in range(5)]
    push_tasks(store, "marketing", hubspot)
    close(store, *ids)
    hubspot.limits = replace(hubspot.limits, batch_size=2)
    out = push_tasks(store, "marketing", hubspot, limit=4)
    assert (out.closed, out.api_calls) == (4, 2)  # 4 of 5 (the limit), 2 per batch
    out = push_tasks(store, "marketing", hubspot)
    assert (out.closed, out.api_calls) == (1, 1)
    assert {t["properties"]["hs_task_status"] for t in box.tasks.values()} == {"COMPLETED"}


def test_a_task_deleted_in_the_crm_counts_as_closed_and_is_never_sent_again(sqlite_store, box, hubspot):
    store = sqlite_store
    kept, deleted = (task(store, lead(store, {"marketing": contact(box, n)})) for n in range(2))
    push_tasks(store, "marketing", hubspot)
    rows = tasks(store)
    box.archive_task(rows[deleted].remote_id)  # a HubSpot user deleted it
    close(store, kept, deleted)
    out = push_tasks(store, "marketing", hubspot)
    assert (out.closed, out.gone, out.failed) == (1, 1, 0) and out.api_calls == 1  # a 207: one call
    rows = tasks(store)
    assert rows[deleted].remote_closed_at is not None and "OBJECT_NOT_FOUND" in rows[deleted].close_error
    assert box.tasks[rows[kept].remote_id]["properties"]["hs_task_status"] == "COMPLETED"
    assert push_tasks(store, "marketing", hubspot).api_calls == 0  # not retried

    alone = task(store, lead(store, {"marketing": contact(box, 5)}))  # a batch of deleted tasks only:
    push_tasks(store, "marketing", hubspot)  # HubSpot refuses it whole (404), one read tells them apart
    box.archive_task(tasks(store)[alone].remote_id)
    close(store, alone, state="dismissed")
    out = push_tasks(store, "marketing", hubspot)
    assert (out.closed, out.gone, out.failed, out.error) == (0, 1, 0, None) and out.api_calls == 2
    assert tasks(store)[alone].remote_closed_at is not None and unclosed(store) == 0
    assert push_tasks(store, "marketing", hubspot).api_calls == 0


def test_a_refused_close_is_retried_and_a_crash_after_the_crm_answered_just_closes_again(sqlite_store, box,
                                                                                        hubspot):
    store = sqlite_store
    tid = task(store, lead(store, {"marketing": contact(box)}))
    push_tasks(store, "marketing", hubspot)
    close(store, tid)
    box.faults.add(400, count=1, path_contains="/tasks/batch/update", message="Property values were not valid")
    out = push_tasks(store, "marketing", hubspot, run_id=None)
    assert (out.closed, out.failed) == (0, 1) and "task %d close:" % tid in out.errors[0]
    t = tasks(store)[tid]
    assert t.remote_closed_at is None and "Property values were not valid" in t.close_error
    assert box.tasks[t.remote_id]["properties"]["hs_task_status"] == "NOT_STARTED"
    with Session(store.engine) as s:
        issue = s.exec(sa.select(RecordIssue)).scalars().one()
    assert (issue.kind, issue.remote_id) == ("task_close_rejected", t.remote_id)

    class Crash(Exception):
        pass

    real = hubspot.close_tasks

    def answered_then_crashed(ops):
        real(ops)
        raise Crash  # HubSpot closed it; the process dies before the hub commits that

    hubspot.close_tasks = answered_then_crashed
    with pytest.raises(Crash):
        push_tasks(store, "marketing", hubspot)
    assert box.tasks[t.remote_id]["properties"]["hs_task_status"] == "COMPLETED"
    assert tasks(store)[tid].remote_closed_at is None
    hubspot.close_tasks = real
    out = push_tasks(store, "marketing", hubspot)  # sent again: closing a closed task is harmless
    assert (out.closed, out.failed, out.api_calls) == (1, 0, 1)
    t = tasks(store)[tid]
    assert t.remote_closed_at is not None and t.close_error is None
    assert box.tasks[t.remote_id]["properties"]["hs_task_status"] == "COMPLETED" and len(box.tasks) == 1


# -- a push whose answer was lost, then closed in the hub --------------------------------------------
def claimed(store, *ids: int, connection: str = "marketing") -> None:
    """Claimed and the attempt counted; the process died before the CRM's answer was booked."""
    with store.session() as s:
        s.exec(sa.update(Task).where(Task.id.in_(ids)).values(connection=connection, push_attempts=1))


def test_a_task_closed_after_a_push_whose_answer_was_lost_is_looked_for_then_closed_or_settled(store, box,
                                                                                             hubspot):
    made, lost, untouched = (task(store, lead(store, {"marketing": contact(box, n)})) for n in range(3))
    rows = tasks(store)
    lead_of = {tid: rows[tid].lead_id for tid in (made, lost)}
    with Session(store.engine) as s:
        remote = dict(s.exec(sa.select(Link.lead_id, Link.remote_id).where(Link.lead_id.in_(lead_of.values()))).all())
    from hub.connector import TaskOp

    # what the lost push did: HubSpot made the first task, and the process died before the hub booked it
    [res] = hubspot.write_tasks([TaskOp(made, remote[lead_of[made]], None, "SLA breached: call back", DUE, "breach",
                                        note="LeadHub breach (sla)")])
    claimed(store, made, lost)  # the second never reached HubSpot
    close(store, made, lost, untouched)  # closed in the hub before the next push; `untouched` was never sent
    assert unclosed(store, "marketing") == 2  # what the next push owes: maybe there, open
    out = push_tasks(store, "marketing", hubspot)
    assert (out.pushed, out.closed, out.gone, out.failed, out.error) == (1, 1, 1, 0, None)
    assert out.api_calls == 3  # the lookup (associations, tasks), one batch update; no owner read, no create
    assert list(box.tasks) == [res.remote_id]
    assert box.tasks[res.remote_id]["properties"]["hs_task_status"] == "COMPLETED"
    rows = tasks(store)
    assert rows[made].remote_id == res.remote_id and rows[made].pushed_at and rows[made].remote_closed_at
    assert rows[made].close_error is None and rows[made].push_attempts == 1
    assert rows[lost].remote_id is None and rows[lost].remote_closed_at is not None
    assert "nothing to close" in rows[lost].close_error
    assert rows[untouched].remote_closed_at is None and rows[untouched].connection is None  # never sent: left
    assert unclosed(store) == 0
    again = push_tasks(store, "marketing", hubspot)
    assert (again.pushed, again.closed, again.gone, again.api_calls) == (0, 0, 0, 0)  # settled: never again
    assert len(box.tasks) == 1


def test_a_refused_lookup_is_booked_as_a_close_error_and_retried(sqlite_store, box, hubspot):
    store = sqlite_store
    lost = task(store, lead(store, {"marketing": contact(box)}))
    claimed(store, lost)
    close(store, lost, state="dismissed")
    box.faults.add(400, count=1, path_contains="/associations/", message="Invalid input")
    out = push_tasks(store, "marketing", hubspot, run_id=None)
    assert (out.pushed, out.gone, out.failed, out.error) == (0, 0, 1, None)
    assert out.errors == [f"task {lost} lookup: {tasks(store)[lost].close_error}"]
    assert "Invalid input" in tasks(store)[lost].close_error and tasks(store)[lost].remote_closed_at is None
    with Session(store.engine) as s:
        issue = s.exec(sa.select(RecordIssue)).scalars().one()
    assert (issue.kind, issue.lead_id) == ("task_close_rejected", tasks(store)[lost].lead_id)
    out = push_tasks(store, "marketing", hubspot)  # the next run looks again: not there, nothing to close
    assert (out.gone, out.failed) == (1, 0) and "nothing to close" in tasks(store)[lost].close_error
    assert tasks(store)[lost].remote_closed_at is not None and not box.tasks


def test_lookups_go_in_the_crms_batch_size_and_stop_on_an_auth_error(sqlite_store, box, hubspot):
    store = sqlite_store
    ids = [task(store, lead(store, {"marketing": contact(box, n)})) for n in range(3)]
    claimed(store, *ids)
    close(store, *ids)
    wrong = HubSpotConnector(HubSpotSettings(base_url=box.url, token="not-the-token"), connection="marketing")
    out = push_tasks(store, "marketing", wrong)
    assert out.error and "credentials refused" in out.error and out.failed == 3
    assert all(t.remote_closed_at is None for t in tasks(store).values())  # retried next run
    hubspot.limits = replace(hubspot.limits, batch_size=2)
    out = push_tasks(store, "marketing", hubspot)
    assert (out.gone, out.failed, out.error) == (3, 0, None)
    assert hubspot.meter.by_kind["task_associations"] == 2 and not box.tasks  # 2 + 1; none created

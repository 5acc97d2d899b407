"""``leadhub explain``'s story beyond status and rule actions: whom routing passed over and why, each
rule task's life in the CRM it went to, and the merges asked of a CRM with their outcome."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hub.actions import Task
from hub.engine import Engine
from hub.explain import format_story, story
from hub.model import Lead
from hub.process import Process, default_process
from hub.store import LeadRow, row_values
from rules.dedup.tables import MergeRequest
from rules.routing import Routing

NOW = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)  # a Monday, 11:00 in Berlin
A, B = "a@t.example", "b@t.example"


def _process() -> Process:
    data = default_process().model_dump(mode="json", by_alias=True)
    data["team"] = [{"email": A, "role": "sales", "calendar": "de", "out_of_office": [{"from": "2026-03-01", "to": "2026-03-06"}]},
                    {"email": B, "role": "sales", "calendar": "de"},
                    {"email": "boss@t.example", "role": "sales_manager", "calendar": "de"},
                    {"email": "mk@t.example", "role": "marketing"}, {"email": "cs@t.example", "role": "customer_success"}]
    data["calendars"] = {"de": {"timezone": "Europe/Berlin", "country": "DE"}}
    data["default_calendar"] = "de"
    data["rules"] = {"routing": {"pools": {"p": {"members": [A, B]}},
                                 "rules": [{"name": "rr", "strategy": "round_robin", "pool": "p"}]}}
    return Process.model_validate(data)


def test_explain_shows_who_routing_passed_over_each_tasks_life_in_its_crm_and_crm_merges(sqlite_store):
    process = _process()
    lead, other = Lead(last_name="Weber", status="MQL"), Lead(last_name="Weber", status="MQL")
    with sqlite_store.session() as s:
        for one in (lead, other):
            s.add(LeadRow(**row_values(one), created_at=NOW, updated_at=NOW))
    Engine(sqlite_store, process, [Routing(Routing.Config.model_validate(process.rules["routing"]), process)]) \
        .run(NOW, [lead.id])
    with sqlite_store.session() as s:
        s.add(Task(lead_id=lead.id, rule="sla", kind="breach", assignee=B, title="Call Weber", created_at=NOW,
                   state="done", closed_at=NOW + timedelta(hours=2), connection="sales", remote_id="T-1",
                   pushed_at=NOW + timedelta(minutes=5), remote_closed_at=NOW + timedelta(hours=3),
                   push_attempts=1))
        s.add(Task(lead_id=lead.id, rule="governance", kind="violation", assignee=B, title="Add a loss reason",
                   created_at=NOW + timedelta(hours=1), connection="marketing", push_attempts=2,
                   push_error="INVALID_FIELD: ownerId"))
        s.add(MergeRequest(survivor_id=lead.id, merged_id=other.id, connection="sales-emea", object="leads",
                           survivor_remote_id="D-1", merged_remote_id="D-2", confidence=0.999, state="skipped",
                           at=NOW + timedelta(hours=4), updated_at=NOW + timedelta(hours=4),
                           message="Dynamics merges only active leads; lead D-2 is Disqualified (Closed Lost)"))

    texts = [(e.what, e.by, e.text) for e in story(sqlite_store, lead.id)]
    assign = next(i for i, t in enumerate(texts) if t[2].startswith("assign_owner"))
    assert texts[assign + 1][2].startswith("  candidates: ")
    assert f"{B} chosen" in texts[assign + 1][2] and f"{A}: away until 2026-03-06" in texts[assign + 1][2]
    tasks = [t[2] for t in texts if t[0] == "task"]
    assert tasks == [
        f"[breach] 'Call Weber' → {B}: created as task T-1 in sales",
        f"[violation] 'Add a loss reason' → {B}: marketing refused it, retried every run: INVALID_FIELD: ownerId",
        f"[breach] 'Call Weber' → {B}: done in the hub",
        f"[breach] 'Call Weber' → {B}: closed in sales",
    ]
    (merge,) = [t for t in texts if t[0] == "merge"]
    assert merge[1] == "connection:sales-emea"
    assert merge[2] == (f"record D-2 into D-1 (leads {other.id} into {lead.id}): skipped — Dynamics merges only "
                        "active leads; lead D-2 is Disqualified (Closed Lost)")
    printed = "\n".join(format_story(sqlite_store, lead.id))
    assert "task     [connection:sales] [breach] 'Call Weber'" in printed and "candidates:" in printed

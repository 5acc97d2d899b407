"""SLA clocks and the escalation ladder at their edges."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from hub.engine import build_rules
from hub.errors import ConfigError
from hub.model import Lead
from hub.process import default_process
from rules.sla import SlaConfig, SlaRule
from tests.rules.harness import (
    CLAIRE,
    EXAMPLE,
    JONAS,
    LENA,
    SOFIA,
    actions,
    add,
    change,
    flags,
    kinds,
    run,
    tasks,
)

BERLIN, LONDON = ZoneInfo("Europe/Berlin"), ZoneInfo("Europe/London")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
S = timedelta(seconds=1)


def sla(**config) -> SlaRule:
    return SlaRule(SlaConfig(**config), EXAMPLE)


def negotiation(owner: str = JONAS, **kw) -> Lead:
    return Lead(last_name="Weber", company="Nordwind", status="Negotiation", status_since=T0, owner=owner,
                next_action=date(2026, 3, 5), **kw)


def test_negotiation_ladder_reminds_escalates_and_stalls_exactly_at_each_threshold(db):
    lead = negotiation()
    add(db, lead)
    rule = sla()
    assert run(db, rule, T0).actions == []
    assert run(db, rule, T0 + timedelta(days=5) - S).evaluated == 0  # its timer is not due yet
    out = run(db, rule, T0 + timedelta(days=5))
    assert kinds(out) == ["create_task"] and out.actions[0].params["task_kind"] == "reminder"
    assert out.actions[0].params["assignee"] == JONAS
    assert run(db, rule, T0 + timedelta(days=5), all_leads=True).actions == []  # once per clock
    out = run(db, rule, T0 + timedelta(days=7))
    assert kinds(out) == ["escalate"] and out.actions[0].params["to"] == SOFIA  # Jonas's manager
    out = run(db, rule, T0 + timedelta(days=10))
    assert kinds(out) == ["flag"] and "stalled" in flags(db, lead.id)
    assert [(t.kind, t.assignee) for t in tasks(db)] == [("reminder", JONAS), ("escalation", SOFIA)]


def test_a_lead_first_seen_late_fires_only_its_furthest_step_unless_catching_up_all(db):
    late, all_steps = negotiation(), negotiation()
    add(db, late, all_steps)
    out = run(db, sla(), T0 + timedelta(days=8), lead_ids=[late.id])
    assert [a.kind for a in out.actions] == ["escalate"]
    out = run(db, sla(catch_up="all"), T0 + timedelta(days=8), lead_ids=[all_steps.id])
    assert [a.kind for a in out.actions] == ["create_task", "escalate"]


def test_business_hours_start_on_a_friday_evening_count_from_monday(db):
    lead = Lead(last_name="A", status="SAL", owner=JONAS, status_since=datetime(2026, 3, 6, 16, tzinfo=BERLIN))
    add(db, lead)
    rule = sla()  # SAL: remind 4h, due 8h, escalate 16h of business time
    run(db, rule, lead.status_since)
    assert run(db, rule, datetime(2026, 3, 9, 12, tzinfo=BERLIN) - S).evaluated == 0
    out = run(db, rule, datetime(2026, 3, 9, 12, tzinfo=BERLIN))
    assert kinds(out) == ["create_task"] and out.actions[0].inputs["business_hours"] is True
    assert out.actions[0].inputs["deadline"] == "2026-03-09T11:00:00+00:00"
    out = run(db, rule, datetime(2026, 3, 9, 16, tzinfo=BERLIN))
    assert [a.params["task_kind"] for a in out.actions] == ["breach"]


def test_a_holiday_inside_the_sla_window_stops_the_clock(db):
    lead = Lead(last_name="A", status="SAL", owner=JONAS, status_since=datetime(2026, 4, 2, 15, tzinfo=BERLIN))
    add(db, lead)  # Good Friday 3 April and Easter Monday 6 April are public holidays
    out = run(db, sla(), datetime(2026, 4, 7, 11, tzinfo=BERLIN) - S)
    assert out.actions == []
    assert kinds(run(db, sla(), datetime(2026, 4, 7, 11, tzinfo=BERLIN))) == ["create_task"]


def test_a_lead_in_another_region_runs_on_its_owners_calendar(db):
    uk = Lead(last_name="Hughes", status="SAL", owner=CLAIRE, status_since=datetime(2026, 3, 6, 16, tzinfo=LONDON))
    de = Lead(last_name="Keller", status="SAL", owner=JONAS, status_since=datetime(2026, 3, 6, 16, tzinfo=LONDON))
    add(db, uk, de)
    run(db, sla(), datetime(2026, 3, 6, 16, tzinfo=LONDON))
    out = run(db, sla(), datetime(2026, 3, 9, 11, 30, tzinfo=LONDON))  # London works until 17:30
    assert [a.lead_id for a in out.actions] == [uk.id]
    out = run(db, sla(), datetime(2026, 3, 9, 13, tzinfo=BERLIN))  # 17:00 Berlin Friday: 0 h, then Mon 09-13
    assert [a.lead_id for a in out.actions] == [de.id]


def test_dst_change_inside_the_window(db):
    lead = Lead(last_name="A", status="SAL", owner=JONAS, status_since=datetime(2026, 3, 27, 16, tzinfo=BERLIN))
    add(db, lead)  # clocks go forward on Sunday 29 March
    run(db, sla(), lead.status_since)
    out = run(db, sla(), datetime(2026, 3, 30, 10, tzinfo=timezone.utc))  # 12:00 CEST
    assert out.actions[0].inputs["deadline"] == "2026-03-30T10:00:00+00:00"


def test_the_owners_days_off_pause_a_business_hours_clock(db):
    lead = Lead(last_name="A", status="SAL", owner=JONAS, status_since=datetime(2026, 7, 31, 16, tzinfo=BERLIN))
    add(db, lead)  # Jonas is away 3-14 August
    out = run(db, sla(), datetime(2026, 7, 31, 16, tzinfo=BERLIN))
    assert out.actions == []
    assert run(db, sla(), datetime(2026, 8, 17, 12, tzinfo=BERLIN) - S).evaluated == 0
    assert kinds(run(db, sla(), datetime(2026, 8, 17, 12, tzinfo=BERLIN))) == ["create_task"]


def test_a_pause_condition_stops_the_clock_while_it_holds(db):
    rule = sla(pause={"Negotiation": "lead.custom.on_hold == true"})
    lead = negotiation()
    add(db, lead)
    run(db, rule, T0)
    change(db, lead.id, on_hold=True)
    assert run(db, rule, T0 + timedelta(days=2)).actions == []
    assert run(db, rule, T0 + timedelta(days=5)).actions == []  # paused: no reminder at 5 days
    change(db, lead.id, on_hold=False)
    run(db, rule, T0 + timedelta(days=5))  # three days were paused
    assert run(db, rule, T0 + timedelta(days=8) - S).evaluated == 0
    assert kinds(run(db, rule, T0 + timedelta(days=8))) == ["create_task"]


def test_a_new_next_action_restarts_the_clock_and_closes_the_old_tasks(db):
    lead = negotiation()
    add(db, lead)
    rule = sla()
    for day in (0, 5, 7, 10):
        run(db, rule, T0 + timedelta(days=day))
    assert "stalled" in flags(db, lead.id) and len(tasks(db)) == 2
    change(db, lead.id, next_action=date(2026, 3, 16))
    out = run(db, rule, T0 + timedelta(days=11))
    assert kinds(out) == ["close_tasks", "unflag"] and "next_action changed" in out.actions[0].reason
    assert tasks(db) == [] and "stalled" not in flags(db, lead.id)
    assert kinds(run(db, rule, T0 + timedelta(days=16))) == ["create_task"]  # 5 days after the restart


def test_a_timestamp_field_restarts_the_clock_at_that_instant(db):
    rule = sla(restart_on={"Negotiation": ["last_activity"]})
    lead = negotiation()
    add(db, lead)
    run(db, rule, T0)
    change(db, lead.id, last_activity=(T0 + timedelta(days=3)).isoformat())
    run(db, rule, T0 + timedelta(days=4))
    assert run(db, rule, T0 + timedelta(days=8) - S).evaluated == 0
    assert kinds(run(db, rule, T0 + timedelta(days=8))) == ["create_task"]


def test_leaving_the_status_closes_its_tasks_and_clears_stalled(db):
    lead = negotiation()
    add(db, lead)
    run(db, sla(catch_up="all"), T0 + timedelta(days=10))
    assert len(tasks(db)) == 2
    change(db, lead.id, status="Closed Won", status_since=T0 + timedelta(days=11))
    out = run(db, sla(), T0 + timedelta(days=11))
    assert kinds(out) == ["close_tasks", "unflag"] and out.actions[0].reason.startswith("Negotiation ended")
    assert tasks(db) == [] and flags(db, lead.id) == {}


def test_escalation_goes_to_the_role_when_the_owner_has_no_manager_and_is_refused_when_nobody_is(db):
    lead, orphan = negotiation(owner=LENA), negotiation(owner=LENA)
    add(db, lead, orphan)
    out = run(db, sla(), T0 + timedelta(days=7), lead_ids=[lead.id])
    assert out.actions[0].params["to"] == SOFIA  # the first sales_manager
    out = run(db, sla(escalate_to_role=None), T0 + timedelta(days=7), lead_ids=[orphan.id])
    assert out.refused == 1 and "no one to escalate to" in out.actions[0].outcome


def test_a_status_without_an_sla_has_no_clock(db):
    lead = Lead(last_name="A", status="Closed Lost", loss_reason="Price", status_since=T0)
    add(db, lead)
    assert run(db, sla(), T0 + timedelta(days=400)).actions == []


def test_bad_sla_config_is_a_config_error():
    process = default_process().model_copy(update={"rules": {"sla": {
        "pause": {"Negotation": "true"}, "catch_up": "sometimes"}}})
    with pytest.raises(ConfigError) as exc:
        build_rules(process, {"sla": SlaRule})
    text = str(exc.value)
    assert "rules.sla.catch_up" in text
    with pytest.raises(ConfigError, match="unknown status 'Negotation'"):
        build_rules(default_process().model_copy(update={"rules": {"sla": {"pause": {"Negotation": "true"}}}}),
                    {"sla": SlaRule})
    with pytest.raises(ConfigError, match="invalid CEL expression"):
        build_rules(default_process().model_copy(update={"rules": {"sla": {"pause": {"*": "lead.x =="}}}}),
                    {"sla": SlaRule})


def test_actions_carry_inputs_and_a_one_line_reason(db):
    add(db, negotiation())
    run(db, sla(), T0 + timedelta(days=5))
    (a,) = actions(db)
    assert a.reason == "Negotiation since 2026-03-02 09:00 UTC: remind after 5 days, reached 2026-03-07 09:00 UTC"
    assert a.inputs["threshold"] == "5d" and a.inputs["clock_start"] == T0.isoformat()
    assert a.key == f"Negotiation@{T0.isoformat()}:remind"

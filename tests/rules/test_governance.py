"""Governance: required fields and process checks become a flag and one task for the owner."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from hub.engine import build_rules
from hub.errors import ConfigError
from hub.model import Lead
from hub.process import default_process
from hub.store import StatusChange
from rules.governance import GovernanceConfig, GovernanceRule, open_violations
from tests.rules.harness import EXAMPLE, JONAS, add, change, flags, kinds, run, tasks

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
SEVEN_DAYS = {"status": "Negotiation", "message": "next-action date more than 7 days out",
              "when": 'lead.next_action != null && lead.next_action > now + duration("168h")'}


def gov(**config) -> GovernanceRule:
    return GovernanceRule(GovernanceConfig(**config), default_process())


def test_a_closed_lost_without_a_reason_is_kept_flagged_and_becomes_a_task_until_fixed(db):
    lead = Lead(last_name="A", status="Closed Lost", owner=JONAS, status_since=T0)
    add(db, lead)
    out = run(db, gov(), T0)
    assert kinds(out) == ["flag", "create_task"]
    (task,) = tasks(db)
    assert (task.kind, task.assignee, task.title) == ("violation", JONAS, "Complete Closed Lost: missing loss_reason")
    assert flags(db, lead.id)["incomplete"].note == "missing loss_reason"
    assert db.get_lead(lead.id).status == "Closed Lost"  # the status change stands
    assert [(v.lead_id, v.status, v.owner, v.problems) for v in open_violations(db)] == [
        (lead.id, "Closed Lost", JONAS, "missing loss_reason")]
    assert run(db, gov(), T0 + timedelta(hours=1), all_leads=True).actions == []
    change(db, lead.id, loss_reason="Price")
    out = run(db, gov(), T0 + timedelta(hours=2))
    assert kinds(out) == ["unflag", "close_tasks"]
    assert tasks(db) == [] and open_violations(db) == []


def test_a_changed_gap_replaces_the_task(db):
    lead = Lead(last_name="A", status="Opportunity", owner=JONAS, status_since=T0, value=1000.0)
    add(db, lead)
    run(db, gov(), T0)
    assert [t.title for t in tasks(db)] == ["Complete Opportunity: missing probability, expected_close"]
    change(db, lead.id, probability=0.4)
    out = run(db, gov(), T0 + timedelta(hours=1))
    assert kinds(out) == ["unflag", "close_tasks", "flag", "create_task"]
    assert [t.title for t in tasks(db)] == ["Complete Opportunity: missing expected_close"]
    assert [t.state for t in tasks(db, state=None)] == ["done", "open"]


def test_a_sal_rejection_needs_its_reason_even_in_a_status_that_does_not(db):
    lead = Lead(last_name="A", company="Acme", status="MQL", owner=JONAS, status_since=T0,
                custom={"segment": "SMB", "company_size": "11-50", "industry": "Retail", "role": "CTO"})
    add(db, lead)
    with db.session() as s:
        s.add(StatusChange(lead_id=lead.id, from_status="SAL", to_status="MQL", at=T0, by="connection:crm"))
    run(db, gov(), T0)
    assert [t.title for t in tasks(db)] == ["Complete MQL: missing rejection_reason"]


def test_a_process_check_in_cel_holds_at_exactly_seven_days_and_fails_past_them(db):
    ok = Lead(last_name="ok", status="Negotiation", status_since=T0, next_action=date(2026, 3, 9))
    late = Lead(last_name="late", status="Negotiation", status_since=T0, next_action=date(2026, 3, 10))
    add(db, ok, late)
    out = run(db, gov(checks=[SEVEN_DAYS]), T0)
    assert {a.lead_id for a in out.actions} == {late.id}
    assert flags(db, late.id)["incomplete"].note == "next-action date more than 7 days out"


def test_a_complete_lead_and_an_unchecked_status_get_nothing(db):
    done = Lead(last_name="A", status="Closed Lost", loss_reason="Price", status_since=T0)
    skipped = Lead(last_name="B", status="Opportunity", status_since=T0)
    add(db, done, skipped)
    assert run(db, gov(statuses=["Closed Lost"]), T0).actions == []


def test_open_violations_filter_by_owner(db):
    a = Lead(last_name="A", status="Closed Lost", owner=JONAS, status_since=T0)
    b = Lead(last_name="B", status="Closed Lost", owner="other@x.io", status_since=T0)
    add(db, a, b)
    run(db, gov(), T0)
    assert [v.lead_id for v in open_violations(db, owner=JONAS.upper())] == [a.id]
    assert len(open_violations(db)) == 2


def test_governance_config_errors():
    process = EXAMPLE.model_copy(update={"rules": {"governance": {"checks": [{**SEVEN_DAYS, "status": "Negotation"}],
                                                                   "statusses": []}}})
    with pytest.raises(ConfigError) as exc:
        build_rules(process, {"governance": GovernanceRule})
    text = str(exc.value)
    assert "unknown key 'statusses' (did you mean 'statuses'?)" in text
    process = EXAMPLE.model_copy(update={"rules": {"governance": {"checks": [{**SEVEN_DAYS, "status": "Negotation"}]}}})
    with pytest.raises(ConfigError, match=r"rules\.governance\.checks\[0\]\.status: unknown status 'Negotation'"):
        build_rules(process, {"governance": GovernanceRule})

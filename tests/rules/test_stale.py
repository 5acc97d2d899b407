"""Stale and nurture: periodic reviews, requalification, untouched leads, "not now" losses."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hub.engine import build_rules
from hub.errors import ConfigError
from hub.model import Lead
from rules.stale import StaleConfig, StaleRule
from tests.rules.harness import EXAMPLE, JONAS, LENA, add, change, flags, kinds, run

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
S = timedelta(seconds=1)


def stale(**config) -> StaleRule:
    return StaleRule(StaleConfig(**config), EXAMPLE)


def nurtured(owner: str = LENA, **custom) -> Lead:
    return Lead(last_name="A", company="Acme", status="Nurture", status_since=T0, owner=owner,
                custom={"contact_plan": "quarterly", **custom})


def test_nurture_is_reviewed_every_60_days_by_marketing(db):
    mine, sales_owned = nurtured(), nurtured(owner=JONAS)
    add(db, mine, sales_owned)
    rule = stale()
    assert run(db, rule, T0).actions == []
    assert run(db, rule, T0 + timedelta(days=60) - S).evaluated == 0
    out = run(db, rule, T0 + timedelta(days=60))
    assert [(a.params["task_kind"], a.params["assignee"]) for a in out.actions] == [("review", LENA)] * 2
    assert run(db, rule, T0 + timedelta(days=61), all_leads=True).actions == []
    out = run(db, rule, T0 + timedelta(days=120))
    assert [a.params["title"] for a in out.actions] == ["Review Acme (Nurture, review 2)"] * 2


def test_requalified_after_three_months_only_when_budget_or_timeline_changed(db):
    moved, same = nurtured(budget="none"), nurtured(budget="none")
    add(db, moved, same)
    rule = stale()
    run(db, rule, T0)
    change(db, moved.id, budget="50k EUR")
    out = run(db, rule, T0 + timedelta(days=50))
    assert [a.kind for a in out.actions] == []  # changed, but not three months yet
    out = run(db, rule, T0 + timedelta(days=90) - S)
    assert [a.params.get("task_kind") for a in out.actions] == ["review", "review"]  # the 60-day reviews
    out = run(db, rule, T0 + timedelta(days=90))
    requalified = [a for a in out.actions if a.lead_id == moved.id]
    assert [a.kind for a in requalified] == ["set_status", "create_task"]
    assert requalified[0].reason == "requalified after Nurture: budget 'none' → '50k EUR'"
    assert db.get_lead(moved.id).status == "SAL" and db.get_lead(same.id).status == "Nurture"


def test_a_lead_untouched_past_its_limit_is_flagged_until_touched(db):
    lead = Lead(last_name="A", status="Lead", status_since=T0)  # Lead: 30 days
    add(db, lead)
    rule = stale()
    run(db, rule, T0)
    assert run(db, rule, T0 + timedelta(days=30)).actions == []  # exactly at the limit: not yet stale
    out = run(db, rule, T0 + timedelta(days=30, seconds=1))
    assert kinds(out) == ["flag"] and flags(db, lead.id)["stale"].note == "untouched since 2026-03-02"
    change(db, lead.id, company="Acme")
    out = run(db, rule, T0 + timedelta(days=31))
    assert kinds(out) == ["unflag"] and flags(db, lead.id) == {}
    assert run(db, rule, T0 + timedelta(days=61)).actions == []
    assert kinds(run(db, rule, T0 + timedelta(days=61, seconds=1))) == ["flag"]


def test_a_score_change_is_no_touch_but_a_last_activity_timestamp_is(db):
    scored, active = Lead(last_name="A", status_since=T0), Lead(last_name="B", status_since=T0)
    add(db, scored, active)
    rule = stale()
    run(db, rule, T0)
    change(db, scored.id, score=40.0)
    change(db, active.id, last_activity=(T0 + timedelta(days=20)).isoformat())
    out = run(db, rule, T0 + timedelta(days=31))
    assert [a.lead_id for a in out.actions] == [scored.id]


def test_a_not_now_loss_goes_to_nurture_through_a_reopening_move(db):
    timing = Lead(last_name="A", status="Closed Lost", loss_reason="timing", status_since=T0)
    price = Lead(last_name="B", status="Closed Lost", loss_reason="Price", status_since=T0)
    old = Lead(last_name="C", status="Closed Lost", loss_reason="Not now", status_since=T0 - timedelta(days=31))
    add(db, timing, price, old)
    out = run(db, stale(), T0 + timedelta(hours=1))
    assert [(a.lead_id, a.kind, a.params["status"], a.params["reopen"]) for a in out.actions] == [
        (timing.id, "set_status", "Nurture", True)]
    assert db.get_lead(timing.id).status == "Nurture" and db.get_lead(price.id).status == "Closed Lost"
    assert db.get_lead(old.id).status == "Closed Lost"


def test_stale_config_errors():
    process = EXAMPLE.model_copy(update={"rules": {"stale": {"requalify_to": "SQL2", "untouched": {"Lead": "-3d"}}}})
    with pytest.raises(ConfigError) as exc:
        build_rules(process, {"stale": StaleRule})
    assert "rules.stale.untouched.Lead: duration '-3d' is negative" in str(exc.value)
    process = EXAMPLE.model_copy(update={"rules": {"stale": {"requalify_to": "SQL2"}}})
    with pytest.raises(ConfigError, match="rules.stale.requalify_to: unknown status 'SQL2'"):
        build_rules(process, {"stale": StaleRule})

"""Scoring: CEL fit points, decaying intent, bands, and the MQL threshold at its edge."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hub.engine import build_rules
from hub.errors import ConfigError
from hub.model import Lead
from hub.process import default_process
from hub.store import StatusChange
from rules.scoring import ScoringConfig, ScoringRule
from tests.rules.harness import add, kinds, run

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
FIT = [
    {"name": "DACH", "when": 'lead.country in ["DE", "AT", "CH"]', "points": 20},
    {"name": "mid-size", "when": 'lead.company_size in ["51-200", "201-500"]', "points": 20},
    {"name": "big deal", "when": "lead.value > 50000.0", "points": 10},
]
INTENT = [{"name": "demo", "field": "demo_request_at", "points": 40},
          {"name": "pricing", "field": "pricing_page_at", "points": 20, "max_count": 2}]


def scoring(**config) -> ScoringRule:
    return ScoringRule(ScoringConfig(**{"fit": FIT, "intent": INTENT, **config}), default_process())


def ago(days: float) -> str:
    return (T0 - timedelta(days=days)).isoformat()


def test_fit_points_come_from_cel_conditions(db):
    lead = Lead(last_name="A", country="AT", custom={"company_size": "51-200"}, status_since=T0)
    add(db, lead)
    out = run(db, scoring(), T0)
    assert kinds(out) == ["set_fields"]
    assert out.actions[0].reason == "score 40 (cold): DACH +20, mid-size +20"
    after = db.get_lead(lead.id)
    assert after.score == 40 and after.custom["score_band"] == "cold"


def test_a_null_field_makes_a_condition_false_not_an_error(db):
    lead = Lead(last_name="A", status_since=T0)  # no country, no value, no size
    add(db, lead)
    out = run(db, scoring(), T0)
    assert out.errors == [] and out.actions[0].inputs["fit"] == {}


def test_intent_decays_with_the_half_life(db):
    fresh = Lead(last_name="A", status_since=T0, custom={"demo_request_at": ago(0)})
    month = Lead(last_name="B", status_since=T0, custom={"demo_request_at": ago(30)})
    two = Lead(last_name="C", status_since=T0, custom={"demo_request_at": ago(60)})
    add(db, fresh, month, two)
    run(db, scoring(), T0)
    assert [db.get_lead(x.id).score for x in (fresh, month, two)] == [40, 20, 10]


def test_repeated_events_count_up_to_max_count_and_undated_ones_do_not_decay(db):
    lead = Lead(last_name="A", status_since=T0, custom={"pricing_page_at": [ago(0), ago(0), ago(0)],
                                                        "demo_request_at": True})
    add(db, lead)
    out = run(db, scoring(), T0)
    assert out.actions[0].inputs["intent"] == {"pricing": 40.0, "demo": 40.0}


def test_exactly_at_the_threshold_moves_a_lead_to_mql_one_point_below_does_not(db):
    at = Lead(last_name="at", country="DE", status_since=T0, custom={"demo_request_at": ago(0),
                                                                     "company_size": "51-200"},
              value=60000.0)  # 20 + 20 + 10 + 40 = 90
    below = Lead(last_name="below", country="DE", status_since=T0, custom={"demo_request_at": ago(0),
                                                                           "company_size": "51-200"})  # 80
    add(db, at, below)
    out = run(db, scoring(mql_threshold=90), T0)
    moved = [a for a in out.actions if a.kind == "set_status"]
    assert [(a.lead_id, a.reason) for a in moved] == [(at.id, "score 90 reached the MQL threshold 90")]
    assert db.get_lead(at.id).status == "MQL" and db.get_lead(below.id).status == "Lead"
    assert db.get_lead(at.id).custom["score_band"] == "warm"


def test_only_statuses_in_mql_from_are_moved(db):
    nurture = Lead(last_name="A", status="Nurture", status_since=T0, country="DE",
                   custom={"demo_request_at": True, "company_size": "51-200"})
    add(db, nurture)
    out = run(db, scoring(mql_threshold=50), T0)
    assert kinds(out) == ["set_fields"] and db.get_lead(nurture.id).status == "Nurture"


def test_bands_at_their_boundaries(db):
    rule = scoring(bands={"hot": 60, "warm": 40})
    hot = Lead(last_name="hot", country="DE", custom={"demo_request_at": True}, status_since=T0)  # 60
    warm = Lead(last_name="warm", country="DE", custom={"company_size": "51-200"}, status_since=T0)  # 40
    cold = Lead(last_name="cold", country="DE", status_since=T0)  # 20
    add(db, hot, warm, cold)
    run(db, rule, T0)
    assert [db.get_lead(x.id).custom["score_band"] for x in (hot, warm, cold)] == ["hot", "warm", "cold"]


def test_an_unchanged_score_is_not_rewritten_and_a_decaying_one_is_rescored_daily(db):
    steady = Lead(last_name="A", country="DE", status_since=T0)
    cooling = Lead(last_name="B", status_since=T0, custom={"demo_request_at": ago(0)})
    add(db, steady, cooling)
    rule = scoring()
    run(db, rule, T0)
    out = run(db, rule, T0 + timedelta(days=1))
    assert out.evaluated == 1 and [(a.lead_id, a.params["fields"]["score"]) for a in out.actions] == [
        (cooling.id, 39.0)]
    assert run(db, rule, T0 + timedelta(days=1), all_leads=True).actions == []


def test_a_lead_scored_into_mql_keeps_its_status_history(db):
    lead = Lead(last_name="A", status_since=T0, custom={"demo_request_at": True})
    add(db, lead)
    run(db, scoring(mql_threshold=40), T0)
    with db.session() as s:
        import sqlalchemy as sa

        rows = s.exec(sa.select(StatusChange).where(StatusChange.lead_id == lead.id)
                      .order_by(StatusChange.id)).scalars().all()
        assert [(r.to_status, r.by) for r in rows] == [("Lead", "connection:crm"), ("MQL", "rule:scoring")]


def test_no_points_configured_means_the_rule_stays_out_of_the_way(db):
    add(db, Lead(last_name="A", status_since=T0))
    rule = ScoringRule(ScoringConfig(), default_process())
    assert run(db, rule, T0).actions == []


def test_scoring_config_errors():
    bad = {"fit": [{"when": "lead.country = 'DE'", "points": 5}], "bands": {"cold": 1}, "mql_from": ["Lid"]}
    with pytest.raises(ConfigError) as exc:
        build_rules(default_process().model_copy(update={"rules": {"scoring": bad}}), {"scoring": ScoringRule})
    assert "rules.scoring.fit[0].when: invalid CEL expression" in str(exc.value)
    with pytest.raises(ConfigError, match="band 'cold' is the name for scores below every band"):
        build_rules(default_process().model_copy(update={"rules": {"scoring": {"bands": {"cold": 1}}}}),
                    {"scoring": ScoringRule})
    with pytest.raises(ConfigError, match=r"rules.scoring.mql_from\[0\]: unknown status 'Lid'"):
        build_rules(default_process().model_copy(update={"rules": {"scoring": {"mql_from": ["Lid"]}}}),
                    {"scoring": ScoringRule})
    with pytest.raises(ConfigError, match="unknown name 'leed'"):
        build_rules(default_process().model_copy(update={"rules": {"scoring": {
            "fit": [{"when": "leed.country == 'DE'", "points": 5}]}}}), {"scoring": ScoringRule})

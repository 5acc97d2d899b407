"""CEL conditions: compiled at config load, sandboxed, false when a lead cannot answer them."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from pydantic import BaseModel, ValidationError

from hub.conditions import Condition, ConditionError, lead_env
from hub.model import Lead

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


class Config(BaseModel):
    when: Condition


def env(**fields):
    return lead_env(Lead(**fields), NOW)


def test_fields_custom_fields_dates_and_now():
    lead = dict(country="DE", score=12.5, next_action=date(2026, 3, 5), custom={"segment": "SMB"})
    assert Condition('lead.country in ["DE", "AT", "CH"]').test(env(**lead))
    assert Condition('lead.segment == "SMB" && lead.custom.segment == "SMB"').test(env(**lead))
    assert Condition("lead.score > 10").test(env(**lead))
    assert Condition('lead.next_action < now + duration("96h")').test(env(**lead))
    assert not Condition('lead.next_action < now + duration("48h")').test(env(**lead))


def test_what_a_lead_cannot_answer_is_false_and_evaluate_says_why():
    blank = env()
    assert not Condition("lead.score > 10").test(blank)  # null > 10
    assert not Condition('lead.segment == "SMB"').test(blank)  # no such custom field
    assert Condition("!has(lead.segment)").test(blank)
    with pytest.raises(ConditionError, match="lead.score > 10"):
        Condition("lead.score > 10").evaluate(blank)
    assert Condition('lead.email.endsWith("@x.io")').evaluate(env(email="a@x.io")) is True


def test_syntax_errors_and_unknown_names_fail_when_the_config_loads():
    with pytest.raises(ValidationError, match="invalid CEL expression"):
        Config(when="lead.country ==")
    with pytest.raises(ValidationError, match="unknown name 'leed'"):
        Config(when='leed.country == "DE"')
    with pytest.raises(ValidationError, match="non-empty CEL expression"):
        Config(when="  ")
    assert Config(when='[1, 2].exists(t, t > 1) && lead.country == "DE"').when.test(env(country="DE"))


def test_no_python_escapes_the_sandbox():
    for source in ('__import__("os").system("true")', "open('/etc/passwd')", 'lead.email.foo()'):
        with pytest.raises(ValidationError, match="unknown function"):
            Config(when=source)
    assert not Condition("lead.__class__ != null").test(env(country="DE"))  # a missing key, not Python


def test_a_condition_round_trips_through_its_config():
    assert Config(when='lead.country == "DE"').model_dump() == {"when": 'lead.country == "DE"'}
    assert Condition("true") == Condition(" true ") and len({Condition("true"), Condition("true")}) == 1

"""The conflict rules decide per field, at the edges: blanks, ties, a preferred source with no value."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from hub.conflicts import Claim, FieldRule, Resolver

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
T1 = T0 + timedelta(minutes=5)


def decide(rules: dict, current: Claim, incoming: Claim, held: dict | None = None) -> bool:
    return Resolver({k: FieldRule.model_validate(v) for k, v in rules.items()}).decide(
        "phone", current, incoming, lambda c: (held or {}).get(c)).incoming_wins


def test_a_blank_never_overwrites_a_value_whatever_the_rule():
    for rule in ("most_recent", "prefer sales", "source sales"):
        assert not decide({"phone": rule}, Claim("marketing", "+4930111", T0), Claim("sales", "  ", T1))


def test_anyone_fills_a_blank_even_under_source():
    assert decide({"phone": "source sales"}, Claim("hub", None, None), Claim("marketing", "+4930111", T0))


def test_most_recent_wins_and_a_tie_goes_to_the_incoming_edit():
    assert decide({}, Claim("marketing", "a", T0), Claim("sales", "b", T1))
    assert not decide({}, Claim("marketing", "a", T1), Claim("sales", "b", T0))
    assert decide({}, Claim("marketing", "a", T0), Claim("sales", "b", T0))


def test_prefer_keeps_the_preferred_value_unless_it_is_blank_then_most_recent():
    rules = {"phone": "prefer sales"}
    assert decide(rules, Claim("marketing", "a", T1), Claim("sales", "b", T0))  # sales wins though older
    assert not decide(rules, Claim("sales", "a", T0), Claim("marketing", "b", T1))
    assert not decide(rules, Claim("marketing", "a", T0), Claim("marketing", "b", T1), held={"sales": "s"})
    assert decide(rules, Claim("marketing", "a", T0), Claim("marketing", "b", T1), held={"sales": None})


def test_source_of_truth_refuses_every_other_connection():
    rules = {"phone": "source sales"}
    assert not decide(rules, Claim("sales", "a", T0), Claim("marketing", "b", T1))
    assert decide(rules, Claim("marketing", "a", T1), Claim("sales", "b", T0))


def test_rules_are_written_as_short_text_and_bad_ones_are_refused():
    assert FieldRule.model_validate("prefer sales unless blank") == FieldRule(rule="prefer", source="sales")
    assert FieldRule.model_validate("most recent") == FieldRule()
    for bad in ("newest", "prefer", "source a b", {"rule": "most_recent", "source": "sales"}):
        with pytest.raises(ValidationError):
            FieldRule.model_validate(bad)


def test_pick_decides_among_every_crm_for_a_backfill():
    resolver = Resolver({"title": FieldRule.model_validate("source sales")})
    best, reason = resolver.pick("title", [Claim("marketing", "CIO", T1), Claim("sales", "IT Lead", T0)])
    assert best.value == "IT Lead" and "sales is its source of truth" in reason
    best, _ = Resolver().pick("title", [Claim("marketing", None, T1), Claim("sales", "IT Lead", T0)])
    assert best.value == "IT Lead"

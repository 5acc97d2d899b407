"""The canonical model: transitions, required fields, hashing."""

from datetime import date

from hub.model import FINAL_STATUSES, Lead, Status, check_transition, fields_hash, missing_fields


def test_nine_statuses_in_flow_order():
    assert [s.value for s in Status] == ["Lead", "MQL", "SAL", "SQL", "Opportunity", "Negotiation",
                                         "Closed Won", "Closed Lost", "Nurture"]
    assert FINAL_STATUSES == {Status.CLOSED_WON, Status.CLOSED_LOST}


def test_normal_flow_is_allowed():
    lead = Lead(last_name="X", status="Lead")
    for target in ["MQL", "SAL", "SQL", "Opportunity", "Negotiation", "Closed Won"]:
        verdict = check_transition(lead, target)
        assert verdict.allowed, verdict.reason
        lead.status = target


def test_skipping_stages_is_refused_with_a_reason():
    verdict = check_transition(Lead(status="Lead"), "Closed Won")
    assert not verdict.allowed
    assert "Lead → Closed Won" in verdict.reason


def test_sal_rejection_back_to_marketing_needs_a_reason():
    lead = Lead(status="SAL")
    assert not check_transition(lead, "MQL").allowed
    assert "rejection_reason" in check_transition(lead, "MQL").reason
    lead.rejection_reason = "no budget this year"
    assert check_transition(lead, "MQL").allowed


def test_closed_is_final_unless_a_rule_reopens():
    lead = Lead(status="Closed Lost", loss_reason="price")
    assert not check_transition(lead, "Nurture").allowed
    assert check_transition(lead, "Nurture", reopen=True).allowed
    assert not check_transition(lead, "SQL", reopen=True).allowed  # no such reopening transition


def test_nurture_requalifies():
    assert check_transition(Lead(status="Nurture"), "MQL").allowed


def test_missing_required_fields_mark_the_move_incomplete_but_allow_it():
    verdict = check_transition(Lead(status="SQL"), "Opportunity")
    assert verdict.allowed
    assert set(verdict.incomplete) == {"value", "probability", "expected_close"}
    full = Lead(status="SQL", value=1000, probability=0.5, expected_close=date(2027, 1, 1))
    assert check_transition(full, "Opportunity").incomplete == ()


def test_email_or_phone_alternative():
    assert missing_fields(Lead(phone="+49 30 1234"), ("email|phone",)) == []
    assert missing_fields(Lead(), ("email|phone",)) == ["email or phone"]


def test_custom_fields_are_readable_by_name():
    lead = Lead(custom={"industry": "Retail"})
    assert lead.get("industry") == "Retail"
    assert missing_fields(lead, ("industry", "segment")) == ["segment"]


def test_hash_ignores_blanks_and_key_order():
    assert fields_hash({"a": "1", "b": None, "c": ""}) == fields_hash({"a": "1"})
    assert fields_hash({"a": 1, "b": 2}) == fields_hash({"b": 2, "a": 1})
    assert fields_hash({"a": "1"}) != fields_hash({"a": "2"})

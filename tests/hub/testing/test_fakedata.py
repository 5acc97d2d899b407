"""Fake B2B people: deterministic, realistic, messy on purpose, and fast."""

from __future__ import annotations

import re
import time
import unicodedata
from collections import Counter
from datetime import date

import pytest

from hub.model import Lead, Status
from hub.testing import fakedata

VALID_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.I)
CALLING = {"DE": "49", "AT": "43", "CH": "41", "FR": "33", "GB": "44", "US": "1", "NL": "31", "PL": "48",
           "ES": "34", "IT": "39", "SE": "46"}


@pytest.fixture(scope="module")
def crowd() -> fakedata.Crowd:
    return fakedata.generate(20_000, seed=3)


def digits(phone: str, country: str) -> str:
    """A phone number reduced to its national significant digits, whatever its format."""
    d = re.sub(r"\D", "", phone)
    if phone.startswith("+"):
        return d[len(CALLING[country]):]
    return d[1:] if country not in ("US", "PL", "ES", "IT") else d


def fold(text: str) -> str:
    text = text.replace("ß", "ss").replace("ł", "l").replace("Ł", "L")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()


def test_same_seed_same_people_and_another_seed_others():
    assert fakedata.people(500, seed=5) == fakedata.people(500, seed=5)
    assert fakedata.people(500, seed=5) != fakedata.people(500, seed=6)
    assert fakedata.team(5) == fakedata.team(5)


def test_every_person_has_every_canonical_key_and_fits_the_lead_model(crowd):
    for person in crowd.people[:2000]:
        assert tuple(person) == fakedata.KEYS
        custom = {k: person[k] for k in ("industry", "company_size")}
        lead = Lead(**{k: v for k, v in person.items() if k not in custom}, custom=custom)
        assert lead.status in {s.value for s in Status}


def test_statuses_follow_a_funnel(crowd):
    n = len(crowd.people)
    share = {k: v / n for k, v in Counter(p["status"] for p in crowd.people).items()}
    assert set(share) == set(fakedata.STATUSES) == {s.value for s in Status}
    assert share["Lead"] > share["MQL"] > share["SAL"] and share["SQL"] > share["Negotiation"]
    assert 0.25 < share["Lead"] < 0.35 and 0.03 < share["Closed Won"] < 0.07
    assert share["Closed Lost"] > share["Closed Won"]


def test_later_stages_carry_value_probability_close_date_and_losses_a_reason(crowd):
    for p in crowd.people:
        late = p["status"] in ("Opportunity", "Negotiation", "Closed Won", "Closed Lost")
        assert (p["value"] is not None) == late
        assert (p["expected_close"] is not None) == late
        assert (p["loss_reason"] is not None) == (p["status"] == "Closed Lost")
        if late:
            assert 1_000 <= p["value"] <= 500_000 and 0.0 <= p["probability"] <= 1.0
            assert isinstance(p["expected_close"], date)
        if p["status"] in ("Opportunity", "Negotiation"):
            assert p["expected_close"] > fakedata.REFERENCE_DATE and 0 < p["probability"] < 1
        if p["status"] == "Closed Won":
            assert p["probability"] == 1.0 and p["expected_close"] < fakedata.REFERENCE_DATE


def test_owners_come_from_the_team_and_fresh_leads_may_have_none(crowd):
    members = fakedata.team(3)
    assert {m["role"] for m in members} == {"marketing", "sdr", "rep", "manager"}
    assert all(set(m) >= {"name", "email", "role", "country"} for m in members)
    assert len({m["email"] for m in members}) == len(members)
    emails = {m["email"] for m in members}
    owners = Counter(p["owner"] for p in crowd.people)
    assert set(owners) - {None} <= emails
    assert all(p["owner"] for p in crowd.people if p["status"] not in ("Lead",))
    assert 0.05 < owners[None] / len(crowd.people) < 0.2


def test_about_three_percent_are_recognisable_duplicates(crowd):
    people, dups = crowd.people, crowd.duplicates
    assert 0.02 < len(dups) / len(people) < 0.04
    changed = Counter()
    for i, j in dups.items():
        dup, orig = people[i], people[j]
        assert j < i and j not in dups
        assert (dup["company"], dup["domain"], dup["country"]) == (orig["company"], orig["domain"], orig["country"])
        assert fold(dup["first_name"]) == fold(orig["first_name"]) and fold(dup["last_name"]) == fold(orig["last_name"])
        if orig["email"] and dup["email"] != orig["email"]:
            same = dup["email"].lower() == orig["email"].lower()
            plus = re.sub(r"\+[a-z]+@", "@", dup["email"]) == orig["email"]
            assert same or plus
            changed["email case" if same else "plus address"] += 1
        if orig["phone"] and dup["phone"] != orig["phone"]:
            assert digits(dup["phone"], dup["country"]) == digits(orig["phone"], orig["country"])
            changed["phone format"] += 1
        if (dup["first_name"], dup["last_name"]) != (orig["first_name"], orig["last_name"]):
            changed["name spelling"] += 1
    assert min(changed.values()) > 20 and len(changed) == 4, changed


def test_missing_phones_companies_and_emails_and_a_few_malformed_emails(crowd):
    people = [p for i, p in enumerate(crowd.people) if i not in crowd.duplicates]
    n = len(people)
    no_phone = sum(p["phone"] is None for p in people)
    no_company = sum(p["company"] is None for p in people)
    no_email = [p for p in people if p["email"] is None]
    malformed = [p["email"] for p in people if p["email"] and not VALID_EMAIL.match(p["email"])]
    assert 0.04 < (no_phone + no_company) / n < 0.07
    assert 0.01 < len(no_email) / n < 0.03 and all(p["phone"] for p in no_email)
    assert 0.003 < len(malformed) / n < 0.008
    assert all(e.endswith("@") or "@" not in e or "." not in e.split("@")[1] for e in malformed)


def test_emails_are_unique_except_for_duplicates(crowd):
    emails = [p["email"].lower() for i, p in enumerate(crowd.people)
              if i not in crowd.duplicates and p["email"] and VALID_EMAIL.match(p["email"])]
    assert len(emails) == len(set(emails))


def test_names_and_phones_fit_the_country(crowd):
    seen = Counter()
    for p in crowd.people:
        country = p["country"]
        seen[country] += 1
        if p["phone"]:
            phone = p["phone"]
            assert phone.startswith(f"+{CALLING[country]}") or not phone.startswith("+")
            assert 9 <= len(re.sub(r"\D", "", phone)) <= 13
            if country == "US" and not phone.startswith("+"):
                assert re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", phone)
        if p["email"] and VALID_EMAIL.match(p["email"]):
            assert p["email"].split("@")[1].lower() == p["domain"]
    assert set(seen) == set(CALLING)
    de = [p for p in crowd.people if p["country"] == "DE"]
    assert any(any(c in p["last_name"] for c in "äöüß") for p in de)  # accents where the country has them
    assert not any(any(c in p["last_name"] for c in "äöüéñ") for p in crowd.people if p["country"] in ("GB", "US"))


def test_a_hundred_thousand_people_in_about_two_seconds():
    start = time.perf_counter()
    people = fakedata.people(100_000, seed=1)
    elapsed = time.perf_counter() - start
    assert len(people) == 100_000
    assert elapsed < 4.0, f"took {elapsed:.1f}s"  # ~1 s on a laptop; generous for slow CI machines

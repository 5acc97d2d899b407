"""Deduplication at the edges: normalisation, blocking, scoring, clusters, survivorship, the store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from hub.actions import LeadRelation
from hub.engine import Engine
from hub.model import Lead
from hub.normalise import company_domain, company_key, fold, normalise_email, normalise_phone
from hub.process import default_process
from hub.store import LeadRow, Link, row_values
from hub.testing.fakedata import generate
from rules.dedup import Dedup, DedupSettings, EmailPolicy, dedupe, identity, score
from rules.dedup.blocking import BlockStats, blocking_keys, candidate_pairs
from rules.dedup.cluster import Member, cluster, survive
from rules.dedup.incremental import find_matches, index_lead, request_crm_merges
from rules.dedup.scoring import Score
from rules.dedup.tables import DedupKey, MergeRequest

NOW = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)


def _p(a: dict, b: dict, settings: DedupSettings | None = None) -> float:
    settings = settings or DedupSettings()
    return score(settings.identity(a), settings.identity(b), settings.weights).probability


# -- normalisation ---------------------------------------------------------------------------
def test_email_case_whitespace_and_plus_addressing_where_configured():
    assert normalise_email("  Anna.Weber+Events@Acme.DE ") == "anna.weber@acme.de"
    assert normalise_email("anna.weber+events@acme.de", EmailPolicy(plus_addressing=False)) == \
        "anna.weber+events@acme.de"
    only_gmail = EmailPolicy(plus_addressing=frozenset({"gmail.com"}))
    assert normalise_email("a+x@acme.de", only_gmail) == "a+x@acme.de"
    assert normalise_email("A.Nna+x@GoogleMail.com", only_gmail) == "anna@gmail.com"
    assert normalise_email("jan.kowalski@") is None and normalise_email("jan.kowalski.acme.pl") is None


def test_phone_to_e164_reads_national_numbers_in_the_leads_country():
    assert normalise_phone("030 1234567", "DE") == normalise_phone("+49 30 1234567", "FR") == "+49301234567"
    assert normalise_phone("0049 30 1234567", None) == "+49301234567"
    assert normalise_phone("(212) 555-1234", "US") == "+12125551234"
    assert normalise_phone("12", "DE") is None and normalise_phone("n/a", "DE") is None


def test_company_domain_is_public_suffix_aware_and_works_offline():
    assert company_domain(website="https://mail.example.co.uk/contact") == "example.co.uk"
    assert company_domain("jane@mail.example.co.uk") == company_domain(website="example.co.uk") == "example.co.uk"
    assert company_domain("x@sales.acme.com.au") == "acme.com.au"
    assert company_domain(website="co.uk") is None
    assert company_domain("ops@northwind-sales.example") == "northwind-sales.example"  # unlisted TLD


@pytest.mark.parametrize("email", ["anna@gmail.com", "anna@googlemail.com", "anna@yahoo.co.uk", "a@hotmail.fr",
                                   "a@web.de", "a@gmx.ch", "a@outlook.com"])
def test_free_mail_domains_are_never_company_keys(email):
    assert company_domain(email) is None
    assert not any(k.startswith(("dl:", "df:")) for k in blocking_keys(identity({"email": email,
                                                                                  "first_name": "Anna",
                                                                                  "last_name": "Weber"})))


def test_free_mail_website_falls_back_to_the_email_domain():
    assert company_domain("anna@acme.de", website="gmail.com") == "acme.de"


def test_names_fold_accents_case_and_punctuation():
    assert fold("  Jürgen-Müller ") == "jurgen muller"
    assert fold("Łukasz Wiśniewski") == "lukasz wisniewski"
    assert fold("Groß") == "gross"
    assert company_key("Nordwind GmbH & Co. KG") == "nordwind" == company_key("NORDWIND gmbh")


# -- scoring: what merges and what must not --------------------------------------------------
BASE = {"first_name": "Jürgen", "last_name": "Müller", "email": "j.mueller@nordwind.de", "phone": "+49 30 1234567",
        "company": "Nordwind GmbH", "domain": "nordwind.de", "country": "DE"}


def test_duplicates_differing_only_by_accents_are_the_same_person():
    assert _p(BASE, {**BASE, "first_name": "Jurgen", "last_name": "Muller"}) >= 0.99


def test_duplicates_differing_only_by_phone_format_are_the_same_person():
    a, b = {**BASE, "email": None}, {**BASE, "email": None, "phone": "030 1234567"}
    assert _p(a, b) >= 0.99


def test_plus_addressing_on_matches_and_off_does_not():
    a = {**BASE, "phone": None}
    b = {**BASE, "phone": None, "email": "j.mueller+events@nordwind.de"}
    assert _p(a, b) >= 0.99
    assert _p(a, b, DedupSettings(email=EmailPolicy(plus_addressing=False))) < 0.8


def test_same_name_different_company_and_email_must_not_merge():
    other = {**BASE, "email": "jurgen.muller@polarforge.ch", "company": "Polarforge AG", "domain": "polarforge.ch",
             "phone": "+41 44 555 12 12"}
    assert _p(BASE, other) < 0.5


def test_colleagues_sharing_a_name_at_one_company_are_two_people():
    colleague = {**BASE, "email": "j.mueller2@nordwind.de", "phone": "+49 30 7654321"}
    assert _p(BASE, colleague) < 0.5


def test_same_name_and_company_name_with_nothing_else_is_a_review_not_a_merge():
    bare = {**BASE, "email": None, "phone": None, "domain": None}
    assert 0.8 <= _p({**BASE, "domain": None, "email": None}, bare) < 0.99


def test_a_work_and_a_personal_address_of_one_person_at_one_company_merge():
    assert _p({**BASE, "phone": None}, {**BASE, "phone": None, "email": "jurgen.muller@gmail.com"}) >= 0.99


def test_a_typo_in_one_name_at_the_same_company_still_merges():
    assert _p(BASE, {**BASE, "first_name": "Jürgne", "email": None, "phone": None}) >= 0.99
    assert _p(BASE, {**BASE, "last_name": "Mülelr", "email": "jm@gmail.com", "phone": None}) >= 0.99


def test_a_score_explains_itself_in_one_line():
    s = DedupSettings()
    result = score(s.identity(BASE), s.identity({**BASE, "phone": None}), s.weights)
    line = result.explain()
    assert "\n" not in line and "email exact" in line and "phone absent" in line


# -- blocking --------------------------------------------------------------------------------
def test_blocking_grows_near_linearly_with_the_number_of_leads():
    settings = DedupSettings()
    per_lead = []
    for n in (1000, 4000):
        people = [settings.identity(p) for p in generate(n, seed=3).people]
        stats = BlockStats()
        pairs = sum(1 for _ in candidate_pairs(people, stats=stats))
        per_lead.append(pairs / n)
    assert per_lead[1] < per_lead[0] * 1.5  # quadratic growth would quadruple it


def test_a_block_larger_than_max_block_is_skipped_and_counted():
    settings = DedupSettings()
    shared = [settings.identity({"id": str(i), "first_name": f"N{i}", "last_name": "Switch",
                                 "phone": "+49 30 1234567", "country": "DE"}) for i in range(6)]
    stats = BlockStats()
    pairs = list(candidate_pairs(shared, max_block=5, stats=stats))
    assert stats.skipped_blocks >= 1 and stats.skipped_leads >= 6
    assert all(i < j for i, j in pairs)


def _pairs(groups) -> set[tuple[int, int]]:
    out = set()
    for group in groups:
        ids = sorted(int(x) for x in group)
        out |= {(a, b) for k, a in enumerate(ids) for b in ids[k + 1:]}
    return out


def test_batch_dedupe_finds_exactly_the_planted_duplicates_of_fakedata():
    crowd = generate(3000, seed=7)
    result = dedupe([dict(p, id=str(i)) for i, p in enumerate(crowd.people)])
    groups: dict[int, list[int]] = {}
    for dup, original in crowd.duplicates.items():
        groups.setdefault(original, [original]).append(dup)
    assert _pairs(c.lead_ids for c in result.clustering.clusters) == _pairs(groups.values())


# -- clusters and survivorship ---------------------------------------------------------------
def test_cluster_confidence_is_the_weakest_link_and_near_misses_go_to_review():
    pairs = [Score("a", "b", 20.0), Score("b", "c", 8.0), Score("d", "e", 4.0), Score("x", "y", -3.0)]
    out = cluster(pairs, link=0.99, review=0.8)
    assert [c.lead_ids for c in out.clusters] == [("a", "b", "c")]
    assert out.clusters[0].confidence == pytest.approx(Score("b", "c", 8.0).probability)
    assert [(s.a, s.b) for s in out.review] == [("d", "e")]


def test_a_bare_record_never_chains_two_colleagues_into_one_person():
    pairs = [Score("bare", "anna1", 7.0), Score("bare", "anna2", 7.0)]
    out = cluster(pairs, conflicts={("anna1", "anna2")})
    assert [c.lead_ids for c in out.clusters] == [("anna1", "bare")]
    assert [(s.a, s.b) for s in out.review] == [("bare", "anna2")]


def test_survivorship_takes_the_source_of_truth_then_the_most_recent_non_blank_value():
    old, new = NOW - timedelta(days=30), NOW
    a = Member("a", {"title": "CTO", "phone": "+4930111", "company": "Acme", "status": "Opportunity",
                     "owner": "rep@x.example", "custom": {"industry": "Software"}}, old, old, frozenset({"salesforce"}))
    b = Member("b", {"title": "Chief Technology Officer", "phone": None, "company": "Acme GmbH", "status": "Lead",
                     "owner": "mkt@x.example", "custom": {"industry": "", "seats": 40}}, new, new,
               frozenset({"hubspot"}))
    survivor, fields, origin = survive([a, b], source_of_truth={"company": ("salesforce",)},
                                       funnel=("Lead", "MQL", "Opportunity"))
    assert survivor == "a"  # the oldest: its hub id is the one the CRMs carry
    assert fields["title"] == "Chief Technology Officer" and origin["title"] == "b"  # most recent
    assert fields["phone"] == "+4930111"  # the newer one is blank
    assert fields["company"] == "Acme"  # salesforce is the source of truth for company
    assert fields["custom"] == {"industry": "Software", "seats": 40}
    assert (fields["status"], fields["owner"]) == ("Opportunity", "rep@x.example")  # never back to Lead


# -- the store: incremental matching ---------------------------------------------------------
def _add(s, lead: Lead, at: datetime = NOW) -> None:
    s.add(LeadRow(**row_values(lead), created_at=at, updated_at=at))
    s.flush()


def test_new_leads_are_matched_through_the_key_index_not_a_scan(store):
    settings = DedupSettings()
    old = Lead(first_name="Jürgen", last_name="Müller", email="j.mueller@nordwind.de", country="DE")
    unrelated = Lead(first_name="Anna", last_name="Weber", email="anna@polar.ch", country="CH")
    with store.session() as s:
        for lead in (old, unrelated):
            _add(s, lead)
            index_lead(s, lead.id, settings.identity(lead))
        new = Lead(first_name="Jurgen", last_name="Muller", email="J.Mueller+web@Nordwind.de", country="DE")
        _add(s, new)
        _, matches = find_matches(s, new, settings)
        assert [m[0].id for m in matches] == [old.id] and matches[0][1].probability >= 0.99
        index_lead(s, new.id, settings.identity(new))
        keys = s.execute(sa.select(DedupKey.key).where(DedupKey.lead_id == new.id)).scalars().all()
    assert "e:j.mueller@nordwind.de" in keys


def test_merge_requests_name_both_records_per_connection(sqlite_store):
    a, b = Lead(last_name="A"), Lead(last_name="B")
    with sqlite_store.session() as s:
        _add(s, a)
        _add(s, b)
        s.add_all([Link(lead_id=a.id, connection="sf", object="Lead", remote_id="00Q1"),
                   Link(lead_id=b.id, connection="sf", object="Lead", remote_id="00Q2"),
                   Link(lead_id=b.id, connection="hs", object="contacts", remote_id="77")])
        s.flush()
        reqs = request_crm_merges(s, survivor_id=a.id, merged_id=b.id, confidence=0.999, at=NOW)
    got = sorted((r.connection, r.survivor_remote_id, r.merged_remote_id) for r in reqs)
    assert got == [("hs", None, "77"), ("sf", "00Q1", "00Q2")]


def test_the_rule_merges_a_sure_duplicate_and_queues_a_review_for_a_maybe(store):
    process = default_process()
    first = Lead(first_name="Jürgen", last_name="Müller", email="j.mueller@nordwind.de", phone="+49 30 1234567",
                 company="Nordwind GmbH", country="DE", source="event")
    with store.session() as s:
        _add(s, first, NOW - timedelta(days=3))
        s.add(Link(lead_id=first.id, connection="hs", object="contacts", remote_id="1"))
    engine = Engine(store, process, [Dedup(Dedup.Config(), process)])
    engine.run(NOW - timedelta(days=3))
    dup = Lead(first_name="Jurgen", last_name="Muller", email="J.MUELLER@nordwind.de", phone="030 1234567",
               company="Nordwind", country="DE", title="CTO")
    maybe = Lead(first_name="Jürgen", last_name="Müller", company="Nordwind GmbH", country="DE")
    with store.session() as s:
        _add(s, dup)
        _add(s, maybe)
        s.add(Link(lead_id=dup.id, connection="sf", object="Lead", remote_id="00Q9"))
    out = engine.run(NOW, keep_actions=True)
    assert out.errors == []
    kinds = {(a.lead_id, a.kind) for a in out.actions}
    assert (dup.id, "merge") in kinds and (maybe.id, "link") in kinds and (maybe.id, "flag") in kinds
    with store.session() as s:
        links = {(ln.connection, ln.lead_id) for ln in s.execute(sa.select(Link)).scalars()}
        assert links == {("hs", first.id), ("sf", first.id)}  # the survivor keeps the links of both
        rel = s.execute(sa.select(LeadRelation.relation).where(LeadRelation.lead_id == dup.id)).scalars().all()
        assert rel == ["merged_into"]
        reqs = s.execute(sa.select(MergeRequest)).scalars().all()
        assert [(r.connection, r.merged_remote_id, r.state) for r in reqs] == [("sf", "00Q9", "requested")]
        assert s.get(LeadRow, first.id).title == "CTO"  # a blank on the survivor filled from the duplicate
        assert not s.execute(sa.select(DedupKey).where(DedupKey.lead_id == dup.id)).first()


def test_survivorship_takes_each_field_from_its_source_of_truth_on_merge(store):
    process = default_process()
    first = Lead(first_name="Jürgen", last_name="Müller", email="j.mueller@nordwind.de", phone="+49 30 1234567",
                 company="Nordwind GmbH", country="DE", source="event")
    with store.session() as s:
        _add(s, first, NOW - timedelta(days=3))
        s.add(Link(lead_id=first.id, connection="hs", object="contacts", remote_id="1"))
    rule = Dedup(Dedup.Config(source_of_truth={"company": ["sf"]}), process)
    engine = Engine(store, process, [rule])
    engine.run(NOW - timedelta(days=3))
    dup = Lead(first_name="Jurgen", last_name="Muller", email="J.MUELLER@nordwind.de", phone="030 1234567",
               company="Nordwind Logistik", country="DE")
    with store.session() as s:
        _add(s, dup)
        s.add(Link(lead_id=dup.id, connection="sf", object="Lead", remote_id="00Q9"))
    out = engine.run(NOW, keep_actions=True)
    assert out.errors == [] and any(a.kind == "merge" for a in out.actions)
    with store.session() as s:
        # sales (sf) is the source of truth for the company: its value wins over the survivor's own
        assert s.get(LeadRow, first.id).company == "Nordwind Logistik"

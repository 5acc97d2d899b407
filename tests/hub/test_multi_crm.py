"""Issue 4 end to end: HubSpot (marketing), Salesforce (sales) and monday.com (delivery) in one hub.

Every sandbox is served on loopback and the hub is built from a config file, as an install would be.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlmodel import Session

from connectors.hubspot.sandbox import HubSpotSandbox
from connectors.monday.sandbox import MondaySandbox
from connectors.salesforce.sandbox import SalesforceSandbox
from hub.runtime import Hub
from hub.store import Conflict, LeadRow, Link, StatusChange
from hub.testing.fakedata import team

SALES = ["MQL", "SAL", "SQL", "Opportunity", "Negotiation", "Closed Won", "Closed Lost"]


@dataclass
class Three:
    hub: Hub
    hs: HubSpotSandbox
    sf: SalesforceSandbox
    mon: MondaySandbox

    def cycle(self, **kw):
        outs = self.hub.sync(**kw)
        assert all(o.error is None for o in outs), [o.error for o in outs]
        return {o.connection: o for o in outs}

    def lead(self, lead_id: str) -> LeadRow:
        with Session(self.hub.store.engine) as s:
            return s.get(LeadRow, lead_id)

    def sf_lead(self, lead_id: str) -> tuple[str, dict]:
        found = [(k, v) for k, v in self.sf.leads.items() if v.get("LeadHub_Id__c") == lead_id]
        assert len(found) == 1, f"{len(found)} Salesforce leads carry hub id {lead_id}"
        return found[0]


@pytest.fixture
def three(tmp_path: Path) -> Iterator[Three]:
    hs, sf, mon = HubSpotSandbox(rate=None, search_rate=None), SalesforceSandbox(rate=None), MondaySandbox()
    with hs.serve() as h, sf.serve() as f, mon.serve() as m:
        delivery = {**mon.connector_settings(m.url), "board_id": str(mon.delivery_board_id)}
        config = {
            "database": f"sqlite:///{tmp_path / 'hub.db'}",
            "conflict_rules": {"*": "most_recent", "phone": "prefer sales"},
            "connections": {
                "marketing": {"connector": "hubspot", "role": "marketing", **hs.connector_settings(h.url),
                              "statuses": ["Lead", "MQL", "SAL", "SQL", "Opportunity", "Negotiation",
                                           "Closed Won", "Closed Lost", "Nurture"]},
                "sales": {"connector": "salesforce", "role": "sales", **sf.connector_settings(f.url),
                          "statuses": SALES},
                "delivery": {"connector": "monday_delivery", "role": "delivery", "direction": "write",
                             "statuses": ["Closed Won"], **delivery},
            },
        }
        path = tmp_path / "leadhub.yaml"
        path.write_text(yaml.safe_dump(config))
        with Hub.from_file(path) as hub:
            yield Three(hub, hs, sf, mon)


def _history(three: Three, lead_id: str) -> list[tuple[str | None, str, str | None]]:
    with Session(three.hub.store.engine) as s:
        rows = s.execute(sa.select(StatusChange.from_status, StatusChange.to_status, StatusChange.connection)
                         .where(StatusChange.lead_id == lead_id).order_by(StatusChange.id)).all()
    return [tuple(r) for r in rows]


def _hub_id(three: Three, contact_id: str) -> str:
    with Session(three.hub.store.engine) as s:
        return s.execute(sa.select(Link.lead_id).where(Link.connection == "marketing",
                                                       Link.remote_id == contact_id)).scalar_one()


def test_a_lead_goes_from_marketing_to_sales_to_delivery_with_its_whole_history(three):
    owner = team(0)[1]["email"]
    cid = three.hs.remote_create({"first_name": "Greta", "last_name": "Lind", "email": "greta@nordwind.example",
                                  "company": "Nordwind GmbH", "country": "DE", "status": "Lead", "owner": owner})
    first = three.cycle()
    lead_id = _hub_id(three, cid)
    assert first["marketing"].created == 1 and three.lead(lead_id).status == "Lead"
    assert not three.sf.leads, "a Lead is marketing's: it is not handed to sales yet"

    three.hs.remote_update(cid, {"status": "MQL"})  # marketing qualifies it
    out = three.cycle()
    assert three.lead(lead_id).status == "MQL"
    assert (out["sales"].handed_off, out["sales"].created_remote) == (1, 1)
    sf_id, rec = three.sf_lead(lead_id)  # handed off once, with its owner and context
    assert (rec["Status"], rec["LastName"], rec["Company"]) == ("Marketing Qualified", "Lind", "Nordwind GmbH")
    assert rec["OwnerId"] == three.sf.user_ids[owner]

    three.sf.update_lead(sf_id, {"Status": "Working - Contacted"})  # sales accepts it
    three.cycle()
    three.sf.update_lead(sf_id, {"Status": "Sales Qualified"})
    three.cycle()
    assert three.hs.remote_get(cid)["status"] == "SQL"
    opp = three.sf.convert_lead(sf_id, stage="Qualification",
                                deal={"Amount": 48000, "CloseDate": "2027-01-31", "Probability": 40})
    three.cycle()
    assert three.lead(lead_id).status == "Opportunity"
    three.sf.update_opportunity(opp, {"StageName": "Closed Won"})  # won in Salesforce
    out = three.cycle()

    assert three.lead(lead_id).status == "Closed Won"
    assert _history(three, lead_id) == [(None, "Lead", "marketing"), ("Lead", "MQL", "marketing"),
                                        ("MQL", "SAL", "sales"), ("SAL", "SQL", "sales"),
                                        ("SQL", "Opportunity", "sales"), ("Opportunity", "Closed Won", "sales")]
    kickoff = [i for i in three.mon.items(three.mon.delivery_board_id) if i.get("LeadHub ID") == lead_id]
    assert len(kickoff) == 1 and kickoff[0]["Status"] == "Kickoff" and kickoff[0]["name"] == "Nordwind GmbH"
    assert out["delivery"].created_remote == 1
    hs = three.hs.remote_get(cid)
    assert hs["status"] == "Closed Won" and three.hs.contacts[cid]["lifecyclestage"] == "customer"

    quiet = three.cycle()  # nothing changed outside: nothing is written anywhere
    assert {n: (o.pushed, o.created, o.updated) for n, o in quiet.items()} == \
        {n: (0, 0, 0) for n in quiet}
    assert len(three.mon.items(three.mon.delivery_board_id)) == 1 and len(three.sf.leads) == 1


def test_a_person_in_two_crms_is_one_lead_matched_by_email_and_stamped_in_both(three):
    cid = three.hs.remote_create({"first_name": "Ana", "last_name": "Ruiz", "email": "Ana.Ruiz@Acme.example ",
                                  "company": "Acme", "status": "MQL"})
    sf_id = three.sf.add_lead({"FirstName": "Ana", "LastName": "Ruiz", "Email": "ana.ruiz@acme.example",
                               "Company": "Acme SL", "Status": "Working - Contacted", "Title": "CTO"})
    out = three.cycle()
    with Session(three.hub.store.engine) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(LeadRow)).scalar_one() == 1
    assert out["sales"].matched == 1 and out["sales"].handed_off == 0  # matched, not created again
    lead_id = _hub_id(three, cid)
    assert three.sf.leads[sf_id]["LeadHub_Id__c"] == lead_id == three.hs.remote_get(cid)["hub_id"]
    lead = three.lead(lead_id)
    assert (lead.status, lead.title) == ("SAL", "CTO")  # MQL -> SAL is an allowed move
    assert three.hs.remote_get(cid)["title"] == "CTO" and three.hs.remote_get(cid)["status"] == "SAL"
    quiet = three.cycle()
    assert all(o.pushed == 0 for o in quiet.values())


def test_edits_in_two_crms_resolve_by_rule_and_the_dry_run_predicts_the_writes(three):
    cid = three.hs.remote_create({"first_name": "Jon", "last_name": "Berg", "email": "jon@fjord.example",
                                  "company": "Fjord AS", "status": "MQL", "phone": "+47 22 00 00 00"})
    three.cycle()
    lead_id = _hub_id(three, cid)
    sf_id, _ = three.sf_lead(lead_id)
    three.cycle()
    # between two cycles: both CRMs change phone and title, Salesforce first, HubSpot a moment later
    three.sf.update_lead(sf_id, {"Phone": "+47 22 11 11 11", "Title": "CFO"})
    time.sleep(0.05)
    three.hs.remote_update(cid, {"phone": "+47 22 99 99 99", "title": "Finance Director"})

    plans, _ = three.hub.plan()
    predicted = {(p.connection, p.action, p.lead_id): p for p in plans}
    assert set(predicted) == {("marketing", "update", lead_id), ("sales", "update", lead_id)}
    assert predicted["marketing", "update", lead_id].changes == {"phone": ["+47 22 99 99 99", "+47 22 11 11 11"]}
    assert "prefer sales" in predicted["marketing", "update", lead_id].reasons["phone"]
    assert predicted["sales", "update", lead_id].changes == {"title": ["CFO", "Finance Director"]}
    assert "most recent" in predicted["sales", "update", lead_id].reasons["title"]
    assert three.sf.leads[sf_id]["Title"] == "CFO", "the dry run wrote nothing"

    written: list = []
    three.cycle(record=written)
    assert sorted((w.connection, w.action, w.lead_id, w.changes.__repr__()) for w in written) == \
        sorted((p.connection, p.action, p.lead_id, p.changes.__repr__()) for p in plans)
    lead = three.lead(lead_id)
    assert (lead.phone, lead.title) == ("+47 22 11 11 11", "Finance Director")
    assert three.hs.remote_get(cid)["phone"] == "+47 22 11 11 11"
    assert three.sf.leads[sf_id]["Title"] == "Finance Director"
    with Session(three.hub.store.engine) as s:
        kept = s.execute(sa.select(Conflict.field, Conflict.connection).where(Conflict.resolved_at.is_not(None))
                         ).all()
    assert sorted(map(tuple, kept)) == [("phone", "marketing"), ("title", "sales")]
    assert all(o.pushed == 0 for o in three.cycle().values())


def test_an_illegal_status_move_in_one_crm_is_kept_as_a_conflict_not_applied(three):
    cid = three.hs.remote_create({"first_name": "Li", "last_name": "Wei", "email": "li@wei.example",
                                  "company": "Wei Ltd", "status": "MQL"})
    three.cycle()
    lead_id = _hub_id(three, cid)
    sf_id, _ = three.sf_lead(lead_id)
    three.sf.update_lead(sf_id, {"Status": "Closed - Converted"})  # MQL -> Closed Won skips the process
    out = three.cycle()
    assert out["sales"].conflicts == 1 and three.lead(lead_id).status == "MQL"
    assert not [i for i in three.mon.items(three.mon.delivery_board_id) if i.get("LeadHub ID") == lead_id]


def test_a_record_deleted_in_a_crm_is_never_created_again(three):
    cid = three.hs.remote_create({"first_name": "Eva", "last_name": "Holm", "email": "eva@holm.example",
                                  "company": "Holm AB", "status": "MQL"})
    three.cycle()
    lead_id = _hub_id(three, cid)
    sf_id, _ = three.sf_lead(lead_id)
    three.sf.delete_lead(sf_id)
    three.hs.remote_update(cid, {"title": "Buyer"})  # a change that would flow to sales
    three.cycle()
    three.cycle()
    assert not [v for v in three.sf.leads.values() if v.get("LeadHub_Id__c") == lead_id]
    with Session(three.hub.store.engine) as s:
        link = s.execute(sa.select(Link).where(Link.connection == "sales", Link.lead_id == lead_id)).scalar_one()
    assert link.deleted_at is not None


def test_backfill_applies_a_changed_rule_to_leads_the_crms_disagree_on(three):
    cid = three.hs.remote_create({"first_name": "Ida", "last_name": "Sand", "email": "ida@sand.example",
                                  "company": "Sand Oy", "status": "MQL", "title": "Head of IT"})
    three.cycle()
    lead_id = _hub_id(three, cid)
    sf_id, _ = three.sf_lead(lead_id)
    three.sf.update_lead(sf_id, {"Title": "IT Lead"})
    time.sleep(0.05)
    three.hs.remote_update(cid, {"title": "CIO"})
    three.cycle(push=False)  # decided (most recent: HubSpot), not yet written: the CRMs disagree
    assert three.lead(lead_id).title == "CIO"
    from hub.conflicts import FieldRule

    three.hub.config.conflict_rules["title"] = FieldRule.model_validate("source sales")  # the admin's new rule
    plan = three.hub.backfill(["title"], dry_run=True)
    assert (plan.changed, plan.queued) == (1, 1) and three.lead(lead_id).title == "CIO"
    report = three.hub.backfill(["title"])
    assert (report.changed, report.queued) == (1, 1)
    assert [r.split(",")[0] for r in report.reasons] == ["title: sales is its source of truth"]
    assert three.lead(lead_id).title == "IT Lead"
    out = three.cycle()
    assert three.hs.remote_get(cid)["title"] == "IT Lead" and three.sf.leads[sf_id]["Title"] == "IT Lead"
    assert out["sales"].pushed == 0, "sales already holds the winning value: nothing is sent there"


def test_a_merge_in_hubspot_makes_two_leads_one_and_the_link_follows_the_merged_contact(three):
    a = three.hs.remote_create({"first_name": "Ada", "last_name": "Lovelace", "email": "ada@engines.example",
                                "company": "Engines", "status": "Lead"})
    b = three.hs.remote_create({"first_name": "Augusta", "last_name": "Lovelace", "company": "Engines",
                                "email": "a.lovelace@engines.example", "phone": "+44 20 7946 0000",
                                "status": "Lead"})
    three.cycle()
    three.cycle()  # the stamps come back
    la, lb = _hub_id(three, a), _hub_id(three, b)
    assert la != lb
    merged = three.hs.merge_contacts(a, b)  # a HubSpot user merges them: a new contact, both old ids point to it
    out = three.cycle()
    assert out["marketing"].deleted == 2 and out["marketing"].created == 0
    from hub.actions import LeadRelation

    with Session(three.hub.store.engine) as s:
        links = {ln.remote_id: ln for ln in s.execute(sa.select(Link).where(Link.connection == "marketing"))
                 .scalars()}
        relations = s.execute(sa.select(LeadRelation.lead_id, LeadRelation.other_id, LeadRelation.relation)).all()
    assert links[merged].lead_id == la and links[merged].deleted_at is None  # remapped, not duplicated
    assert links[b].deleted_at is not None and links[b].merged_into == merged
    assert [tuple(r) for r in relations] == [(lb, la, "merged_into")]
    assert three.lead(la).phone == "+44 20 7946 0000"  # the survivor fills its blanks from the merged lead
    quiet = three.cycle()
    assert all((o.pushed, o.created, o.handed_off) == (0, 0, 0) for o in quiet.values())
    assert list(three.hs.contacts) == [merged]


def test_after_a_crm_merge_the_crms_the_survivor_took_over_get_its_values(three):
    a = three.hs.remote_create({"first_name": "Ada", "last_name": "Lovelace", "email": "ada@engines.example",
                                "company": "Engines", "status": "MQL", "title": "CTO"})
    b = three.hs.remote_create({"first_name": "Augusta", "last_name": "Lovelace", "company": "Engines Ltd",
                                "email": "a.lovelace@engines.example", "status": "MQL"})
    three.cycle()
    three.cycle()
    la, lb = _hub_id(three, a), _hub_id(three, b)
    sf_a, _ = three.sf_lead(la)
    sf_b, _ = three.sf_lead(lb)  # both were handed to sales
    three.sf.delete_lead(sf_a)  # sales cleans up one of them itself
    three.cycle()
    three.hs.merge_contacts(a, b)  # marketing merges the two people in HubSpot
    three.cycle()  # lead b becomes part of lead a, which takes over b's Salesforce record
    with Session(three.hub.store.engine) as s:
        live = s.execute(sa.select(Link.remote_id).where(Link.connection == "sales", Link.lead_id == la,
                                                         Link.deleted_at.is_(None))).scalars().all()
    assert live == [sf_b]
    three.cycle()
    held = three.sf.leads[sf_b]
    assert (held["FirstName"], held["Title"], held["Company"]) == ("Ada", "CTO", "Engines")  # the survivor's
    assert all(o.pushed == 0 for o in three.cycle().values())


def test_without_an_email_a_person_is_matched_by_phone_or_by_company_domain_and_name(three):
    by_phone = three.hs.remote_create({"first_name": "Lars", "last_name": "Berg", "phone": "+49 30 1234567",
                                       "company": "Nordlicht", "country": "DE", "status": "MQL"})
    by_name = three.hs.remote_create({"first_name": "Jürgen", "last_name": "Müller", "status": "MQL",
                                      "email": "j.mueller@weber-bau.example", "company": "Weber Bau"})
    three.cycle()  # both handed to sales: the two records sales then makes must not become new people
    for cid in (by_phone, by_name):
        sf_id, _ = three.sf_lead(_hub_id(three, cid))
        three.sf.delete_lead(sf_id)
    three.cycle()
    three.sf.add_lead({"FirstName": "Lars", "LastName": "Berg", "Phone": "030 1234567", "Country": "DE",
                       "Company": "Nordlicht GmbH", "Status": "Working - Contacted"})  # national format
    three.sf.add_lead({"FirstName": "Jurgen", "LastName": "Muller", "Website": "https://www.weber-bau.example/",
                       "Company": "Weber Bau GmbH", "Status": "Working - Contacted"})  # no email, no accents
    out = three.cycle()
    assert (out["sales"].matched, out["sales"].created) == (2, 0)
    assert three.lead(_hub_id(three, by_phone)).status == three.lead(_hub_id(three, by_name)).status == "SAL"
    with Session(three.hub.store.engine) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(LeadRow)).scalar_one() == 2


def test_a_record_first_seen_behind_the_lead_is_brought_forward_not_held_as_a_conflict(three):
    cid = three.hs.remote_create({"first_name": "Ola", "last_name": "Nordmann", "email": "ola@fjell.example",
                                  "company": "Fjell AS", "status": "SQL"})
    sf_id = three.sf.add_lead({"FirstName": "Ola", "LastName": "Nordmann", "Email": "ola@fjell.example",
                               "Company": "Fjell AS", "Status": "Marketing Qualified"})  # an old copy in sales
    out = three.cycle()
    assert out["sales"].matched == 1 and out["sales"].conflicts == 0
    assert three.lead(_hub_id(three, cid)).status == "SQL"
    assert three.sf.leads[sf_id]["Status"] == "Sales Qualified"

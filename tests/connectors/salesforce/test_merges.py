"""Salesforce merges: a lead that lost a merge is deleted with ``MasterRecordId``, ``queryAll`` shows it,
and the connector reports it deleted with ``merged_into``. The REST API cannot merge, so neither can
the connector."""

from __future__ import annotations

import pytest
import requests

from connectors.salesforce import SalesforceConnector, SalesforceSettings
from connectors.salesforce.sandbox import SalesforceSandbox
from hub.connector import RemoteRecord
from hub.testing.tls import loopback_tls


@pytest.fixture
def box(put):
    sandbox = SalesforceSandbox(rate=None)
    put(sandbox)
    return sandbox


@pytest.fixture
def cn(box):
    connector = SalesforceConnector(SalesforceSettings(**box.connector_settings(box.url)), connection="sales")
    yield connector
    connector.close()


def read(cn: SalesforceConnector, cursor: dict | None = None) -> tuple[list[RemoteRecord], dict]:
    records, after = [], cursor
    for page in cn.read_changes(cursor):
        records += page.records
        after = page.cursor
    return records, after


def lead(box, last: str, **extra) -> str:
    return box.add_lead({"LastName": last, "Company": "Analytical Engines", **extra})


def test_merged_away_leads_are_read_as_deleted_into_the_master(box, cn):
    master, loser, other, untouched = (lead(box, n, LeadHub_Id__c=f"hub-{n}") for n in ("Ada", "A", "B", "C"))
    _, cursor = read(cn)
    box.clock.advance(2.0)  # SystemModstamp has whole seconds
    box.merge_leads(master, loser, other, values={"Title": "Countess"})

    records, _ = read(cn, cursor)
    merged = {r.remote_id: r.merged_into for r in records if r.deleted}
    assert merged == {loser: master, other: master}
    (kept,) = [r for r in records if not r.deleted]
    assert (kept.remote_id, kept.hub_id, kept.fields["title"]) == (master, "hub-Ada", "Countess")
    assert untouched not in {r.remote_id for r in records}
    assert set(box.leads) == {master, untouched}
    # the losers' unique hub ids are free again
    assert lead(box, "New", LeadHub_Id__c="hub-A")


def test_a_plain_deletion_has_no_master_and_queryall_shows_master_record_id(box, cn):
    master, loser, gone = (lead(box, n) for n in ("Ada", "A", "B"))
    _, cursor = read(cn)
    box.clock.advance(2.0)
    box.merge_leads(master, loser)
    box.delete_lead(gone)
    records, _ = read(cn, cursor)
    assert {r.remote_id: r.merged_into for r in records if r.deleted} == {loser: master, gone: None}

    rows = requests.get(f"{box.url}/services/data/v59.0/queryAll", verify=loopback_tls().ca_file,
                        params={"q": "SELECT Id, IsDeleted, MasterRecordId FROM Lead WHERE IsDeleted = true"},
                        headers={"Authorization": f"Bearer {box.token}"}, timeout=10).json()["records"]
    assert {r["Id"]: r["MasterRecordId"] for r in rows} == {loser: master, gone: None}


def test_the_sandbox_merges_as_salesforce_allows(box):
    a, b, c, d = (lead(box, n) for n in "ABCD")
    with pytest.raises(ValueError, match="two or three"):
        box.merge_leads(a, b, c, d)  # at most three records in one merge
    with pytest.raises(ValueError, match="two or three"):
        box.merge_leads(a, a)
    box.convert_lead(d)
    with pytest.raises(ValueError, match="CANNOT_UPDATE_CONVERTED_LEAD"):
        box.merge_leads(d, a)
    assert box.remote_merge(a, b) == a and box.remote_get(b) is None and box.remote_get(a) is not None


def test_the_connector_cannot_merge_through_rest(cn, box):
    assert not cn.can_merge
    with pytest.raises(NotImplementedError):
        cn.merge(lead(box, "A"), lead(box, "B"))

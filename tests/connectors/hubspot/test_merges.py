"""HubSpot merges: the sandbox merges as HubSpot does (a new contact, both old ids pointing to it), the
connector reports merged-away ids as deletions with ``merged_into``, and asks HubSpot to merge."""

from __future__ import annotations

import httpx
import pytest

from connectors.hubspot import HubSpotConnector, HubSpotSettings
from connectors.hubspot.sandbox import HubSpotSandbox
from hub.connector import RemoteRecord
from tests.connectors.hubspot.test_sandbox import _contacts_quirks, _spec, spec_errors

BASE = "/crm/v3/objects/contacts"


@pytest.fixture
def box():
    sandbox = HubSpotSandbox(rate=None, search_rate=None, lag=0.0)
    with sandbox.serve() as served:
        sandbox.url = served.url
        yield sandbox


def connector(box) -> HubSpotConnector:
    return HubSpotConnector(HubSpotSettings(base_url=box.url, token=box.token, search_overlap=0),
                            connection="marketing")


def read(cn: HubSpotConnector, cursor: dict | None = None) -> tuple[list[RemoteRecord], dict]:
    records, after = [], cursor
    for page in cn.read_changes(cursor):
        records += page.records
        after = page.cursor
    return records, after


def merges(records: list[RemoteRecord]) -> dict[str, str | None]:
    return {r.remote_id: r.merged_into for r in records if r.deleted}


def two(box) -> tuple[str, str]:
    a = box.add_contact({"email": "ada@example.com", "firstname": "Ada", "leadhub_id": "lead-a"})
    b = box.add_contact({"email": "ada.l@example.com", "firstname": "Augusta", "lastname": "Lovelace",
                         "phone": "+44 20 7946 0000", "leadhub_id": "lead-b"})
    return a, b


def test_a_merge_in_hubspot_makes_a_new_contact_and_both_old_ids_point_to_it(box):
    a, b = two(box)
    box.clock.advance(1.0)
    merged = box.merge_contacts(a, b)
    assert merged not in (a, b) and set(box.contacts) == {merged}
    props = box.contacts[merged]
    assert props["hs_merged_object_ids"] == f"{a};{b}"
    # the primary's values win, the other's fill what the primary lacks
    assert (props["email"], props["firstname"], props["lastname"], props["leadhub_id"]) == \
        ("ada@example.com", "Ada", "Lovelace", "lead-a")
    with httpx.Client(base_url=box.url, headers={"Authorization": f"Bearer {box.token}"}) as client:
        for old in (a, b):  # an old id reads as the merged contact
            assert client.get(f"{BASE}/{old}").json()["id"] == merged
        assert client.get(BASE, params={"archived": "true"}).json()["results"] == []
        found = client.post(f"{BASE}/search", json={"properties": ["hs_merged_object_ids"]}).json()["results"]
        assert [r["id"] for r in found] == [merged]
        # the unique values of the merged-away records are free again, the survivor's are taken
        assert client.post(BASE, json={"properties": {"email": "ada.l@example.com"}}).status_code == 201
        assert client.post(BASE, json={"properties": {"leadhub_id": "lead-a"}}).status_code == 409


def test_the_merge_endpoint_answers_as_the_spec_says_and_refuses_what_it_cannot_merge(box):
    spec = _spec("contacts.json", _contacts_quirks)
    a, b = two(box)
    with httpx.Client(base_url=box.url, headers={"Authorization": f"Bearer {box.token}"}) as client:
        resp = client.post(f"{BASE}/merge", json={"primaryObjectId": a, "objectIdToMerge": b})
        assert resp.status_code == 200 and spec_errors(spec, resp) == []
        merged = resp.json()["id"]
        same = client.post(f"{BASE}/merge", json={"primaryObjectId": merged, "objectIdToMerge": a})
        assert same.status_code == 400 and same.json()["category"] == "VALIDATION_ERROR"
        gone = client.post(f"{BASE}/merge", json={"primaryObjectId": merged, "objectIdToMerge": "999999"})
        assert gone.status_code == 404 and gone.json()["category"] == "OBJECT_NOT_FOUND"
        assert client.post(f"{BASE}/merge", json={"primaryObjectId": a}).status_code == 400


def test_a_merge_made_in_hubspot_is_read_as_both_old_ids_deleted_into_the_new_contact(box):
    a, b = two(box)
    keep = box.add_contact({"email": "grace@example.com", "firstname": "Grace"})
    cn = connector(box)
    first, cursor = read(cn)
    assert {r.remote_id for r in first} == {a, b, keep} and not merges(first)
    box.clock.advance(1.0)
    merged = box.merge_contacts(a, b)

    records, cursor = read(cn, cursor)
    assert merges(records) == {a: merged, b: merged}
    live = [r for r in records if not r.deleted]
    assert [(r.remote_id, r.hub_id, r.fields["last_name"]) for r in live] == [(merged, "lead-a", "Lovelace")]
    order = [r.remote_id for r in records]
    assert order.index(a) < order.index(merged) and order.index(b) < order.index(merged)  # losers first
    assert all(r.hub_id is None and r.fields == {} for r in records if r.deleted)

    again, _ = read(cn, cursor)
    assert again == []  # nothing changed since: nothing read, nothing reported


def test_when_the_primary_keeps_its_id_only_the_other_record_is_reported(box):
    box.merge_keeps_primary_id = True  # HubSpot's behaviour before the new-id change
    a, b = two(box)
    cn = connector(box)
    _, cursor = read(cn)
    box.clock.advance(1.0)
    assert box.merge_contacts(a, b) == a
    records, _ = read(cn, cursor)
    assert merges(records) == {b: a} and [r.remote_id for r in records if not r.deleted] == [a]


def test_a_contact_merged_twice_reports_every_id_merged_into_it(box):
    a, b = two(box)
    c = box.add_contact({"email": "ada.king@example.com", "firstname": "Ada"})
    cn = connector(box)
    _, cursor = read(cn)
    box.clock.advance(1.0)
    first = box.merge_contacts(a, b)
    second = box.merge_contacts(c, first)
    records, _ = read(cn, cursor)
    assert merges(records) == {a: second, b: second, c: second, first: second}


def test_connector_merge_asks_hubspot_and_the_next_read_reports_it(box):
    a, b = two(box)
    cn = connector(box)
    assert cn.can_merge
    _, cursor = read(cn)
    box.clock.advance(1.0)
    cn.merge(a, b)
    assert cn.meter.by_kind["merge"] == 1
    (merged,) = box.contacts
    assert box.contacts[merged]["leadhub_id"] == "lead-a" and box.contacts[merged]["lastname"] == "Lovelace"
    records, _ = read(cn, cursor)
    assert merges(records) == {a: merged, b: merged}
    with pytest.raises(ValueError, match="contacts"):
        cn.merge(a, b, object="companies")

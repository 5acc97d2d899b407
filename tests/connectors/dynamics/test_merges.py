"""Dynamics 365 merges: the Web API ``Merge`` action deactivates the subordinate lead with ``masterid``,
change tracking shows it as an update, and the connector reports it deleted with ``merged_into``."""

from __future__ import annotations

import pytest

from connectors.dynamics import DynamicsConnector, DynamicsSettings
from hub.connector import RemoteRecord

HUB_ID = "leadhub_leadhubid"
LEAD = "Microsoft.Dynamics.CRM.lead"


@pytest.fixture
def cn(box):
    connector = DynamicsConnector(DynamicsSettings(**box.connector_settings(box.url)), connection="sales")
    yield connector
    connector.close()


def read(cn: DynamicsConnector, cursor: dict | None = None) -> tuple[list[RemoteRecord], dict]:
    records, after = [], cursor
    for page in cn.read_changes(cursor):
        records += page.records
        after = page.cursor
    return records, after


def two(box) -> tuple[str, str]:
    target = box.add_lead({"lastname": "Lovelace", "firstname": "Ada", HUB_ID: "lead-a"})
    sub = box.add_lead({"lastname": "Lovelace", "jobtitle": "Countess", "telephone1": "+44 20 7946 0000",
                        HUB_ID: "lead-b"})
    return target, sub


def merge_body(target: str, sub: str, **extra) -> dict:
    return {"Target": {"@odata.type": LEAD, "leadid": target}, "Subordinate": {"@odata.type": LEAD, "leadid": sub},
            "PerformParentingChecks": False, **extra}


def test_the_merge_action_fills_the_target_and_deactivates_the_subordinate(box, api):
    target, sub = two(box)
    resp = api.post("Merge", json=merge_body(target, sub, UpdateContent={"@odata.type": LEAD,
                                                                           "companyname": "Engines"}))
    assert resp.status_code == 204 and resp.content == b""
    kept, gone = box.leads[target], box.leads[sub]
    # empty columns of the target take the subordinate's values; its own (and the unique key) stay
    assert (kept["firstname"], kept["jobtitle"], kept["telephone1"], kept["companyname"], kept[HUB_ID]) == \
        ("Ada", "Countess", "+44 20 7946 0000", "Engines", "lead-a")
    assert (gone["statecode"], gone["statuscode"], gone["merged"], gone["_masterid_value"], gone[HUB_ID]) == \
        (2, 7, True, target, "lead-b")
    row = api.get(f"leads({sub})", params={"$select": "statecode,_masterid_value"}).json()
    assert row["_masterid_value"] == target


@pytest.mark.parametrize("body, message", [
    (lambda t, s: merge_body(t, t), "identical"),
    (lambda t, s: merge_body(t, s, PerformParentingChecks=None), "PerformParentingChecks"),
    (lambda t, s: {**merge_body(t, s), "Target": {"@odata.type": "Microsoft.Dynamics.CRM.opportunity"}},
     "opportunity is not supported with merge operation"),
])
def test_the_merge_action_refuses_what_dataverse_refuses(box, api, body, message):
    target, sub = two(box)
    resp = api.post("Merge", json=body(target, sub))
    assert resp.status_code == 400 and message in resp.json()["error"]["message"]


def test_an_inactive_or_missing_lead_cannot_be_merged(box, api):
    target, sub = two(box)
    box.merge_leads(target, sub)
    again = api.post("Merge", json=merge_body(target, sub))
    assert again.status_code == 400 and again.json()["error"]["message"] == f"sub-entity:lead-{sub} is deactive"
    missing = api.post("Merge", json=merge_body(target, "00000000-0000-0000-0000-000000000001"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "0x80040217"


def test_a_merge_made_in_dynamics_is_read_as_the_subordinate_deleted_into_the_target(box, cn):
    target, sub = two(box)
    other = box.add_lead({"lastname": "Hopper"})
    first, cursor = read(cn)
    assert {r.remote_id for r in first} == {target, sub, other} and not any(r.deleted for r in first)
    box.clock.advance(1.0)
    box.merge_leads(target, sub)

    records, cursor = read(cn, cursor)  # the delta: both rows changed, as updates
    by_id = {r.remote_id: r for r in records}
    assert set(by_id) == {target, sub}
    assert (by_id[sub].deleted, by_id[sub].merged_into) == (True, target)
    assert (by_id[target].deleted, by_id[target].merged_into, by_id[target].fields["title"]) == \
        (False, None, "Countess")
    assert read(cn, cursor)[0] == []


def test_connector_merge_calls_the_action_and_the_next_read_reports_it(box, cn):
    target, sub = two(box)
    assert cn.can_merge
    _, cursor = read(cn)
    cn.merge(target, sub)
    assert cn.meter.by_kind["POST Merge"] == 1
    assert box.leads[sub]["_masterid_value"] == target
    records, _ = read(cn, cursor)
    assert {r.remote_id: r.merged_into for r in records if r.deleted} == {sub: target}
    with pytest.raises(ValueError, match="leads"):
        cn.merge(target, sub, object="contacts")

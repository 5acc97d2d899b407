"""Fidelity of the Dynamics 365 sandbox: Entra tokens, Web API paging, change tracking, writes, limits."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors.dynamics.sandbox import DynamicsSandbox

from .conftest import token_for, trust

TRACK = {"Prefer": "odata.track-changes,odata.maxpagesize=40"}
SELECT = "leads?$select=lastname,statecode,statuscode,modifiedon"


def pages(api: httpx.Client, url: str, headers: dict[str, str]) -> tuple[list[dict], str | None, int]:
    """Follow nextLinks to the end: (rows, the final deltaLink, number of pages)."""
    rows, count = [], 0
    while True:
        data = api.get(url, headers=headers).json()
        rows += data["value"]
        count += 1
        if "@odata.nextLink" not in data:
            return rows, data.get("@odata.deltaLink"), count
        url = data["@odata.nextLink"]


def upsert(api: httpx.Client, *targets: dict) -> httpx.Response:
    return api.post("leads/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": [
        {"@odata.type": "Microsoft.Dynamics.CRM.lead", **t} for t in targets]})


# -- Entra ---------------------------------------------------------------------------------------
def test_msal_style_discovery_and_tokens(box):
    conf = httpx.get(f"{box.url}/{box.tenant_id}/v2.0/.well-known/openid-configuration",
                     verify=trust()).json()
    assert conf["token_endpoint"] == f"{box.url}/{box.tenant_id}/oauth2/v2.0/token"
    answer = token_for(box).json()
    assert (answer["token_type"], answer["expires_in"]) == ("Bearer", box.token_ttl)
    assert answer["access_token"]
    bad = token_for(box, secret="not-the-secret")
    assert bad.status_code == 401
    body = bad.json()
    assert body["error"] == "invalid_client" and body["error_codes"] == [7000215]
    assert body["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    unknown = httpx.get(f"{box.url}/other-tenant/v2.0/.well-known/openid-configuration", verify=trust())
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_tenant"


def test_missing_or_expired_bearer_is_refused_with_the_dataverse_challenge(box, api):
    anonymous = httpx.get(f"{box.url}/api/data/v9.2/leads", verify=trust())
    assert anonymous.status_code == 401 and anonymous.content == b""
    challenge = anonymous.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and f"login.microsoftonline.com/{box.tenant_id}" in challenge
    assert api.get("leads").status_code == 200
    box.clock.advance(box.token_ttl + 1)
    assert api.get("leads").status_code == 401


# -- reads ---------------------------------------------------------------------------------------
def test_paging_reaches_the_end_once_and_caps_pages_at_5000(box, api):
    box.seed(5_001, seed=2)
    rows, delta, count = pages(api, SELECT, {"Prefer": "odata.maxpagesize=9000"})
    assert count == 2 and len(rows) == len({r["leadid"] for r in rows}) == 5_001  # 5,000 then 1
    assert delta is None  # no deltaLink without track-changes
    assert set(box.remote_ids()) == {r["leadid"] for r in rows}
    small, _, count = pages(api, SELECT + "&$filter=leadsourcecode eq 8", {"Prefer": "odata.maxpagesize=700"})
    expected = {k for k, v in box.leads.items() if v["leadsourcecode"] == 8}
    assert count == -(-len(expected) // 700) and [r["leadid"] for r in small] == sorted(expected)


def test_rows_carry_etags_and_second_precision_utc_timestamps(box, api):
    box.clock.freeze(datetime(2026, 3, 2, 9, 30, 15, 987_000, tzinfo=UTC))
    lead = box.add_lead({"lastname": "Stamp"})
    row = api.get(f"leads({lead})?$select=lastname,modifiedon,createdon,versionnumber").json()
    assert row["modifiedon"] == row["createdon"] == "2026-03-02T09:30:15Z"
    assert row["@odata.etag"] == f'W/"{row["versionnumber"]}"' and row["leadid"] == lead
    box.clock.advance(61)
    box.update_lead(lead, {"firstname": "Anna"})
    again = api.get(f"leads({lead})?$select=modifiedon,versionnumber").json()
    assert again["modifiedon"] == "2026-03-02T09:31:16Z" and again["versionnumber"] > row["versionnumber"]
    assert api.get("leads(00000000-0000-0000-0000-000000000000)").json()["error"]["code"] == "0x80040217"


def test_change_tracking_gives_changes_and_deletions_since_the_delta_link(box, api):
    ids = [box.add_lead({"lastname": f"L{i}"}) for i in range(100)]
    rows, delta, count = pages(api, SELECT, TRACK)
    assert count == 3 and len({r["leadid"] for r in rows}) == 100
    assert re.search(r"\$deltatoken=\d+%21\d\d%2F\d\d%2F\d{4}%20", delta)
    assert api.get(delta).json()["value"] == []  # nothing changed yet
    box.update_lead(ids[3], {"firstname": "Changed"})
    box.delete_lead(ids[7])
    new = box.add_lead({"lastname": "New"})
    data = api.get(delta).json()
    assert data["@odata.context"].endswith("/$delta")
    changed = [r for r in data["value"] if "leadid" in r]
    deleted = [r for r in data["value"] if "leadid" not in r]
    assert {r["leadid"] for r in changed} == {ids[3], new}
    assert deleted == [{"@odata.context": f"{box.url}/api/data/v9.2/$metadata#leads/$deletedEntity",
                        "id": ids[7], "reason": "deleted"}]
    assert data["value"][-1] == deleted[0]  # deletions come after new and updated rows


def test_a_snapshot_interrupted_by_writes_loses_and_repeats_nothing(box, api):
    ids = [box.add_lead({"lastname": f"L{i}"}) for i in range(100)]
    first = api.get(SELECT, headers=TRACK).json()
    seen = [r["leadid"] for r in first["value"]]
    unread = [i for i in ids if i not in seen]
    box.update_lead(unread[0], {"firstname": "Moved"})  # changes during the snapshot...
    box.update_lead(seen[0], {"firstname": "Again"})
    box.delete_lead(unread[1])
    rest, delta, _ = pages(api, first["@odata.nextLink"], TRACK)  # ...and the skiptoken still works
    snapshot = seen + [r["leadid"] for r in rest]
    assert len(snapshot) == len(set(snapshot)) == 98  # the moved and the deleted: not in it
    later = {r.get("leadid") or r["id"] for r in api.get(delta).json()["value"]}
    assert later == {unread[0], seen[0], unread[1]}  # ...but in the next delta: nothing lost


def test_change_tracking_refuses_filter_and_expires_old_tokens(box, api):
    box.add_lead({"lastname": "A"})
    refused = api.get("leads?$select=lastname&$filter=lastname eq 'A'", headers=TRACK)
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == ('The "$filter" query parameter isn\'t supported when '
                                                  'Change Tracking is enabled.')
    _, delta, _ = pages(api, SELECT, TRACK)
    box.clock.advance(8 * 86_400)  # ExpireChangeTrackingInDays is 7
    assert api.get(delta).status_code == 401  # the bearer has expired too
    fresh = token_for(box).json()["access_token"]
    gone = api.get(delta, headers={"Authorization": f"Bearer {fresh}"})
    assert gone.status_code == 410
    assert gone.json()["error"] == {"code": "0x80044352", "message": "Version stamp associated with the "
                                                                     "client has expired. Please perform a "
                                                                     "full sync."}


def test_filters_for_in_and_eq(box, api):
    ids = [box.add_lead({"lastname": f"F{i}", "leadsourcecode": 8 if i % 2 else 1}) for i in range(6)]
    quoted = ",".join(f"'{i.upper()}'" for i in ids[:3])
    where = f"Microsoft.Dynamics.CRM.In(PropertyName='leadid',PropertyValues=[{quoted}])" \
            " and leadsourcecode eq 8"
    data = api.get("leads", params={"$select": "lastname", "$filter": where}).json()
    assert [r["leadid"] for r in data["value"]] == [ids[1]]
    unknown = api.get("leads?$select=lastname,nosuchcolumn")
    assert unknown.status_code == 400 and unknown.json()["error"] == {
        "code": "0x80060888", "message": "Could not find a property named 'nosuchcolumn' on type "
                                         "'Microsoft.Dynamics.CRM.lead'."}


# -- writes --------------------------------------------------------------------------------------
def test_upsert_multiple_creates_by_alternate_key_and_updates_by_id(box, api):
    owner = next(u for u in box.tables["systemusers"].rows.values() if u["internalemailaddress"])
    existing = box.add_lead({"lastname": "Old"})
    answer = upsert(api, {"@odata.id": "leads(leadhub_leadhubid='hub-1')", "lastname": "Created",
                          "ownerid@odata.bind": f"/systemusers({owner['systemuserid']})"},
                    {"@odata.id": f"leads({existing})", "lastname": "Updated", "statecode": 0,
                     "statuscode": 582300000})
    assert answer.status_code == 204 and answer.content == b""
    created = [r for r in box.leads.values() if r["leadhub_leadhubid"] == "hub-1"]
    assert len(created) == 1 and created[0]["_ownerid_value"] == owner["systemuserid"]
    assert box.leads[existing]["lastname"] == "Updated" and box.leads[existing]["statuscode"] == 582300000
    # the same upsert again updates the same row: no duplicate
    again = upsert(api, {"@odata.id": "leads(leadhub_leadhubid='hub-1')", "lastname": "Again"})
    assert again.status_code == 204
    assert [r["lastname"] for r in box.leads.values() if r["leadhub_leadhubid"] == "hub-1"] == ["Again"]


@pytest.mark.parametrize(("target", "code", "message"), [
    ({"emailaddress1": "x" * 101}, "0x80044331",
     ("A validation error occurred.  The length of the 'emailaddress1' attribute of the 'lead' entity "
      "exceeded the maximum allowed length of '100'.")),
    ({"leadsourcecode": 99}, "0x80044331",
     ("A validation error occurred. The value 99 of 'leadsourcecode' on record of type 'lead' is outside the "
      "valid range.")),
    ({"statecode": 1, "statuscode": 2}, "0x80048408",
     "is not a valid status code for state code LeadState.Qualified on lead with Id"),
    ({"nickname": "x"}, "0x80060888",
     "Could not find a property named 'nickname' on type 'Microsoft.Dynamics.CRM.lead'."),
    ({"estimatedclosedate": "next week"}, "0x0",
     "Cannot convert the literal 'next week' to the expected type 'Edm.Date'."),
])
def test_one_invalid_target_fails_the_whole_call_with_the_first_error(box, api, target, code, message):
    answer = upsert(api, {"@odata.id": "leads(leadhub_leadhubid='ok-1')", "lastname": "Fine"},
                    {"@odata.id": "leads(leadhub_leadhubid='bad-1')", "lastname": "Bad", **target})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == code and message in error["message"]
    assert box.leads == {}  # all or nothing: the valid target was not written either


def test_update_multiple_never_creates(box, api):
    kept = box.add_lead({"lastname": "Kept"})
    gone = box.add_lead({"lastname": "Gone"})
    box.delete_lead(gone)
    answer = api.post("leads/Microsoft.Dynamics.CRM.UpdateMultiple", json={"Targets": [
        {"@odata.type": "Microsoft.Dynamics.CRM.lead", "leadid": kept, "lastname": "Changed"},
        {"@odata.type": "Microsoft.Dynamics.CRM.lead", "leadid": gone, "lastname": "Back?"}]})
    assert answer.status_code == 400
    assert answer.json()["error"] == {"code": "0x80040217",
                                      "message": f"lead With Id = {gone} Does Not Exist"}
    assert list(box.leads) == [kept] and box.leads[kept]["lastname"] == "Kept"
    ok = api.post("leads/Microsoft.Dynamics.CRM.UpdateMultiple", json={"Targets": [
        {"@odata.type": "Microsoft.Dynamics.CRM.lead", "leadid": kept, "lastname": "Changed"}]})
    assert ok.status_code == 204 and box.leads[kept]["lastname"] == "Changed"


def test_alternate_key_is_unique_and_odata_type_is_required(box, api):
    a = box.add_lead({"lastname": "A", "leadhub_leadhubid": "taken"})
    b = box.add_lead({"lastname": "B"})
    clash = upsert(api, {"@odata.id": f"leads({b})", "leadhub_leadhubid": "taken"})
    assert clash.status_code == 400 and clash.json()["error"]["code"] == "0x80060892"
    assert "The entity key LeadHub ID Key requires that this set of attributes contains unique values" in \
        clash.json()["error"]["message"]
    untyped = api.post("leads/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": [{"lastname": "X"}]})
    assert untyped.status_code == 400 and "@odata.type" in untyped.json()["error"]["message"]
    nobody = upsert(api, {"@odata.id": f"leads({a})",
                          "ownerid@odata.bind": "/systemusers(00000000-0000-0000-0000-000000000001)"})
    assert nobody.status_code == 400 and nobody.json()["error"]["code"] == "0x80040217"


# -- service protection --------------------------------------------------------------------------
def test_rate_limit_answers_429_with_retry_after_and_dataverse_body():
    box = DynamicsSandbox(rate=3, window=300)
    with box.serve() as served:
        box.url = served.url
        token = token_for(box).json()["access_token"]
        with httpx.Client(base_url=f"{served.url}/api/data/v9.2/", verify=trust(),
                          headers={"Authorization": f"Bearer {token}"}) as api:
            header = "x-ms-ratelimit-burst-remaining-xrm-requests"
            remaining = [api.get("leads?$select=lastname").headers[header] for _ in range(3)]
            assert remaining == ["2", "1", "0"]
            refused = api.get("leads?$select=lastname")
            assert refused.status_code == 429
            assert 1 <= int(refused.headers["Retry-After"]) <= 300
            assert refused.json() == {"error": {
                "code": "0x80072322",
                "message": "Number of requests exceeded the limit of 3 over time window of 300 seconds."}}
            box.clock.advance(301)  # the sliding window empties
            assert api.get("leads?$select=lastname").status_code == 200


def test_qualified_leads_point_at_their_opportunity(box, api):
    lead = box.add_lead({"lastname": "Deal", "estimatedamount": 5000.0})
    opp = box.qualify(lead, salesstage=1)
    row = api.get(f"leads({lead})?$select=statecode,statuscode,_qualifyingopportunityid_value").json()
    assert (row["statecode"], row["statuscode"], row["_qualifyingopportunityid_value"]) == (1, 3, opp)
    box.update_opportunity(opp, {"statecode": 1, "statuscode": 3})
    select = "statecode,statuscode,estimatedvalue,_originatingleadid_value"
    deal = api.get(f"opportunities({opp})?$select={select}").json()
    assert (deal["statecode"], deal["statuscode"], deal["estimatedvalue"]) == (1, 3, 5000.0)
    assert deal["_originatingleadid_value"] == lead
    assert box.remote_get(lead)["status"] == "Closed Won"
    assert timedelta(0) <= box.clock.now() - datetime.fromisoformat(box.leads[lead]["modifiedon"]) \
        < timedelta(seconds=5)

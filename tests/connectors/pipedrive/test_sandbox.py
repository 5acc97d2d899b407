"""The Pipedrive sandbox, driven over HTTP, its requests and answers checked against Pipedrive's own
OpenAPI specs (quirks of the specs: see specs.py)."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from connectors.pipedrive.budget import TOKEN_COSTS
from connectors.pipedrive.sandbox import COSTS, HUB_ID, LABEL_STATUS, PERSON_HUB_ID, STAGE_STATUS

from .specs import V1, V2, raw_spec, spec_errors, valid

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp).timestamp() * 1000)


def person_with_lead(client, name="Ada Lovelace", **lead):
    person = valid(client.post("/api/v2/persons", json={"name": name})).json()["data"]
    body = {"title": f"{name} lead", "person_id": person["id"], **lead}
    return person, valid(client.post("/v1/leads", json=body)).json()["data"]


# -- the specs themselves ------------------------------------------------------------------------

def test_token_costs_are_the_specs_x_token_cost():
    specs = {V1: raw_spec(V1), V2: raw_spec(V2)}
    for table in (COSTS, TOKEN_COSTS):
        for route, cost in table.items():
            method, path = route.split(" ", 1)
            name, rel = (V2, path[len("/api/v2"):]) if path.startswith("/api/v2/") else (V1, path[len("/v1"):])
            assert specs[name]["paths"][rel][method.lower()]["x-token-cost"] == cost, route


# -- v1 leads: offset paging, updated_since, sort ---------------------------------------------------

def test_v1_leads_page_to_the_end_in_update_order_with_no_record_twice(make):
    box, client = make()
    box.seed(900, seed=4)
    seen, start, calls = [], 0, 0
    while True:
        resp = client.get("/v1/leads", params={"start": start, "limit": 200, "sort": "update_time ASC"})
        page = (valid(resp) if start == 0 else resp).json()
        calls += 1
        seen += page["data"]
        paging = page["additional_data"]["pagination"]
        if not paging["more_items_in_collection"]:
            break
        assert paging["next_start"] == start + 200
        start = paging["next_start"]
    live = [ld for ld in box.state.leads.values() if not ld["deleted"] and not ld["is_archived"]]
    assert len(seen) == len({r["id"] for r in seen}) == len(live) and calls == -(-len(live) // 200)
    stamps = [ms(r["update_time"]) for r in seen]
    assert stamps == sorted(stamps)
    assert all(r["update_time"][-5] == "." and r["update_time"].endswith("Z") for r in seen)  # milliseconds
    big = client.get("/v1/leads", params={"limit": 5000}).json()
    assert len(big["data"]) == 500 and big["additional_data"]["pagination"]["limit"] == 500  # cut, not refused


def test_v1_updated_since_is_inclusive_to_the_millisecond(make):
    box, client = make()
    box.clock.freeze(T0)
    ids = [box.remote_create({"last_name": f"L{i}", "company": "Acme"}) for i in range(3)]
    box.clock.advance(0.001)
    later = box.remote_create({"last_name": "Later", "company": "Acme"})
    at = lambda since: [r["id"] for r in valid(client.get("/v1/leads", params={
        "updated_since": since, "sort": "update_time ASC"})).json()["data"]]
    assert at("2026-05-04T12:00:00.000Z") == ids + [later]
    assert at("2026-05-04T12:00:00.001Z") == [later]
    assert at("2026-05-04T12:00:00Z") == ids + [later]
    archived = valid(client.get("/v1/leads/archived")).json()
    assert archived["data"] == [] and archived["additional_data"]["pagination"]["more_items_in_collection"] is False


# -- v2: keyset cursors, caps ----------------------------------------------------------------------

def test_v2_cursors_page_to_the_end_and_a_record_changed_mid_read_moves_behind_the_cursor(make):
    box, client = make()
    box.seed(300, seed=5)
    params = {"limit": 40, "sort_by": "update_time", "sort_direction": "asc"}
    first = valid(client.get("/api/v2/persons", params=params)).json()
    cursor = first["additional_data"]["next_cursor"]
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert decoded["field"] == "update_time" and decoded["id"] == first["data"][-1]["id"]
    early = first["data"][0]["id"]
    box.remote_update(next(ld["id"] for ld in box.state.leads.values() if ld["person_id"] == early),
                      {"phone": "+49 30 1111111"})  # the first person read is edited while paging
    seen = [p["id"] for p in first["data"]]
    while cursor:
        page = client.get("/api/v2/persons", params={**params, "cursor": cursor}).json()
        seen += [p["id"] for p in page["data"]]
        cursor = page["additional_data"]["next_cursor"]
    assert sorted(set(seen)) == sorted(box.state.persons) and len(seen) == len(box.state.persons) + 1
    assert seen[-1] == early  # read again, at its new place; nothing skipped
    assert all(len(p["update_time"]) == 20 and p["update_time"][-1] == "Z" for p in first["data"])  # seconds


@pytest.mark.parametrize("params, message", [
    ({"limit": 501}, "limit: Number must be less than or equal to 500"),
    ({"ids": ",".join(map(str, range(1, 102)))}, "ids: Array must contain at most 100"),
    ({"sort_by": "name"}, "sort_by: Invalid enum value"),
    ({"cursor": "not-a-cursor"}, "cursor: Invalid cursor"),
])
def test_v2_list_caps_and_bad_parameters_are_400_validation_errors(make, params, message):
    _, client = make()
    resp = client.get("/api/v2/persons", params=params)
    assert resp.status_code == 400
    body = resp.json()
    assert body["success"] is False and message in body["error"] and body["code"] == "ERR_SCHEMA_VALIDATION_FAILED"
    assert [e for e in spec_errors(resp) if not e.startswith("request")] == []


def test_deals_filter_by_status_and_name_the_lead_they_were_converted_from(make):
    box, client = make()
    box.seed(150, seed=6)
    deals = valid(client.get("/api/v2/deals", params={"limit": 500, "include_fields": "source_lead_id",
                                                      "status": "open,won,lost,deleted"})).json()["data"]
    assert deals and all(d["source_lead_id"] and box.state.leads[d["source_lead_id"]]["deleted"] for d in deals)
    plain = valid(client.get("/api/v2/deals", params={"limit": 500})).json()["data"]
    assert "source_lead_id" not in plain[0]
    won = valid(client.get("/api/v2/deals", params={"status": "won", "limit": 500})).json()["data"]
    assert {d["status"] for d in won} == {"won"} and "won_time" in won[0]
    stages = {s["id"]: s["name"] for s in valid(client.get("/api/v2/stages")).json()["data"]}
    assert {stages[d["stage_id"]] for d in deals if d["status"] == "open"} <= set(STAGE_STATUS)


# -- writes and their validation ---------------------------------------------------------------------

def test_lead_person_and_organization_writes_stamp_times_and_keep_custom_fields(make):
    box, client = make()
    box.clock.freeze(T0)
    org = valid(client.post("/api/v2/organizations", json={"name": "Acme GmbH"})).json()["data"]
    person, lead = person_with_lead(client, organization_id=org["id"], **{HUB_ID: "hub-1"})
    assert lead["add_time"] == lead["update_time"] == "2026-05-04T12:00:00.000Z" and lead["source_name"] == "API"
    assert lead[HUB_ID] == "hub-1" and person["add_time"] == "2026-05-04T12:00:00Z"
    box.clock.advance(1.25)
    label = next(i for i, lb in box.state.labels.items() if lb["name"] == "Hot")
    edited = valid(client.patch(f"/v1/leads/{lead['id']}", json={
        "label_ids": [label], "value": {"amount": 1200, "currency": "EUR"}, "expected_close_date": "2026-06-30"}))
    data = edited.json()["data"]
    assert data["update_time"] == "2026-05-04T12:00:01.250Z" and data["label_ids"] == [label]
    assert data[HUB_ID] == "hub-1"  # kept: only what is sent changes
    renamed = valid(client.patch(f"/api/v2/persons/{person['id']}", json={
        "name": "Ada King", "emails": [{"value": "ada@acme.example", "primary": True}],
        "custom_fields": {PERSON_HUB_ID: "hub-1"}})).json()["data"]
    assert (renamed["first_name"], renamed["last_name"], renamed["update_time"]) == ("Ada", "King",
                                                                                     "2026-05-04T12:00:01Z")
    assert renamed["custom_fields"][PERSON_HUB_ID] == "hub-1"
    assert valid(client.get(f"/v1/leads/{lead['id']}")).json()["data"]["value"] == {"amount": 1200,
                                                                                    "currency": "EUR"}


@pytest.mark.parametrize("path, body, status, message", [
    ("/v1/leads", {"title": "No one"}, 400, "A lead must be linked to a person or an organization or both"),
    ("/v1/leads", {"person_id": 1}, 400, "Title is required"),
    ("/v1/leads", {"title": "x", "person_id": 999999}, 400, "Person with ID 999999 not found"),
    ("/v1/leads", {"title": "x", "person_id": 1, "value": {"amount": 5}}, 400, "numeric amount and a currency"),
    ("/v1/leads", {"title": "x", "person_id": 1, "label_ids": ["nope"]}, 400, "Lead label(s) not found: nope"),
    ("/v1/leads", {"title": "x", "person_id": 1, "owner_id": 999}, 400, "User with ID 999 not found"),
    ("/api/v2/persons", {"name": "Bad", "emails": [{"value": "not-an-email@"}]}, 400,
     "emails[0].value: 'not-an-email@' is not a valid email address"),
    ("/api/v2/persons", {"emails": []}, 400, "name: Required"),
    ("/api/v2/persons", {"name": "x", "custom_fields": {"f" * 40: "v"}}, 400, "Unknown custom field key"),
])
def test_refused_writes_answer_pipedrives_error_shape_with_the_reason(make, path, body, status, message):
    box, client = make()
    box.remote_create({"last_name": "Anyone", "company": "Acme"})  # person 1 exists
    resp = client.post(path, json=body)
    assert resp.status_code == status
    error = resp.json()
    assert error["success"] is False and message in error["error"]
    assert error["error_info"].startswith("Please check developers.pipedrive.com")
    assert error["data"] is None and error["additional_data"] is None
    assert [e for e in spec_errors(resp) if not e.startswith("request")] == []


def test_a_missing_lead_is_404_and_a_lost_reason_needs_a_lost_deal(make):
    box, client = make()
    gone = client.patch("/v1/leads/00000000-0000-4000-8000-000000000000", json={"title": "x"})
    assert gone.status_code == 404 and gone.json()["error"] == "Lead not found"
    assert spec_errors(gone) == []  # PATCH /leads/{id} declares its 404
    rid = box.remote_create({"last_name": "Won", "company": "Acme", "status": "Opportunity"})
    deal = next(d for d in box.state.deals.values() if d["source_lead_id"] == rid)
    refused = client.patch(f"/api/v2/deals/{deal['id']}", json={"lost_reason": "Price"})
    assert refused.status_code == 400 and "lost_reason: can only be set if deal status is lost" in refused.json()["error"]
    lost = valid(client.patch(f"/api/v2/deals/{deal['id']}", json={"status": "lost", "lost_reason": "Price"}))
    assert lost.json()["data"]["lost_reason"] == "Price" and lost.json()["data"]["lost_time"]


def test_converting_a_lead_runs_a_job_copies_custom_fields_and_deletes_the_lead(make):
    box, client = make(conversion_lag=5.0)
    box.clock.freeze(T0)
    _, lead = person_with_lead(client, **{HUB_ID: "hub-7"})
    job = valid(client.post(f"/api/v2/leads/{lead['id']}/convert/deal", json={"stage_id": 3})).json()["data"]
    status_path = f"/api/v2/leads/{lead['id']}/convert/status/{job['conversion_id']}"
    assert valid(client.get(status_path)).json()["data"] == {"conversion_id": job["conversion_id"],
                                                             "status": "running"}
    box.clock.advance(5)
    done = valid(client.get(status_path)).json()["data"]
    assert done["status"] == "completed"
    deal = valid(client.get(f"/api/v2/deals/{done['deal_id']}", params={"include_fields": "source_lead_id"}))
    data = deal.json()["data"]
    assert data["source_lead_id"] == lead["id"] and data["custom_fields"][HUB_ID] == "hub-7"
    assert data["stage_id"] == 3 and data["status"] == "open"
    assert client.get(f"/v1/leads/{lead['id']}").status_code == 404
    assert client.post(f"/api/v2/leads/{lead['id']}/convert/deal", json={}).status_code == 404
    _, other = person_with_lead(client, "Grace Hopper")
    extra = client.post(f"/api/v2/leads/{other['id']}/convert/deal", json={"title": "no"})
    assert extra.status_code == 400 and "Unrecognized key(s) in object: 'title'" in extra.json()["error"]


def test_search_finds_a_hub_id_in_custom_fields_exactly(make):
    box, client = make()
    box.seed(50, seed=2)
    person, lead = person_with_lead(client, **{HUB_ID: "4f2a9c"})
    client.patch(f"/api/v2/persons/{person['id']}", json={"custom_fields": {PERSON_HUB_ID: "4f2a9c"}})
    found = valid(client.get("/api/v2/itemSearch", params={
        "term": "4F2A9C", "item_types": "lead,deal,person", "fields": "custom_fields", "exact_match": "true"}))
    items = {(h["item"]["type"], h["item"]["id"]) for h in found.json()["data"]["items"]}
    assert items == {("lead", lead["id"]), ("person", person["id"])}
    partial = valid(client.get("/api/v2/itemSearch", params={"term": "4f2a", "fields": "custom_fields",
                                                             "exact_match": "true"}))
    assert partial.json()["data"]["items"] == []
    names = valid(client.get("/api/v2/organizations/search", params={"term": "gmbh", "fields": "name"}))
    assert all("gmbh" in h["item"]["name"].lower() for h in names.json()["data"]["items"])
    assert client.get("/api/v2/itemSearch", params={"term": "x"}).status_code == 400  # 2 characters at least
    assert client.get("/api/v2/itemSearch", params={"term": "xy", "limit": 101}).status_code == 400


# -- auth and limits ----------------------------------------------------------------------------------

def test_a_missing_or_wrong_token_is_401_unauthorized_access(make):
    _, client = make()
    for headers in ({}, {"x-api-token": "nope"}):
        resp = client.get("/v1/leads", headers={"x-api-token": ""} | headers)
        assert resp.status_code == 401
        assert resp.json()["error"] == "unauthorized access" and resp.json()["errorCode"] == 401
        assert [e for e in spec_errors(resp) if not e.startswith("request")] == []


def test_the_burst_window_answers_429_with_pipedrives_headers_then_lets_through(make):
    box, client = make(rate=3, search_rate=2)
    answers = [client.get("/v1/leadLabels") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert all(a.headers["x-ratelimit-limit"] == "3" for a in answers)
    assert answers[0].headers["x-ratelimit-reset"] == "2" and answers[3].headers["retry-after"] in ("1", "2")
    assert answers[3].json()["success"] is False and answers[3].json()["errorCode"] == 429
    assert [e for e in spec_errors(answers[3]) if not e.startswith("request")] == []
    box.clock.advance(2)
    searches = [client.get("/api/v2/itemSearch", params={"term": "ab"}) for _ in range(3)]
    assert [s.status_code for s in searches] == [200, 200, 429]  # the search window: its own, smaller
    assert searches[0].headers["x-ratelimit-limit"] == "2"
    box.clock.advance(2)
    assert client.get("/v1/leadLabels").status_code == 200


def test_the_daily_token_budget_is_charged_per_operation_and_resets_the_next_day(make):
    box, client = make(daily=60)
    box.clock.freeze(T0)
    first = client.get("/v1/leads")  # 20 tokens
    assert first.headers["x-daily-ratelimit-token-limit"] == "60"
    assert first.headers["x-daily-ratelimit-token-remaining"] == "40"
    assert client.get("/api/v2/persons").headers["x-daily-ratelimit-token-remaining"] == "30"  # 10
    assert client.get("/v1/leads/archived").status_code == 429  # 40 > 30: refused, not charged
    over = client.get("/v1/leads/archived")
    assert over.json()["error"] == "daily request budget exceeded"
    assert int(over.headers["retry-after"]) == 12 * 3600  # until midnight
    assert client.get("/v1/leads").headers["x-daily-ratelimit-token-remaining"] == "10"
    box.clock.advance(12 * 3600)
    assert client.get("/v1/leads").headers["x-daily-ratelimit-token-remaining"] == "40"


# -- seeding ------------------------------------------------------------------------------------------

def test_seeded_leads_are_deterministic_and_hold_every_status_the_way_a_sales_team_would(make):
    box, _ = make()
    ids = box.seed(400, seed=8)
    again, _ = make()
    assert again.seed(400, seed=8) == ids and len(set(box.remote_ids())) == 400
    statuses = Counter(box.remote_get(i)["status"] for i in ids)
    assert set(statuses) == {"Lead", "MQL", "SAL", "SQL", "Opportunity", "Negotiation", "Closed Won", "Closed Lost",
                             "Nurture"}
    leads = [ld for ld in box.state.leads.values() if not ld["deleted"]]
    labels = {box.state.labels[i]["name"] for ld in leads for i in ld["label_ids"]}
    assert labels <= set(LABEL_STATUS) and any(not ld["label_ids"] for ld in leads)
    assert any(ld["is_archived"] for ld in leads)  # some lost leads are archived, others are lost deals
    assert any(d["status"] == "lost" and d["lost_reason"] for d in box.state.deals.values())
    emails = [e["value"] for p in box.state.persons.values() for e in p["emails"]]
    assert all("@" in e and not e.endswith("@") for e in emails)

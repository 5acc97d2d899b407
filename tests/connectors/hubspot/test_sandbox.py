"""The HubSpot sandbox, driven over HTTP with httpx and with the official hubspot-api-client, and its
requests and answers checked against HubSpot's own OpenAPI specs.

Spec quirks, each handled openly here rather than skipped:

* Error answers are declared with media type ``*/*``; openapi-core has no deserializer for a
  wildcard, so JSON is registered for it (HubSpot sends ``application/json``).
* ``properties`` values are declared ``type: string``, but HubSpot answers ``null`` for a
  requested property that has no value; :func:`contacts_spec` marks them nullable.
* ``PublicObjectSearchRequest.sorts`` is declared as a list of strings, yet HubSpot documents (and
  the connector sends) ``{"propertyName": …, "direction": …}`` objects; both forms are allowed.
* HubSpot's 429 body (``errorType``, ``policyName``) has no ``category``, which the ``Error``
  schema requires; the 429 tests assert that this is the *only* difference from the spec.
* 204 answers are declared with ``content: {}``, which openapi-core reads as "a body is
  required"; for a 204 we check instead that the spec declares no media type and the body is empty.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import hubspot
import pytest
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchResponseSimplePublicObject,
    BatchResponseSimplePublicObjectWithErrors,
    BatchResponseSimplePublicUpsertObjectWithErrors,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.contacts.exceptions import NotFoundException, UnauthorizedException

from connectors.hubspot.sandbox import STATUS_MAP, HubSpotSandbox
from hub.testing.serve import serve

SPECS = Path(__file__).resolve().parents[3] / "../shared/specs/hubspot"
BASE = "/crm/v3/objects/contacts"
SEARCH = BASE + "/search"
AUTH = {"Authorization": "Bearer sandbox-token"}
T0 = datetime(2026, 5, 4, 12, 0, tzinfo=timezone.utc)


# -- the spec, loaded once per module -------------------------------------------------------

def _spec(name: str, patch=None):
    from openapi_core import Config, OpenAPI

    if not SPECS.is_dir():
        pytest.skip(f"HubSpot OpenAPI specs not found at {SPECS.resolve()} (expected the shared/specs folder "
                    f"next to the repository)")
    data = json.loads((SPECS / name).read_text())
    if patch:
        patch(data)
    return OpenAPI.from_dict(data, config=Config(extra_media_type_deserializers={"*/*": lambda v, **_: json.loads(v)}))


def _contacts_quirks(data: dict) -> None:
    schemas = data["components"]["schemas"]
    for name in ("SimplePublicObject", "SimplePublicObjectWithAssociations", "SimplePublicUpsertObject"):
        schemas[name]["properties"]["properties"]["additionalProperties"]["nullable"] = True
    schemas["PublicObjectSearchRequest"]["properties"]["sorts"]["items"] = {"oneOf": [
        {"type": "string"},
        {"type": "object", "required": ["propertyName"], "properties": {
            "propertyName": {"type": "string"}, "direction": {"type": "string", "enum": ["ASCENDING", "DESCENDING"]}}}]}


@pytest.fixture(scope="module")
def contacts_spec():
    return _spec("contacts.json", _contacts_quirks)


@pytest.fixture(scope="module")
def owners_spec():
    return _spec("crmOwners.json")


@pytest.fixture(scope="module")
def properties_spec():
    return _spec("properties.json")


def spec_errors(api, resp: httpx.Response, request: bool = True) -> list[str]:
    """Every way ``resp`` (and, if ``request``, its request) departs from the spec; [] when all validate."""
    from openapi_core.testing import MockRequest, MockResponse

    req = resp.request
    mreq = MockRequest("https://api.hubapi.com", req.method, req.url.path, args=list(req.url.params.multi_items()),
                       headers=dict(req.headers), data=req.content or None,
                       content_type=req.headers.get("content-type", "application/json"))
    mresp = MockResponse(resp.content, resp.status_code, dict(resp.headers), resp.headers.get("content-type", ""))
    checks = [lambda: api.validate_request(mreq)] if request else []
    if resp.status_code == 204:
        declared = (api.spec / "paths" / req.url.path / req.method.lower() / "responses" / "204").read_value()
        assert declared.get("content") == {} and resp.content == b""
    else:
        checks.append(lambda: api.validate_response(mreq, mresp))
    problems = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # openapi-core cannot check oauth2 schemes and says so
        for check in checks:
            try:
                check()
            except Exception as exc:
                cause = exc.__cause__
                problems += [e.message for e in getattr(cause, "schema_errors", ())] or [f"{type(exc).__name__}: {exc}"]
    return problems


def valid(api, resp: httpx.Response, request: bool = True) -> httpx.Response:
    assert spec_errors(api, resp, request) == []
    return resp


# -- one server per module; each test gets a fresh sandbox behind it --------------------------

class Switch:
    target: HubSpotSandbox | None = None

    async def __call__(self, scope, receive, send):
        await self.target.app(scope, receive, send)


@pytest.fixture(scope="module")
def server():
    switch = Switch()
    with serve(switch) as served:
        yield switch, served.url


@pytest.fixture
def make(server):
    switch, url = server
    clients = []

    def make(**kw) -> tuple[HubSpotSandbox, httpx.Client]:
        box = HubSpotSandbox(**{"rate": None, "search_rate": None, **kw})
        box.url = url
        switch.target = box
        clients.append(httpx.Client(base_url=url, headers=AUTH, timeout=10))
        return box, clients[-1]

    yield make
    for c in clients:
        c.close()


def search_body(**kw) -> dict:
    """A search request as the spec wants it: every field present."""
    return {"filterGroups": [], "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "limit": 100, "after": "0", "properties": ["email", "lifecyclestage"], **kw}


def since(ms: int, op: str = "GTE") -> list[dict]:
    return [{"filters": [{"propertyName": "lastmodifieddate", "operator": op, "value": str(ms)}]}]


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def pull_all(client, spec=None, **kw) -> tuple[list[dict], int]:
    """Every page of one search; returns the results and the number of calls."""
    out, after, calls = [], "0", 0
    while True:
        resp = client.post(SEARCH, json=search_body(after=after, **kw))
        calls += 1
        if spec is not None:
            valid(spec, resp)
        data = resp.json()
        out += data["results"]
        if "paging" not in data:
            return out, calls
        after = data["paging"]["next"]["after"]


# -- search ------------------------------------------------------------------------------------

def test_search_pages_to_the_end_in_order_with_no_record_twice(make, contacts_spec):
    box, client = make()
    box.seed(1234, seed=4)
    results, calls = pull_all(client, contacts_spec, limit=200, filterGroups=since(0))
    ids = [r["id"] for r in results]
    assert len(ids) == len(set(ids)) == 1234 == len(box.contacts) and calls == 7
    keys = [(ms(r["properties"]["lastmodifieddate"]), int(r["id"])) for r in results]
    assert keys == sorted(keys)
    first = client.post(SEARCH, json=search_body(limit=200, filterGroups=since(0))).json()
    assert first["total"] == 1234 and first["paging"]["next"]["after"] == "200"
    assert "X-HubSpot-RateLimit-Max" not in client.post(SEARCH, json=search_body()).headers


def test_search_filters_match_a_brute_force_reading_of_the_state(make, contacts_spec):
    box, client = make()
    box.seed(600, seed=2)
    everyone = {cid: props for cid, props in box.contacts.items()}
    some = next(iter(everyone.values()))
    mid = sorted(ms(p["lastmodifieddate"]) for p in everyone.values())[300]
    domain = some["email"].split("@")[1]

    def ids(groups, **kw):
        results, _ = pull_all(client, contacts_spec, filterGroups=groups, limit=200, **kw)
        return sorted(int(r["id"]) for r in results)

    def expect(pred):
        return sorted(int(i) for i, p in everyone.items() if pred(p))

    f = lambda prop, op, **kw: {"propertyName": prop, "operator": op, **kw}
    assert ids([{"filters": [f("email", "EQ", value=some["email"].upper())]}]) == [int(some["hs_object_id"])]
    assert ids([{"filters": [f("lifecyclestage", "IN", values=["customer", "opportunity"])]}]) == \
        expect(lambda p: p.get("lifecyclestage") in ("customer", "opportunity"))
    assert ids([{"filters": [f("lifecyclestage", "NEQ", value="lead")]}]) == \
        expect(lambda p: p.get("lifecyclestage") != "lead")
    assert ids([{"filters": [f("phone", "NOT_HAS_PROPERTY")]}]) == expect(lambda p: "phone" not in p)
    assert ids([{"filters": [f("email", "CONTAINS_TOKEN", value=f"*@{domain}")]}]) == \
        expect(lambda p: p.get("email", "").endswith("@" + domain))
    assert ids([{"filters": [f("lastmodifieddate", "GT", value=str(mid))]}]) == \
        expect(lambda p: ms(p["lastmodifieddate"]) > mid)
    iso = datetime.fromtimestamp(mid / 1000, timezone.utc).isoformat()
    assert ids(since(mid)) == ids([{"filters": [f("lastmodifieddate", "GTE", value=iso)]}]) == \
        expect(lambda p: ms(p["lastmodifieddate"]) >= mid)
    assert ids([{"filters": [f("createdate", "BETWEEN", value="0", highValue=str(mid)),
                             f("hs_lead_status", "HAS_PROPERTY")]}]) == \
        expect(lambda p: ms(p["createdate"]) <= mid and "hs_lead_status" in p)
    assert ids([{"filters": [f("lifecyclestage", "EQ", value="customer")]},  # OR of groups
                {"filters": [f("lifecyclestage", "EQ", value="other")]}]) == \
        expect(lambda p: p.get("lifecyclestage") in ("customer", "other"))


def test_search_sorts_one_way_or_the_other_with_ties_by_id(make, contacts_spec):
    box, client = make()
    box.clock.freeze(T0)
    for i in range(5):
        box.add_contact({"email": f"t{i}@tie.example", "lastname": f"T{i}"})
    box.clock.advance(1)
    box.add_contact({"email": "late@tie.example"})
    asc, _ = pull_all(client, contacts_spec, sorts=["lastmodifieddate"])  # legacy string form
    desc, _ = pull_all(client, contacts_spec, sorts=[{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}])
    assert [r["id"] for r in asc] == ["1", "2", "3", "4", "5", "6"]
    assert [r["id"] for r in desc] == ["6", "1", "2", "3", "4", "5"]
    assert [r["id"] for r in pull_all(client, sorts=["-createdate"])[0]] == ["6", "1", "2", "3", "4", "5"]


@pytest.mark.parametrize("change, message", [
    ({"limit": 201}, "between 0 and 200"),
    ({"filterGroups": [{"filters": []}] * 6}, "at most 5 filterGroups"),
    ({"filterGroups": [{"filters": since(0)[0]["filters"] * 7}]}, "6 filters per group"),
    ({"filterGroups": [{"filters": since(0)[0]["filters"] * 5}] * 4}, "18 filters in total"),
    ({"sorts": ["lastmodifieddate", "createdate"]}, "one sort"),
    ({"filterGroups": [{"filters": [{"propertyName": "nope", "operator": "EQ", "value": "1"}]}]}, "nope"),
    ({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "LIKE", "value": "1"}]}]}, "LIKE"),
    ({"filterGroups": since(0, "BETWEEN")}, "lastmodifieddate"),
    ({"filterGroups": [{"filters": [{"propertyName": "createdate", "operator": "GT", "value": "soon"}]}]}, "soon"),
])
def test_bad_searches_are_refused_with_a_validation_error(make, change, message):
    _, client = make()
    resp = client.post(SEARCH, json=search_body(**change))
    assert resp.status_code == 400
    body = resp.json()
    assert body["category"] == "VALIDATION_ERROR" and message in body["message"]
    uuid.UUID(body["correlationId"])


def test_search_cannot_page_past_ten_thousand(make, contacts_spec):
    box, client = make()
    box.seed(10_050, seed=1)
    near = valid(contacts_spec, client.post(SEARCH, json=search_body(limit=200, after="9800")))
    assert near.json()["total"] == 10_050
    assert near.json()["paging"]["next"]["after"] == "10000"  # HubSpot hands out the cursor it then refuses
    for after, limit in (("10000", 200), ("9900", 200), ("10000", 1)):
        resp = valid(contacts_spec, client.post(SEARCH, json=search_body(limit=limit, after=after)))
        assert resp.status_code == 400
        assert resp.json()["category"] == "VALIDATION_ERROR" and "10000" in resp.json()["message"]


def test_windowed_paging_over_fifty_thousand_uses_the_index_not_scans(make, monkeypatch):
    box, client = make()
    box.seed(50_000, seed=9)

    def no_scan(*a, **kw):
        raise AssertionError("a lastmodifieddate window fell back to a full scan")

    monkeypatch.setattr(HubSpotSandbox, "_scan", no_scan)
    seen, calls, cursor = {}, 0, 0
    while True:  # the connector's pattern: restart from the last timestamp before the 10,000 cap
        after, restart = "0", False
        while True:
            resp = client.post(SEARCH, json=search_body(limit=200, after=after, filterGroups=since(cursor)))
            calls += 1
            data = resp.json()
            for r in data["results"]:
                seen[r["id"]] = r
            if "paging" not in data:
                break
            after = data["paging"]["next"]["after"]
            if int(after) >= 10_000:
                cursor, restart = ms(data["results"][-1]["properties"]["lastmodifieddate"]), True
                break
        if not restart:
            break
    assert len(seen) == 50_000
    assert calls <= 50_000 // 200 + 10  # 250 pages plus a few overlapping restarts


def test_search_sees_writes_only_after_the_indexing_lag(make):
    box, client = make(lag=5)
    box.clock.freeze(T0)
    old = box.add_contact({"email": "old@lag.example", "lastname": "Old"}, modified=T0 - timedelta(hours=1))
    new = box.add_contact({"email": "new@lag.example", "lastname": "New"})
    box.update_contact(old, {"lastname": "Renamed"})

    def found():
        return {r["id"]: r["properties"]["lastname"]
                for r in client.post(SEARCH, json=search_body(properties=["lastname"])).json()["results"]}

    assert found() == {old: "Old"}  # the previous version of old, nothing of new
    assert client.get(f"{BASE}/{new}").status_code == 200  # reads by id are immediate
    window = since(int(T0.timestamp() * 1000))
    assert client.post(SEARCH, json=search_body(filterGroups=window)).json()["total"] == 0
    box.clock.advance(4.9)
    assert found() == {old: "Old"}
    box.clock.advance(0.1)
    assert found() == {old: "Renamed", new: "New"}
    box.archive_contact(new)
    assert new in found()  # archiving takes the same lag to leave the index
    box.clock.advance(5)
    assert found() == {old: "Renamed"}


# -- list, get, create, update, archive ----------------------------------------------------------

def test_list_pages_with_a_cursor_and_lists_archived_ones_apart(make, contacts_spec):
    box, client = make()
    box.seed(250, seed=3)
    box.archive_contact("7")
    ids, after, calls = [], None, 0
    while True:
        resp = valid(contacts_spec, client.get(BASE, params={"limit": 100, **({"after": after} if after else {}),
                                                              "properties": ["email", "phone"]}))
        calls += 1
        ids += [r["id"] for r in resp.json()["results"]]
        if "paging" not in resp.json():
            break
        after = resp.json()["paging"]["next"]["after"]
    assert calls == 3 and len(ids) == len(set(ids)) == 249 and "7" not in ids
    default = valid(contacts_spec, client.get(BASE)).json()
    assert len(default["results"]) == 10
    assert set(default["results"][0]["properties"]) == {"createdate", "email", "firstname", "hs_object_id",
                                                        "lastmodifieddate", "lastname"}
    gone = valid(contacts_spec, client.get(BASE, params={"archived": "true"})).json()["results"]
    assert [(r["id"], r["archived"]) for r in gone] == [("7", True)] and gone[0]["archivedAt"]
    assert client.get(BASE, params={"limit": 101}).status_code == 400


def test_create_read_update_and_archive_one_contact(make, contacts_spec):
    box, client = make()
    box.clock.freeze(T0)
    created = valid(contacts_spec, client.post(BASE, json={"properties": {"email": "Ann@Example.COM", "firstname": "Ann"},
                                                           "associations": []}))
    assert created.status_code == 201
    cid = created.json()["id"]
    assert created.json()["properties"]["email"] == "ann@example.com"  # stored lowercase
    assert created.json()["createdAt"] == created.json()["updatedAt"] == "2026-05-04T12:00:00.000Z"
    got = valid(contacts_spec, client.get(f"{BASE}/ann@example.com", params={"idProperty": "email",
                                                                              "properties": "firstname,phone"}))
    assert got.json()["properties"] == {"firstname": "Ann", "phone": None, "createdate": "2026-05-04T12:00:00.000Z",
                                        "hs_object_id": cid, "lastmodifieddate": "2026-05-04T12:00:00.000Z"}
    box.clock.advance(2.5)
    patched = valid(contacts_spec, client.patch(f"{BASE}/{cid}", json={"properties": {"phone": "+49 30 1", "firstname": ""}}))
    assert patched.json()["updatedAt"] == "2026-05-04T12:00:02.500Z"
    assert box.contacts[cid].get("firstname") is None and box.contacts[cid]["phone"] == "+49 30 1"
    assert client.delete(f"{BASE}/{cid}").status_code == 204
    missing = valid(contacts_spec, client.get(f"{BASE}/{cid}"))
    assert missing.status_code == 404 and missing.json()["category"] == "OBJECT_NOT_FOUND"
    archived = valid(contacts_spec, client.get(f"{BASE}/{cid}", params={"archived": "true"}))
    assert archived.json()["archived"] is True and cid not in box.contacts


def test_property_values_are_validated_like_hubspot_does(make, contacts_spec):
    box, client = make()

    def create(props):
        return valid(contacts_spec, client.post(BASE, json={"properties": props, "associations": []}))

    cases = {"INVALID_EMAIL": {"email": "john.doe@"}, "PROPERTY_DOESNT_EXIST": {"shoe_size": "44"},
             "INVALID_OPTION": {"lifecyclestage": "zombie"}, "INVALID_DECIMAL": {"amount": "lots"},
             "INVALID_DATE": {"closedate": "2026-03-31T10:00:00Z"}}
    for code, props in cases.items():
        resp = create(props)
        assert resp.status_code == 400, code
        assert resp.json()["category"] == "VALIDATION_ERROR"
        assert resp.json()["message"].startswith("Property values were not valid: ") and code in resp.json()["message"]
    assert create({"hubspot_owner_id": "999"}).status_code == 400
    ok = create({"email": "x@y.io", "closedate": "2026-03-31", "amount": "1200.50", "hs_deal_probability": "0.4",
                 "hubspot_owner_id": box.owners[0]["id"], "lifecyclestage": "opportunity"})
    assert ok.status_code == 201
    assert {k: ok.json()["properties"][k] for k in ("closedate", "amount", "hs_deal_probability")} == \
        {"closedate": "2026-03-31", "amount": "1200.50", "hs_deal_probability": "0.4"}
    bad_json = client.post(BASE, content=b"{oops", headers={"content-type": "application/json"})
    assert valid(contacts_spec, bad_json, request=False).status_code == 400
    assert bad_json.json()["message"].startswith("Invalid input JSON")


def test_email_and_the_hub_id_are_unique(make, contacts_spec):
    box, client = make()
    first = box.add_contact({"email": "dup@acme.example", "leadhub_id": "hub-1"})
    other = box.add_contact({"email": "other@acme.example"})
    for props in ({"email": "DUP@acme.example"}, {"email": "new@acme.example", "leadhub_id": "hub-1"}):
        resp = valid(contacts_spec, client.post(BASE, json={"properties": props, "associations": []}))
        assert resp.status_code == 409
        assert resp.json()["message"] == f"Contact already exists. Existing ID: {first}"
        assert resp.json()["category"] == "CONFLICT"
    clash = valid(contacts_spec, client.patch(f"{BASE}/{other}", json={"properties": {"email": "dup@acme.example"}}))
    assert clash.status_code == 409
    assert client.patch(f"{BASE}/{first}", json={"properties": {"email": "dup@acme.example"}}).status_code == 200
    box.archive_contact(first)  # an archived contact frees its email
    assert client.post(BASE, json={"properties": {"email": "dup@acme.example"}}).status_code == 201
    with pytest.raises(ValueError, match="already exists"):
        box.add_contact({"email": "other@acme.example"})


# -- batches ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["read", "create", "update", "upsert", "archive"])
def test_batches_take_at_most_a_hundred_inputs(make, kind):
    box, client = make()
    item = {"read": {"id": "1"}, "archive": {"id": "1"}, "create": {"properties": {}},
            "update": {"id": "1", "properties": {}}, "upsert": {"id": "x", "idProperty": "leadhub_id", "properties": {}}}
    body = {"inputs": [item[kind]] * 101, "properties": [], "propertiesWithHistory": []}
    resp = client.post(f"{BASE}/batch/{kind}", json=body)
    assert resp.status_code == 400
    assert resp.json()["category"] == "VALIDATION_ERROR" and "100" in resp.json()["message"]
    assert box.requests[-1] == ("POST", f"{BASE}/batch/{kind}", 400)


def test_batch_update_applies_the_valid_inputs_and_answers_207_naming_the_bad_ones(make, contacts_spec):
    box, client = make()
    box.clock.freeze(T0)
    a, b, c = (box.add_contact({"email": f"{n}@acme.example"}) for n in "abc")
    box.clock.advance(60)
    resp = valid(contacts_spec, client.post(f"{BASE}/batch/update", json={"inputs": [
        {"id": a, "properties": {"firstname": "Anna"}},
        {"id": b, "properties": {"email": "broken@"}},
        {"id": "999999", "properties": {"firstname": "Nobody"}},
        {"id": c, "properties": {"favourite_colour": "red"}},
        {"id": "c@acme.example", "idProperty": "email", "properties": {"lastname": "Cee"}}]}))
    assert resp.status_code == 207
    body = resp.json()
    assert body["status"] == "COMPLETE" and body["numErrors"] == 3
    assert sorted(r["id"] for r in body["results"]) == sorted([a, c])
    errors = {e["context"]["ids"][0]: e for e in body["errors"]}
    assert errors[b]["category"] == "VALIDATION_ERROR" and "INVALID_EMAIL" in errors[b]["message"]
    assert errors["999999"]["category"] == "OBJECT_NOT_FOUND"
    assert "PROPERTY_DOESNT_EXIST" in errors[c]["message"]
    assert box.contacts[a]["firstname"] == "Anna" and box.contacts[c]["lastname"] == "Cee"
    assert box.contacts[b]["email"] == "b@acme.example"
    stamps = {r["updatedAt"] for r in body["results"]}
    assert stamps == {"2026-05-04T12:01:00.000Z"}  # one timestamp for the whole batch
    all_bad = valid(contacts_spec, client.post(f"{BASE}/batch/update", json={"inputs": [
        {"id": b, "properties": {"email": "broken@"}}]}))
    assert all_bad.status_code == 400 and "INVALID_EMAIL" in all_bad.json()["message"]
    dupes = client.post(f"{BASE}/batch/update", json={"inputs": [{"id": a, "properties": {}}] * 2})
    assert dupes.status_code == 400 and "Duplicate IDs" in dupes.json()["message"]


def test_batch_create_reports_conflicts_by_the_hub_id(make, contacts_spec):
    box, client = make()
    existing = box.add_contact({"email": "taken@acme.example", "leadhub_id": "h0"})
    resp = valid(contacts_spec, client.post(f"{BASE}/batch/create", json={"inputs": [
        {"properties": {"email": "fresh@acme.example", "leadhub_id": "h1"}, "associations": []},
        {"properties": {"email": "taken@acme.example", "leadhub_id": "h2"}, "associations": []},
        {"properties": {"email": "nope@", "leadhub_id": "h3"}, "associations": [], "objectWriteTraceId": "t3"}]}))
    assert resp.status_code == 207
    errors = {e["context"]["leadhub_id"][0]: e for e in resp.json()["errors"]}
    assert errors["h2"]["category"] == "CONFLICT"
    assert errors["h2"]["message"] == f"Contact already exists. Existing ID: {existing}"
    assert errors["h3"]["context"]["objectWriteTraceId"] == ["t3"]
    assert [r["properties"]["leadhub_id"] for r in resp.json()["results"]] == ["h1"]
    ok = valid(contacts_spec, client.post(f"{BASE}/batch/create", json={"inputs": [
        {"properties": {"email": f"n{i}@acme.example"}, "associations": []} for i in range(100)]}))
    assert ok.status_code == 201 and len({r["updatedAt"] for r in ok.json()["results"]}) == 1
    conflict = valid(contacts_spec, client.post(f"{BASE}/batch/create", json={"inputs": [
        {"properties": {"email": "taken@acme.example"}, "associations": []}]}))
    assert conflict.status_code == 409


def test_batch_upsert_creates_or_updates_by_a_unique_property(make, contacts_spec):
    box, client = make()
    known = box.add_contact({"email": "known@acme.example", "leadhub_id": "h-known", "firstname": "K"})
    box.add_contact({"email": "taken@acme.example"})
    resp = valid(contacts_spec, client.post(f"{BASE}/batch/upsert", json={"inputs": [
        {"id": "h-known", "idProperty": "leadhub_id", "properties": {"firstname": "Kay"}},
        {"id": "h-new", "idProperty": "leadhub_id", "properties": {"email": "new@acme.example"}},
        {"id": "h-bad", "idProperty": "leadhub_id", "properties": {"email": "taken@acme.example"}},
        {"id": "NEW2@acme.example", "idProperty": "email", "properties": {"lastname": "Two"}}]}))
    assert resp.status_code == 207
    results = {r["properties"].get("leadhub_id") or r["properties"]["email"]: r for r in resp.json()["results"]}
    assert results["h-known"]["new"] is False and results["h-known"]["id"] == known
    assert results["h-new"]["new"] is True and results["new2@acme.example"]["new"] is True
    [error] = resp.json()["errors"]
    assert error["context"] == {"leadhub_id": ["h-bad"]} and error["category"] == "CONFLICT"
    assert box.contacts[known]["firstname"] == "Kay"
    again = valid(contacts_spec, client.post(f"{BASE}/batch/upsert", json={"inputs": [
        {"id": "h-new", "idProperty": "leadhub_id", "properties": {"lastname": "Again"}}]}))
    assert again.status_code == 200 and again.json()["results"][0]["new"] is False


def test_batch_read_and_archive(make, contacts_spec):
    box, client = make()
    a, b = box.add_contact({"email": "a@r.example"}), box.add_contact({"email": "b@r.example"})
    body = {"inputs": [{"id": a}, {"id": b}, {"id": "4242"}], "properties": ["email"], "propertiesWithHistory": []}
    read = valid(contacts_spec, client.post(f"{BASE}/batch/read", json=body))
    assert read.status_code == 207 and read.json()["errors"][0]["context"] == {"ids": ["4242"]}
    assert sorted(r["properties"]["email"] for r in read.json()["results"]) == ["a@r.example", "b@r.example"]
    assert valid(contacts_spec, client.post(f"{BASE}/batch/archive", json={"inputs": [{"id": a}]})).status_code == 204
    assert list(box.contacts) == [b]


# -- owners and properties -------------------------------------------------------------------------

def test_owners_page_and_filter_by_email(make, owners_spec):
    box, client = make()
    page = valid(owners_spec, client.get("/crm/v3/owners", params={"limit": 3})).json()
    assert len(page["results"]) == 3 and page["paging"]["next"]["after"] == "3"
    rest = valid(owners_spec, client.get("/crm/v3/owners", params={"after": "3"})).json()
    assert client.get("/crm/v3/owners/", params={"after": "3"}).json() == rest  # the official client's path
    assert "paging" not in rest and len(page["results"]) + len(rest["results"]) == len(box.owners)
    email = box.owners[4]["email"]
    found = valid(owners_spec, client.get("/crm/v3/owners", params={"email": email})).json()["results"]
    assert [o["id"] for o in found] == [box.owners[4]["id"]]


def test_contact_properties_describe_the_status_fields_and_the_unique_hub_id(make, properties_spec):
    _, client = make()
    props = {p["name"]: p for p in valid(properties_spec, client.get("/crm/v3/properties/contacts")).json()["results"]}
    stages = {o["value"] for o in props["lifecyclestage"]["options"]}
    statuses = {o["value"] for o in props["hs_lead_status"]["options"]}
    assert {s for s, _ in STATUS_MAP.values()} <= stages and {s for _, s in STATUS_MAP.values() if s} <= statuses
    assert props["leadhub_id"]["hasUniqueValue"] is True and props["email"]["hasUniqueValue"] is False
    assert props["lastmodifieddate"]["modificationMetadata"]["readOnlyValue"] is True
    one = valid(properties_spec, client.get("/crm/v3/properties/contacts/leadhub_id"))
    assert one.json()["name"] == "leadhub_id"


def test_seeded_contacts_carry_the_canonical_mapping(make):
    box, _ = make()
    box.seed(800, seed=5)
    contacts = list(box.contacts.values())
    owner_ids = {o["id"] for o in box.owners}
    pairs = {(stage, lead_status) for stage, lead_status in STATUS_MAP.values()}
    emails = [c["email"] for c in contacts if "email" in c]
    assert len(contacts) == 800 and len(emails) == len(set(emails))
    assert all(e == e.lower() and "@" in e and not e.endswith("@") for e in emails)
    for c in contacts:
        assert (c["lifecyclestage"], c.get("hs_lead_status", "")) in pairs
        assert c.get("hubspot_owner_id") is None or c["hubspot_owner_id"] in owner_ids
        if c["lifecyclestage"] in ("opportunity", "customer"):
            assert float(c["amount"]) >= 1000 and c["closedate"][4] == "-"
    assert 0.015 < sum("email" not in c for c in contacts) / 800 < 0.08  # phone-only, malformed, duplicates


# -- auth and limits ---------------------------------------------------------------------------------

def test_a_missing_or_wrong_token_is_401(make, contacts_spec):
    _, client = make()
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic c2FuZGJveC10b2tlbg=="}):
        resp = httpx.get(str(client.base_url) + BASE, headers=headers)
        assert spec_errors(contacts_spec, resp) == [] or headers == {}  # no header: the request itself is off-spec
        assert resp.status_code == 401
        assert resp.json()["category"] == "INVALID_AUTHENTICATION"
        assert resp.json()["message"].startswith("Authentication credentials not found.")


def test_the_ten_second_window_answers_429_with_hubspots_headers_and_body(make, contacts_spec):
    box, client = make(rate=3, daily=1000)
    answers = [client.get(BASE) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-HubSpot-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    for a in answers:
        assert a.headers["X-HubSpot-RateLimit-Max"] == "3"
        assert a.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        assert a.headers["X-HubSpot-RateLimit-Daily"] == "1000"
    assert answers[2].headers["X-HubSpot-RateLimit-Daily-Remaining"] == "997"
    limited = answers[3]
    assert "retry-after" not in limited.headers  # HubSpot sends none
    body = limited.json()
    assert {k: body[k] for k in ("status", "message", "errorType", "policyName")} == {
        "status": "error", "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}
    uuid.UUID(body["correlationId"])
    assert spec_errors(contacts_spec, limited) == ["'category' is a required property"]  # the spec's quirk
    box.clock.advance(10)
    assert client.get(BASE).status_code == 200


def test_search_has_its_own_per_second_limit_no_headers_and_counts_in_the_window(make, contacts_spec):
    box, client = make(rate=4, search_rate=2)
    answers = [client.post(SEARCH, json=search_body()) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert all(not any(h.lower().startswith("x-hubspot-ratelimit") for h in a.headers) for a in answers)
    assert answers[2].json()["policyName"] == "SECONDLY"
    assert answers[2].json()["message"] == "You have reached your secondly limit."
    assert spec_errors(contacts_spec, answers[2]) == ["'category' is a required property"]
    box.clock.advance(1)
    assert client.get(BASE).headers["X-HubSpot-RateLimit-Remaining"] == "1"  # two searches counted
    assert client.get(BASE).status_code == 200 and client.get(BASE).status_code == 429


def test_the_daily_budget_runs_out_and_resets_the_next_day(make):
    box, client = make(daily=2)
    box.clock.freeze(T0)
    assert [client.get(BASE).status_code for _ in range(3)] == [200, 200, 429]
    over = client.get(BASE)
    assert over.json()["policyName"] == "DAILY" and over.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    box.clock.advance(86_400)
    assert client.get(BASE).status_code == 200


def test_injected_faults_look_like_hubspot_answers(make):
    box, client = make()
    box.faults.add(status=500, count=2, path_contains="/search")
    box.faults.add(status=429, count=1, path_contains="/batch/update")
    assert [client.post(SEARCH, json=search_body()).status_code for _ in range(3)] == [500, 500, 200]
    limited = client.post(f"{BASE}/batch/update", json={"inputs": []})
    assert limited.status_code == 429 and limited.json()["errorType"] == "RATE_LIMIT"
    assert client.get("/crm/v3/nothing/here").json()["status"] == "error"
    assert box.calls[f"POST {SEARCH}"] == 3


# -- the official client, unmodified -------------------------------------------------------------

def test_the_official_client_searches_pages_and_batches(make):
    box, _ = make()
    box.seed(120, seed=8)
    client = hubspot.Client(access_token=box.token, host=box.url)
    contacts = client.crm.contacts
    request = PublicObjectSearchRequest(
        filter_groups=[FilterGroup(filters=[Filter(property_name="lastmodifieddate", operator="GTE", value="0")])],
        sorts=[{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}], limit=50,
        properties=["email", "lifecyclestage"], after="0")
    seen = []
    while True:
        page = contacts.search_api.do_search(public_object_search_request=request)
        seen += [r.id for r in page.results]
        if page.paging is None:
            break
        request.after = page.paging.next.after
    assert page.total == 120 and len(seen) == len(set(seen)) == 120

    first, second = seen[:2]
    ok = contacts.batch_api.update(batch_input_simple_public_object_batch_input=BatchInputSimplePublicObjectBatchInput(
        inputs=[SimplePublicObjectBatchInput(id=first, properties={"firstname": "Fine"})]))
    assert isinstance(ok, BatchResponseSimplePublicObject) and ok.results[0].properties["firstname"] == "Fine"
    partial = contacts.batch_api.update(batch_input_simple_public_object_batch_input=BatchInputSimplePublicObjectBatchInput(
        inputs=[SimplePublicObjectBatchInput(id=first, properties={"lastname": "Ok"}),
                SimplePublicObjectBatchInput(id=second, properties={"email": "not-an-email"})]))
    assert isinstance(partial, BatchResponseSimplePublicObjectWithErrors)  # a 207 is a success to the client
    assert partial.num_errors == 1 and partial.errors[0].context == {"ids": [second]}
    upserted = contacts.batch_api.upsert(batch_input_simple_public_object_batch_input_upsert=(
        BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
            SimplePublicObjectBatchInputUpsert(id="hub-a", id_property="leadhub_id", properties={"firstname": "A"}),
            SimplePublicObjectBatchInputUpsert(id="hub-b", id_property="leadhub_id", properties={"email": "b@"})])))
    assert isinstance(upserted, BatchResponseSimplePublicUpsertObjectWithErrors)
    assert upserted.results[0].new is True and upserted.errors[0].context == {"leadhub_id": ["hub-b"]}

    created = contacts.basic_api.create(simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
        properties={"email": "solo@acme.example"}, associations=[]))
    with pytest.raises(ApiException) as conflict:
        contacts.basic_api.create(simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
            properties={"email": "SOLO@acme.example"}, associations=[]))
    assert conflict.value.status == 409 and created.id in json.loads(conflict.value.body)["message"]
    with pytest.raises(NotFoundException):
        contacts.basic_api.get_by_id("987654")
    assert len(contacts.basic_api.get_page(limit=5).results) == 5


def test_the_official_client_reads_owners_and_properties_and_surfaces_401_and_429(make):
    box, _ = make(rate=5)
    client = hubspot.Client(access_token=box.token, host=box.url)
    owners = client.crm.owners.owners_api.get_page(email=box.owners[0]["email"])
    assert [o.id for o in owners.results] == [box.owners[0]["id"]]
    names = {p.name for p in client.crm.properties.core_api.get_all(object_type="contacts").results}
    assert {"lifecyclestage", "hs_lead_status", "hubspot_owner_id", "leadhub_id"} <= names
    with pytest.raises(UnauthorizedException) as denied:
        hubspot.Client(access_token="wrong", host=box.url).crm.contacts.basic_api.get_page()
    assert denied.value.status == 401
    for _ in range(3):
        client.crm.contacts.basic_api.get_page()
    with pytest.raises(ApiException) as limited:
        client.crm.contacts.basic_api.get_page()
    assert limited.value.status == 429
    assert limited.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert json.loads(limited.value.body)["policyName"] == "TEN_SECONDLY_ROLLING"


def test_standalone_seeds_serves_prints_its_address_and_stops_on_sigterm():
    code = "from connectors.hubspot.sandbox import HubSpotSandbox; HubSpotSandbox.standalone(port=0, seed=3, n=40)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[3])
    try:
        line = proc.stdout.readline()
        url = line.split()[3]
        assert line.startswith("HubSpot sandbox on http://127.0.0.1:") and "token: sandbox-token" in line
        found = httpx.post(url + SEARCH, json=search_body(), headers=AUTH).json()
        assert found["total"] == 40
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    finally:
        proc.kill()
    assert proc.returncode == 0

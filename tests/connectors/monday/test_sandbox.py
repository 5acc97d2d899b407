"""The monday sandbox driven over HTTP with raw GraphQL, checked against monday's documented behaviour."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import httpx
import pytest

from connectors.monday.sandbox import MondaySandbox

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=timezone.utc)
PAGE = """query ($b: [ID!], $limit: Int!, $qp: ItemsQuery) { boards(ids: $b) {
  items_page(limit: $limit, query_params: $qp) { cursor items { id name updated_at } } } }"""
NEXT = "query ($c: String!, $limit: Int!) { next_items_page(cursor: $c, limit: $limit) { cursor items { id } } }"


@pytest.fixture
def box():
    sandbox = MondaySandbox(rate=None)
    with sandbox.serve() as served:
        sandbox.client = httpx.Client(base_url=served.url, headers={"Authorization": sandbox.token,
                                                                    "API-Version": "2025-10"})
        yield sandbox
        sandbox.client.close()


def gql(box, query, variables=None, **headers):
    r = box.client.post("/v2", json={"query": query, "variables": variables or {}}, headers=headers)
    return r, r.json()


def since(stamp: str) -> dict:
    return {"rules": [{"column_id": "__last_updated__", "compare_attribute": "UPDATED_AT", "operator":
                       "greater_than_or_equals", "compare_value": ["EXACT", stamp]}],
            "order_by": [{"column_id": "__last_updated__", "direction": "asc"}]}


def test_board_columns_are_discoverable_with_their_settings(box):
    _, body = gql(box, "query ($b: [ID!]) { boards(ids: $b) { name columns { id title type settings_str } } }",
                  {"b": [box.leads_board_id]})
    board = body["data"]["boards"][0]
    titles = {c["title"]: c for c in board["columns"]}
    assert board["name"] == "Leads" and {"Email", "Phone", "Status", "Owner", "LeadHub ID"} <= set(titles)
    assert titles["Owner"]["type"] == "people" and titles["Email"]["type"] == "email"
    labels = json.loads(titles["Status"]["settings_str"])["labels"]
    assert labels["7"] == "Won" and "Attempted to contact" in labels.values()
    assert body["extensions"]["request_id"] and "account_id" in body
    # an unknown board is an empty list, not an error
    assert gql(box, "{ boards(ids: [1]) { id } }")[1]["data"]["boards"] == []


def test_pages_of_500_reach_the_end_with_no_item_twice(box):
    box.seed(1_234, seed=2)
    _, body = gql(box, PAGE, {"b": [box.leads_board_id], "limit": 500})
    page = body["data"]["boards"][0]["items_page"]
    ids, sizes = [i["id"] for i in page["items"]], [len(page["items"])]
    cursor = page["cursor"]
    while cursor:
        page = gql(box, NEXT, {"c": cursor, "limit": 500})[1]["data"]["next_items_page"]
        ids += [i["id"] for i in page["items"]]
        sizes.append(len(page["items"]))
        cursor = page["cursor"]
    assert sizes == [500, 500, 234]
    assert len(ids) == len(set(ids)) == 1_234 and set(ids) == set(box.remote_ids())
    _, body = gql(box, PAGE, {"b": [box.leads_board_id], "limit": 501})
    assert body["data"] == {"boards": [None]}
    assert body["errors"][0]["extensions"]["code"] == "InvalidArgumentException"
    assert "500" in body["errors"][0]["message"]


def test_last_updated_filter_is_inclusive_to_the_second_and_ascending(box):
    box.clock.freeze(T0)
    early = box.remote_create({"last_name": "Early", "email": "e@x.example"})
    box.clock.advance(10)
    tied = [box.remote_create({"last_name": f"Tie{i}"}) for i in range(3)]
    box.clock.advance(5)
    late = box.remote_create({"last_name": "Late"})
    _, body = gql(box, PAGE, {"b": [box.leads_board_id], "limit": 50, "qp": since("2026-05-04T12:00:10Z")})
    items = body["data"]["boards"][0]["items_page"]["items"]
    assert [i["id"] for i in items] == tied + [late]
    assert {i["updated_at"] for i in items[:3]} == {"2026-05-04T12:00:10Z"}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", i["updated_at"]) for i in items)
    assert early not in [i["id"] for i in items]
    _, body = gql(box, PAGE, {"b": [box.leads_board_id], "limit": 50, "qp": {"rules": [
        {"column_id": "__last_updated__", "compare_value": ["2026-05-04T12:00:10Z"], "operator": "greater_than"}]}})
    assert body["errors"][0]["extensions"]["code"] == "InvalidArgumentException"


def test_a_cursor_names_a_result_set_that_expires_after_an_hour(box):
    box.clock.freeze(T0)
    ids = [box.remote_create({"last_name": f"P{i}"}) for i in range(6)]
    box.clock.advance(1)
    _, body = gql(box, PAGE, {"b": [box.leads_board_id], "limit": 2, "qp": since("2026-05-04T12:00:00Z")})
    cursor = body["data"]["boards"][0]["items_page"]["cursor"]
    # an item edited after the set was fixed keeps its place, with its new data
    box.remote_update(ids[4], {"company": "Edited"})
    page = gql(box, NEXT, {"c": cursor, "limit": 4})[1]["data"]["next_items_page"]
    assert [i["id"] for i in page["items"]] == ids[2:6] and page["cursor"] is None
    box.clock.advance(3_600)
    _, body = gql(box, NEXT, {"c": cursor, "limit": 2})
    assert body["errors"][0]["extensions"]["code"] == "CursorExpiredError"
    assert "CursorExpiredError" in body["errors"][0]["message"]


def test_aliased_mutations_apply_alone_and_one_request_stamps_one_second(box):
    bid = box.leads_board_id
    cols = {c["title"]: c["id"] for c in gql(box, "query ($b: [ID!]) { boards(ids: $b) { columns { id title } } }",
                                             {"b": [bid]})[1]["data"]["boards"][0]["columns"]}
    values = [{cols["Email"]: {"email": "ok@acme.example", "text": "ok@acme.example"}, cols["Status"]: {"label": "Won"},
               cols["Deal value"]: "1200.5", cols["Source"]: {"labels": ["Referral"]}},
              {cols["Email"]: {"email": "not-an-email@", "text": "x"}},
              {cols["Status"]: {"label": "Maybe"}},
              {cols["Phone"]: {"phone": "+49 30 1234567", "countryShortName": "DE"}}]
    doc = "mutation ($b: ID!, $v0: JSON!, $v1: JSON!, $v2: JSON!, $v3: JSON!) { " + " ".join(
        f'm{n}: create_item(board_id: $b, item_name: "Item {n}", column_values: $v{n}) {{ id updated_at }}'
        for n in range(4)) + " }"
    r, body = gql(box, doc, {"b": bid, **{f"v{n}": json.dumps(v) for n, v in enumerate(values)}})
    assert r.status_code == 200
    assert body["data"]["m1"] is None and body["data"]["m2"] is None
    errors = {e["path"][0]: e for e in body["errors"]}
    assert errors["m1"]["extensions"]["code"] == "ColumnValueException"
    assert errors["m1"]["extensions"]["error_data"]["column_id"] == cols["Email"]
    assert errors["m2"]["message"].startswith("This status label doesn't exist, possible statuses are: {0: New Lead")
    assert body["data"]["m0"]["updated_at"] == body["data"]["m3"]["updated_at"]
    items = {i["name"]: i for i in box.items()}
    assert set(items) == {"Item 0", "Item 3"}
    assert (items["Item 0"]["Status"], items["Item 0"]["Deal value"], items["Item 0"]["Source"]) == \
        ("Won", "1200.5", "Referral")
    # values read back as monday returns them: `value` is a JSON string, `text` derived from it
    q = "query ($b: [ID!]) { boards(ids: $b) { items_page { items { name column_values { id text value } } } } }"
    read = {i["name"]: {cv["id"]: cv for cv in i["column_values"]}
            for i in gql(box, q, {"b": [bid]})[1]["data"]["boards"][0]["items_page"]["items"]}
    assert json.loads(read["Item 0"][cols["Status"]]["value"])["index"] == 7
    assert json.loads(read["Item 3"][cols["Phone"]]["value"]) == {"phone": "+49 30 1234567", "countryShortName": "DE"}
    assert read["Item 3"][cols["Email"]] == {"id": cols["Email"], "text": "", "value": None}


def test_change_delete_and_archive(box):
    a, b, c = (box.remote_create({"last_name": n}) for n in "ABC")
    bid = box.leads_board_id
    _, body = gql(box, 'mutation ($b: ID!, $i: ID) { x: change_multiple_column_values(board_id: $b, item_id: $i, '
                  'column_values: "{\\"name\\": \\"Renamed\\"}") { name } d: delete_item(item_id: ' + b + ') { state } '
                  'r: archive_item(item_id: ' + c + ') { state } }', {"b": bid, "i": a})
    assert body["data"] == {"x": {"name": "Renamed"}, "d": {"state": "deleted"}, "r": {"state": "archived"}}
    assert box.remote_ids() == [a]
    _, body = gql(box, f'mutation {{ change_multiple_column_values(board_id: {bid}, item_id: {b}, '
                  'column_values: "{}") { id } }')
    assert body["errors"][0]["extensions"]["code"] == "ResourceNotFoundException"


def test_bad_token_is_401_without_the_token(box):
    r, body = gql(box, "{ boards { id } }", Authorization="wrong-token-123")
    assert r.status_code == 401 and body["errors"][0]["message"] == "Not Authenticated"
    assert "wrong-token-123" not in r.text


def test_minute_limit_answers_429_with_retry_after(box):
    box.rate = 3
    statuses = [gql(box, "{ complexity { query } }")[0] for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    last = statuses[-1]
    assert 1 <= int(last.headers["Retry-After"]) <= 60
    assert last.json()["errors"][0]["extensions"]["code"] == "RATE_LIMIT_EXCEEDED"
    box.clock.advance(60)
    assert gql(box, "{ complexity { query } }")[0].status_code == 200


def test_complexity_budget_is_reported_and_exhausted_as_the_api_version_says(box):
    box.seed(20)
    box.budget.limit = 200_000
    q = "query ($b: [ID!]) { complexity { before after query reset_in_x_seconds } boards(ids: $b) " \
        "{ items_page(limit: 500) { items { id column_values { text } } } } }"
    _, body = gql(box, q, {"b": [box.leads_board_id]})
    c = body["data"]["complexity"]
    assert c["before"] == 200_000 and c["after"] == c["before"] - c["query"] and 0 < c["reset_in_x_seconds"] <= 60
    assert c["query"] > 10_000  # charged by what it could return (500 × 20 columns), not by the 20 items
    for _ in range(20):
        r, body = gql(box, q, {"b": [box.leads_board_id]})
        if r.status_code != 200:
            break
    assert r.status_code == 429 and r.headers["Retry-After"] == str(body["errors"][0]["extensions"]["retry_in_seconds"])
    assert body["errors"][0] == {"message": "Complexity budget exhausted", "extensions": {
        "code": "COMPLEXITY_BUDGET_EXHAUSTED", "retry_in_seconds": body["errors"][0]["extensions"]["retry_in_seconds"]}}
    _, old = gql(box, q, {"b": [box.leads_board_id]}, **{"API-Version": "2025-04"})
    assert {"complexity", "complexity_budget_left", "complexity_budget_limit"} <= set(old["errors"][0]["extensions"])
    box.complexity_status = 200
    r, body = gql(box, q, {"b": [box.leads_board_id]})
    assert r.status_code == 200 and "Retry-After" not in r.headers
    assert body["errors"][0]["extensions"]["code"] == "COMPLEXITY_BUDGET_EXHAUSTED"
    box.clock.advance(60)
    assert gql(box, q, {"b": [box.leads_board_id]})[0].status_code == 200
    _, body = gql(box, "{ boards(limit: 500) { items_page(limit: 500) { items { column_values { text } } } } }")
    assert body["errors"][0]["extensions"]["code"] == "REQUEST_MAX_COMPLEXITY_EXCEEDED"


def test_syntax_and_schema_errors_are_graphql_errors(box):
    r, body = gql(box, "{ boards { nope } }")
    assert r.status_code == 200 and "Cannot query field 'nope'" in body["errors"][0]["message"]
    r = box.client.post("/v2", content=b"{not json")
    assert r.status_code == 400

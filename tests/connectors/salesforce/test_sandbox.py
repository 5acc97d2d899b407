"""The Salesforce sandbox, driven over HTTPS with requests and with simple-salesforce itself."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceRefusedRequest

from connectors.salesforce.sandbox import SalesforceSandbox
from hub.testing import fakedata
from hub.testing.kit import ConformanceSandbox
from hub.testing.tls import loopback_tls

V = "/services/data/v59.0"
T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+0000$")


class Org:
    """A served sandbox and two ways in: raw HTTPS calls and a simple-salesforce client."""

    def __init__(self, box: SalesforceSandbox, url: str):
        self.box, self.url = box, url
        self.http = requests.Session()
        self.http.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override verify
        self.http.verify = loopback_tls().ca_file

    def call(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.box.token if token is None else token}", **kw.pop("headers", {})}
        return self.http.request(method, self.url + (path if path.startswith("/services") else f"{V}/{path}"),
                                 headers=headers, **kw)

    def query(self, soql: str, batch: int | None = None, all_rows: bool = False) -> requests.Response:
        headers = {"Sforce-Query-Options": f"batchSize={batch}"} if batch else {}
        return self.call("GET", "queryAll" if all_rows else "query", params={"q": soql}, headers=headers)

    def ids(self, where: str) -> set[str]:
        r = self.query(f"SELECT Id FROM Lead WHERE {where}")
        assert r.status_code == 200, r.text
        return {rec["Id"] for rec in r.json()["records"]}

    def collection(self, method: str, records: list[dict], path: str = "composite/sobjects", all_or_none=False):
        return self.call(method, path, json={"allOrNone": all_or_none, "records": records})

    @property
    def sf(self) -> Salesforce:
        return Salesforce(instance_url=self.url, session_id=self.box.token, session=self.http)


@pytest.fixture
def make(put):
    orgs: list[Org] = []

    def make(rate: int | None = None, seed: int = 0, **kw) -> Org:
        box = SalesforceSandbox(rate=rate, **kw)
        if seed:
            box.seed(seed, seed=1)
        orgs.append(Org(box, put(box)))
        return orgs[-1]
    yield make
    for org in orgs:
        org.http.close()


def lead(**fields) -> dict:
    return {"attributes": {"type": "Lead"}, "LastName": "L", "Company": "C", **fields}


# -- queries ---------------------------------------------------------------------------------------

def test_query_pages_to_the_end_in_order_with_no_record_twice(make):
    org = make(seed=2300)
    r = org.query("SELECT Id, SystemModstamp FROM Lead ORDER BY SystemModstamp, Id", batch=500)
    pages, seen = [], []
    while True:
        body = r.json()
        assert body["totalSize"] == 2300
        pages.append(len(body["records"]))
        seen += [(rec["SystemModstamp"], rec["Id"]) for rec in body["records"]]
        if body["done"]:
            assert "nextRecordsUrl" not in body
            break
        assert re.fullmatch(r"/services/data/v59\.0/query/01g\w{15}-\d+", body["nextRecordsUrl"])
        last = body["nextRecordsUrl"]
        r = org.call("GET", body["nextRecordsUrl"])
    assert pages == [500, 500, 500, 500, 300]
    assert seen == sorted(seen) and len({i for _, i in seen}) == 2300 == len(org.box.remote_ids())
    gone = org.call("GET", last)  # a finished cursor is closed
    assert gone.status_code == 400 and gone.json() == [{"message": "invalid query locator",
                                                        "errorCode": "INVALID_QUERY_LOCATOR"}]


@pytest.mark.parametrize("asked, first_page", [(None, 2000), (50, 200), (5000, 2000), (700, 700)])
def test_the_batch_size_is_adjusted_into_200_to_2000_never_refused(make, asked, first_page):
    org = make(seed=2100)
    assert len(org.query("SELECT Id FROM Lead", batch=asked).json()["records"]) == first_page


def test_a_query_answers_as_of_the_moment_it_ran(make):
    org = make(seed=250)
    first = org.query("SELECT Id, Title FROM Lead ORDER BY Id", batch=200).json()
    later = max(org.box.remote_ids())
    org.box.update_lead(later, {"Title": "Changed since"})
    rest = org.call("GET", first["nextRecordsUrl"]).json()
    assert rest["records"][-1]["Id"] == later and rest["records"][-1]["Title"] != "Changed since"


def test_cursors_close_when_ten_more_are_open_or_after_fifteen_idle_minutes(make):
    org = make(seed=450)
    urls = [org.query("SELECT Id FROM Lead", batch=200).json()["nextRecordsUrl"] for _ in range(11)]
    assert org.call("GET", urls[0]).json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
    assert org.call("GET", urls[10]).status_code == 200
    org.box.clock.advance(15 * 60 + 1)
    assert org.call("GET", urls[9]).json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_where_clauses_match_a_brute_force_reading_of_the_org(make):
    org = make(seed=600)
    leads = org.box.leads
    opps = org.box.opportunities
    mid = sorted(r["SystemModstamp"] for r in leads.values())[300]
    literal = datetime.fromtimestamp(mid / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cases = {
        "Status IN ('Nurturing', 'marketing qualified') AND Country = 'de'":
            lambda r: r["Status"] in ("Nurturing", "Marketing Qualified") and r["Country"] == "DE",
        "(Email LIKE '%.DE' OR Email = null) AND NOT IsConverted = true":
            lambda r: (r["Email"] is None or r["Email"].lower().endswith(".de")) and not r["IsConverted"],
        "ConvertedOpportunity.StageName = 'Closed Won'":
            lambda r: r["IsConverted"] and opps[r["ConvertedOpportunityId"]]["StageName"] == "Closed Won",
        f"SystemModstamp >= {literal} AND LeadSource != 'Web'":
            lambda r: r["SystemModstamp"] >= mid // 1000 * 1000 and r["LeadSource"] != "Web",
        "OwnerId NOT IN ('005000000000000AAA') AND IsConverted = false AND Company <> '[not provided]'":
            lambda r: not r["IsConverted"] and r["Company"] != "[not provided]",
    }
    for where, keep in cases.items():
        expected = {i for i, r in leads.items() if keep(r)}
        assert org.ids(where) == expected, where
        assert expected, where


def test_order_by_directions_nulls_and_limit(make):
    org = make(seed=300)
    got = [r["Id"] for r in org.query("SELECT Id, Email FROM Lead ORDER BY Email DESC NULLS LAST, Id LIMIT 50")
           .json()["records"]]
    leads = org.box.leads
    with_email = sorted((r for r in leads.values() if r["Email"]), key=lambda r: r["Id"])
    with_email.sort(key=lambda r: r["Email"].casefold(), reverse=True)
    expected = [r["Id"] for r in with_email] + sorted(i for i, r in leads.items() if not r["Email"])
    assert got == expected[:50]
    first = org.query("SELECT Id FROM Lead ORDER BY Email NULLS FIRST").json()["records"][0]["Id"]
    assert leads[first]["Email"] is None


@pytest.mark.parametrize("soql, code, message", [
    ("SELECT Foo FROM Lead", "INVALID_FIELD", "ERROR at Row:1:Column:8\nNo such column 'Foo' on entity 'Lead'."),
    ("SELECT Id FROM Leed", "INVALID_TYPE", "sObject type 'Leed' is not supported."),
    ("SELECT Id FROM Lead WHERE SystemModstamp > '2026-01-01'", "INVALID_FIELD",
     "value of filter criterion for field 'SystemModstamp' must be of type dateTime and should not be enclosed"),
    ("SELECT Id FROM Lead WHERE Email = 5", "INVALID_FIELD",
     "value of filter criterion for field 'Email' must be of type string and should be enclosed in quotes"),
    ("SELECT Id, id FROM Lead", "MALFORMED_QUERY", "duplicate field selected: id"),
    ("SELECT Id FROM Lead WHERE", "MALFORMED_QUERY", "unexpected token: '<EOF>'"),
    ("SELECT Id FROM Lead ORDER Id", "MALFORMED_QUERY", "unexpected token: 'Id'"),
    ("SELECT Opportunity.Name FROM Lead", "INVALID_FIELD", "Didn't understand relationship 'Opportunity'"),
])
def test_bad_queries_are_refused_like_salesforce_does(make, soql, code, message):
    r = make().query(soql)
    assert r.status_code == 400
    [error] = r.json()
    assert error["errorCode"] == code and message in error["message"]
    assert error["message"].startswith(f"\n{soql}\n")  # the query, then a caret under the culprit


def test_query_all_sees_deleted_rows_and_query_does_not(make):
    org = make(seed=20)
    gone = org.box.remote_ids()[3]
    org.box.delete_lead(gone)
    assert gone not in org.ids("IsDeleted = true OR IsDeleted = false")
    rows = org.query("SELECT Id, IsDeleted FROM Lead WHERE IsDeleted = true", all_rows=True).json()["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in rows] == [(gone, True)]


def test_records_have_salesforce_shapes_and_second_precision_stamps(make):
    org = make()
    org.box.clock.freeze(T0 + timedelta(milliseconds=750))
    res = org.collection("POST", [lead(LastName="A"), lead(LastName="B")]).json()
    a, b = (r["id"] for r in res)
    opp = org.box.convert_lead(b, "Prospecting")
    rows = org.query(f"SELECT Id, Name, SystemModstamp, ConvertedOpportunity.StageName FROM Lead "
                     f"WHERE Id IN ('{a}', '{b[:15]}') ORDER BY Id").json()["records"]
    assert rows[0] == {"attributes": {"type": "Lead", "url": f"{V}/sobjects/Lead/{a}"}, "Id": a, "Name": "A",
                       "SystemModstamp": "2026-05-04T12:00:00.000+0000", "ConvertedOpportunity": None}
    assert rows[1]["ConvertedOpportunity"] == {
        "attributes": {"type": "Opportunity", "url": f"{V}/sobjects/Opportunity/{opp}"}, "StageName": "Prospecting"}
    one = org.call("GET", f"sobjects/Lead/{a[:15]}").json()
    assert one["Id"] == a and STAMP.match(one["CreatedDate"]) and one["Status"] == "Open - Not Contacted"
    assert org.call("GET", "sobjects/Lead/00Q000000000000AAA").json()[0]["errorCode"] == "NOT_FOUND"
    assert org.call("GET", "/services/data/v12.0/query", params={"q": "SELECT Id FROM Lead"}).status_code == 404


# -- writes ----------------------------------------------------------------------------------------

def test_collections_take_at_most_200_records(make):
    org = make()
    r = org.collection("POST", [lead(LastName=f"N{i}") for i in range(201)])
    assert r.status_code == 400 and r.json() == [{
        "message": "record limit reached. cannot submit more than 200 records into this call",
        "errorCode": "EXCEEDED_ID_LIMIT"}]
    assert org.box.leads == {}
    assert org.collection("POST", [lead(LastName=f"N{i}") for i in range(200)]).status_code == 200
    assert len(org.box.leads) == 200


def test_upsert_creates_then_updates_by_the_external_id(make):
    org = make()
    path = "composite/sobjects/Lead/LeadHub_Id__c"
    first = org.collection("PATCH", [lead(LeadHub_Id__c="abc", LastName="One")], path).json()
    again = org.collection("PATCH", [lead(LeadHub_Id__c="ABC", LastName="Two"), lead(LeadHub_Id__c="abc"),
                                     lead(LastName="No key")], path).json()
    assert first[0]["success"] and first[0]["created"] is True
    assert again[0] == {"id": first[0]["id"], "success": True, "errors": [], "created": False}
    assert again[1]["errors"] == [{"statusCode": "DUPLICATE_VALUE", "message": "Duplicate external id specified: abc",
                                   "fields": ["LeadHub_Id__c"]}]
    assert again[2]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    assert [r["LastName"] for r in org.box.leads.values()] == ["Two"]
    nope = org.collection("PATCH", [lead(Email="x@y.example")], "composite/sobjects/Lead/Email")
    assert nope.status_code == 404 and nope.json()[0]["errorCode"] == "NOT_FOUND"


def test_each_record_is_checked_and_the_good_ones_are_written(make):
    org = make()
    inactive = org.box.add_users([{"first_name": "Ex", "last_name": "Employee", "email": "ex@corp.example"}],
                                 active=False)["ex@corp.example"]
    res = org.collection("POST", [
        lead(Email="ok@fine.example"), lead(Email="not-an-email@"), lead(Company=None), lead(Status="Hot"),
        lead(SystemModstamp="2026-01-01T00:00:00Z"), lead(FirstName="x" * 41), lead(OwnerId="005xyz"),
        lead(OwnerId=inactive)]).json()
    assert res[0]["success"] and len(org.box.leads) == 1
    errors = [r["errors"][0] for r in res[1:]]
    assert errors == [
        {"statusCode": "INVALID_EMAIL_ADDRESS", "message": "Email: invalid email address: not-an-email@",
         "fields": ["Email"]},
        {"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [Company]",
         "fields": ["Company"]},
        {"statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
         "message": "Lead Status: bad value for restricted picklist field: Hot", "fields": ["Status"]},
        {"statusCode": "INVALID_FIELD_FOR_INSERT_UPDATE", "fields": ["SystemModstamp"],
         "message": "Unable to create/update fields: SystemModstamp. Please check the security settings of this "
                    "field and verify that it is read/write for your profile or permission set."},
        {"statusCode": "STRING_TOO_LONG", "message": f"First Name: data value too large: {'x' * 41} "
                                                     "(max length=40)", "fields": ["FirstName"]},
        {"statusCode": "MALFORMED_ID", "message": "Owner ID: id value of incorrect type: 005xyz",
         "fields": ["OwnerId"]},
        {"statusCode": "INACTIVE_OWNER_OR_USER", "fields": ["OwnerId"],
         "message": f"operation performed with inactive user [{inactive}] as owner of lead"}]
    assert all(r["id"] is None and r["success"] is False for r in res[1:])


@pytest.mark.parametrize("record, code, message", [
    (lead(Shoe_Size__c=44), "INVALID_FIELD", "No such column 'Shoe_Size__c' on sobject of type Lead"),
    (lead(NumberOfEmployees="lots"), "JSON_PARSER_ERROR",
     "Cannot deserialize instance of int from VALUE_STRING value lots or request may be missing a required field"),
])
def test_a_malformed_request_is_refused_whole_and_writes_nothing(make, record, code, message):
    org = make()
    r = org.collection("POST", [lead(LastName="Fine"), record])
    assert r.status_code == 400
    [error] = r.json()
    assert error["errorCode"] == code and error["message"].startswith(message)
    assert org.box.leads == {}


def test_all_or_none_rolls_back_every_record(make):
    org = make()
    res = org.collection("POST", [lead(LastName="Fine"), lead(Email="bad@")], all_or_none=True).json()
    assert res[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert res[1]["errors"][0]["statusCode"] == "INVALID_EMAIL_ADDRESS"
    assert org.box.leads == {}


def test_updates_by_id_and_what_they_refuse(make):
    org = make()
    a, b, c, d = (org.box.add_lead({"LastName": f"L{i}", "Company": "C"}) for i in range(4))
    org.box.update_lead(b, {"LeadHub_Id__c": "taken"})
    org.box.delete_lead(c)
    org.box.convert_lead(d, None)
    res = org.collection("PATCH", [
        {"attributes": {"type": "Lead"}, "id": a, "Title": "Boss"},
        {"attributes": {"type": "Lead"}, "Id": a, "LeadHub_Id__c": "TAKEN"},
        {"attributes": {"type": "Lead"}, "Id": c, "Title": "x"},
        {"attributes": {"type": "Lead"}, "Id": d, "Title": "x"},
        {"attributes": {"type": "Lead"}, "Id": "00Q5L0000000ZZZ", "Title": "x"},
        {"attributes": {"type": "Lead"}, "Id": "001000000000001", "Title": "x"},
        {"attributes": {"type": "Lead"}, "Id": a, "OwnerId": None},
        {"Id": a, "Title": "x"}]).json()
    assert res[0] == {"id": a, "success": True, "errors": []} and org.box.leads[a]["Title"] == "Boss"
    assert [r["errors"][0]["statusCode"] for r in res[1:]] == [
        "DUPLICATE_VALUE", "ENTITY_IS_DELETED", "CANNOT_UPDATE_CONVERTED_LEAD", "INVALID_CROSS_REFERENCE_KEY",
        "MALFORMED_ID", "REQUIRED_FIELD_MISSING", "INVALID_TYPE"]
    assert res[1]["errors"][0]["message"] == f"duplicate value found: LeadHub_Id__c duplicates value on record " \
                                             f"with id: {b}"
    assert res[3]["errors"][0]["message"] == "cannot reference converted lead"


def test_converting_a_lead_and_moving_its_deal(make):
    org = make()
    rid = org.box.add_lead({"LastName": "Deal", "Company": "Acme", "Loss_Reason__c": "Price"})
    opp_id = org.box.convert_lead(rid, "Id. Decision Makers", {"Amount": 5000})
    lead_row, opp = org.box.leads[rid], org.box.opportunities[opp_id]
    assert (lead_row["IsConverted"], lead_row["Status"], lead_row["ConvertedOpportunityId"]) == \
           (True, "Closed - Converted", opp_id)
    assert (opp["Probability"], opp["IsClosed"], opp["Amount"], opp["Loss_Reason__c"]) == (60.0, False, 5000.0,
                                                                                           "Price")
    org.box.update_opportunity(opp_id, {"StageName": "Closed Won"})
    assert {k: org.box.opportunities[opp_id][k] for k in ("IsClosed", "IsWon", "Probability")} == \
           {"IsClosed": True, "IsWon": True, "Probability": 100.0}
    r = org.collection("PATCH", [{"attributes": {"type": "Opportunity"}, "Id": opp_id, "StageName": "Closed Lost",
                                  "Probability": 5}]).json()
    assert r[0]["success"] and org.box.opportunities[opp_id]["Probability"] == 5.0
    assert not org.box.opportunities[opp_id]["IsWon"]


# -- auth and limits -------------------------------------------------------------------------------

def test_a_missing_or_wrong_session_is_401(make):
    org = make(seed=3)
    for token in ("00Dwrong!token", ""):
        r = org.call("GET", "query", token=token, params={"q": "SELECT Id FROM Lead"})
        assert r.status_code == 401 and r.json() == [{"message": "Session expired or invalid",
                                                      "errorCode": "INVALID_SESSION_ID"}]
    wrong = Salesforce(instance_url=org.url, session_id="00Dwrong!token", session=org.http)
    with pytest.raises(SalesforceExpiredSession):
        wrong.query("SELECT Id FROM Lead")


def test_client_credentials_issue_tokens_that_expire(make):
    org = make(seed=3, token_ttl=60)
    form = {"grant_type": "client_credentials", "client_id": org.box.client_id,
            "client_secret": org.box.client_secret}
    r = org.http.post(f"{org.url}/services/oauth2/token", data=form)
    body = r.json()
    assert r.status_code == 200 and body["instance_url"] == org.url and body["token_type"] == "Bearer"
    assert org.call("GET", "query", token=body["access_token"], params={"q": "SELECT Id FROM Lead"}).ok
    org.box.clock.advance(61)
    assert org.call("GET", "limits", token=body["access_token"]).status_code == 401
    for change, error in (({"client_secret": "x"}, "invalid_client"), ({"client_id": "x"}, "invalid_client_id"),
                          ({"grant_type": "password"}, "unsupported_grant_type")):
        r = org.http.post(f"{org.url}/services/oauth2/token", data={**form, **change})
        assert r.status_code == 400 and r.json()["error"] == error


def test_the_daily_limit_answers_403_with_the_usage_header(make):
    org = make(rate=3, seed=5)
    usage = [org.call("GET", "limits").headers["Sforce-Limit-Info"] for _ in range(3)]
    assert usage == ["api-usage=1/3", "api-usage=2/3", "api-usage=3/3"]
    r = org.call("GET", "limits")
    assert r.status_code == 403 and r.headers["Sforce-Limit-Info"] == "api-usage=3/3"
    assert r.json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    with pytest.raises(SalesforceRefusedRequest, match="REQUEST_LIMIT_EXCEEDED"):
        org.sf.query("SELECT Id FROM Lead")
    org.box.clock.advance(86_400)  # the window rolls: a day later every call is free again
    sf = org.sf
    assert sf.query("SELECT Id FROM Lead")["totalSize"] == 5
    assert sf.api_usage["api-usage"].used == 1 and sf.api_usage["api-usage"].total == 3
    assert sf.limits()["DailyApiRequests"] == {"Max": 3, "Remaining": 1}


def test_injected_faults_look_like_salesforce_answers(make):
    org = make()
    org.box.faults.add(status=503, count=1, path_contains="/query")
    org.box.faults.add(status=429, count=1, path_contains="/query")
    r = org.query("SELECT Id FROM Lead")
    assert r.status_code == 503 and "Retry-After" not in r.headers
    assert r.json() == [{"message": "Injected fault", "errorCode": "SERVER_UNAVAILABLE"}]
    r = org.query("SELECT Id FROM Lead")  # Salesforce sends no 429; a gateway in front of it might
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"


# -- seeding and the conformance handle ------------------------------------------------------------

def test_seeded_leads_carry_the_canonical_mapping(make):
    org = make()
    ids = org.box.seed(400, seed=2)
    people = fakedata.people(400, 2)
    converted = lost_open = 0
    for rid, person in zip(ids, people):
        got = org.box.remote_get(rid)
        assert (got["status"], got["source"], got["last_name"]) == (person["status"], person["source"],
                                                                    person["last_name"])
        assert got["owner"] == person["owner"]  # nobody's leads are the integration user's
        assert got["email"] in (person["email"], None)
        converted += org.box.leads[rid]["IsConverted"]
        lost_open += org.box.leads[rid]["Status"] == "Closed - Not Converted"
    assert converted > 50 and lost_open > 5


def test_the_conformance_handle_acts_as_a_user_would(make):
    org = make()
    box = org.box
    assert isinstance(box, ConformanceSandbox)
    owner = fakedata.team(0)[4]["email"]
    rid = box.remote_create({"first_name": "Ana", "last_name": "Lima", "email": "ana@lima.example",
                             "company": "Lima", "status": "SQL", "source": "event", "owner": owner})
    got = box.remote_get(rid)
    assert {k: got[k] for k in ("first_name", "status", "source", "owner", "hub_id")} == \
           {"first_name": "Ana", "status": "SQL", "source": "event", "owner": owner, "hub_id": None}
    before = box.leads[rid]["SystemModstamp"]
    box.clock.advance(2)
    box.remote_update(rid, {"status": "Opportunity", "value": 900.0, "probability": 0.3})
    assert box.leads[rid]["IsConverted"] and box.leads[rid]["SystemModstamp"] > before
    box.remote_update(rid, {"status": "Closed Won"})
    assert (box.remote_get(rid)["status"], box.remote_get(rid)["value"]) == ("Closed Won", 900.0)
    with pytest.raises(ValueError, match="converted"):
        box.remote_update(rid, {"phone": "+1 555 0100"})
    box.remote_delete(rid)
    assert box.remote_get(rid) is None and rid not in box.remote_ids()
    assert box.connector_settings("https://127.0.0.1:1")["ca_bundle"] == loopback_tls().ca_file

"""Salesforce's REST API over the sandbox org.

The wire side of :class:`~connectors.salesforce.sandbox.SalesforceSandbox`.

Served (``vXX.X`` any version from 20.0 to 62.0)::

    POST   /services/oauth2/token                               client credentials → access token
    GET    /services/data/vXX.X/query?q=SOQL                    first page; Sforce-Query-Options: batchSize=N
    GET    /services/data/vXX.X/queryAll?q=SOQL                 … including deleted rows (IsDeleted)
    GET    /services/data/vXX.X/query[All]/{locator}-{offset}   nextRecordsUrl pages
    POST   /services/data/vXX.X/composite/sobjects              create ≤ 200 (SaveResult[])
    PATCH  /services/data/vXX.X/composite/sobjects              update ≤ 200 by Id (SaveResult[])
    DELETE /services/data/vXX.X/composite/sobjects?ids=…        delete ≤ 200 (to the recycle bin)
    PATCH  /services/data/vXX.X/composite/sobjects/{obj}/{ext}  upsert ≤ 200 by external id (UpsertResult[])
    GET    /services/data/vXX.X/sobjects/{obj}/{id}             one record
    GET    /services/data/vXX.X/limits                          DailyApiRequests

Errors are Salesforce's list ``[{"message", "errorCode"}]``; per-record errors in
collections are ``{"statusCode", "message", "fields"}`` inside a 200 answer.
Every authenticated answer carries ``Sforce-Limit-Info: api-usage=N/LIMIT``;
past the daily limit (``rate`` calls in any 24 h) the answer is 403
``REQUEST_LIMIT_EXCEEDED``. Salesforce has no per-second limit on REST calls.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import Response

from hub.testing.sandbox import Call, Reject, Sandbox

from .org import MAX_RECORDS, Locator, Org, RecordError
from .schema import PREFIX, SCHEMA, Field, full_id
from .soql import SoqlError

__all__ = ["UNLIMITED", "SalesforceApi"]

UNLIMITED = 5_000_000  # the limit shown in Sforce-Limit-Info when the sandbox has none
_CODES = {400: "MALFORMED_REQUEST", 401: "INVALID_SESSION_ID", 403: "INSUFFICIENT_ACCESS", 404: "NOT_FOUND",
          405: "METHOD_NOT_ALLOWED", 500: "UNKNOWN_EXCEPTION", 503: "SERVER_UNAVAILABLE"}
_ROLLED_BACK = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "fields": [],
                "message": "Record rolled back because not all records were valid and the request was using "
                           "AllOrNone header"}
_WRITABLE = ("Lead", "Opportunity", "Task")
Plan = tuple[str, str | None, dict[str, Any], bool]  # (object, id or None to create, values, created)


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _key(rec: dict[str, Any], name: str) -> Any:
    return next((v for k, v in rec.items() if k.lower() == name.lower()), None)


class SalesforceApi(Sandbox):
    """The REST surface. ``rate`` is the org's daily API request limit (``None``: no limit)."""

    tls = True  # simple-salesforce only speaks https

    def __init__(self, token: str, rate: int | None, client_id: str, client_secret: str, token_ttl: float):
        super().__init__()
        self.org = Org(self.clock)
        self.token, self.rate = token, rate
        self.client_id, self.client_secret, self.token_ttl = client_id, client_secret, token_ttl
        self._issued: dict[str, float] = {}  # access token -> expiry (clock.monotonic)
        self._used = 0  # calls counted when there is no limit
        self.retry_after = 1.0  # seconds an injected 429 asks for (Salesforce sends none: a proxy in front would)

    # -- the vendor's answers -------------------------------------------------------------
    def error(self, status: int, message: str, **extra: Any) -> Response:
        code = extra.pop("errorCode", None) or _CODES.get(status, "UNKNOWN_EXCEPTION")
        headers = {"Retry-After": f"{self.retry_after:g}"} if status == 429 else None
        return self.json([{"message": message, "errorCode": code, **extra}], status, headers)

    def _valid(self, token: str) -> bool:
        if token == self.token:
            return True
        expiry = self._issued.get(token)
        return expiry is not None and self.clock.monotonic() < expiry

    def admit(self, call: Call) -> Response | dict[str, str] | None:
        if call.path.startswith("/services/oauth2/"):
            return None
        scheme, _, token = call.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not self._valid(token.strip()):
            return self.error(401, "Session expired or invalid", errorCode="INVALID_SESSION_ID")
        version = call.params.get("version", "v59.0")
        m = re.fullmatch(r"v(\d+)\.0", version)
        if m is None or not 20 <= int(m.group(1)) <= 62:
            raise Reject(404, "The requested resource does not exist", errorCode="NOT_FOUND")
        if self.rate is None:
            self._used += 1
            return {"Sforce-Limit-Info": f"api-usage={self._used}/{UNLIMITED}"}
        verdict = self.window("daily", "org", self.rate, 86_400.0).hit()
        usage = {"Sforce-Limit-Info": f"api-usage={self.rate - verdict.remaining}/{self.rate}"}
        if not verdict.allowed:
            return self.json([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
                             403, usage)
        return usage

    def routes(self) -> list[tuple[str, str, Callable[[Call], Response]]]:
        d = "/services/data/{version}"
        return [("POST", "/services/oauth2/token", self._token),
                ("GET", f"{d}/query", self._query), ("GET", f"{d}/queryAll", self._query),
                ("GET", f"{d}/query/{{locator}}", self._more), ("GET", f"{d}/queryAll/{{locator}}", self._more),
                ("GET", f"{d}/limits", self._limits),
                ("POST", f"{d}/composite/sobjects", self._create), ("PATCH", f"{d}/composite/sobjects", self._update),
                ("DELETE", f"{d}/composite/sobjects", self._delete),
                ("PATCH", f"{d}/composite/sobjects/{{sobject}}/{{field}}", self._upsert),
                ("GET", f"{d}/sobjects/{{sobject}}/{{id}}", self._get)]

    # -- OAuth ----------------------------------------------------------------------------
    def _token(self, call: Call) -> Response:
        form = dict(parse_qsl(call.body.decode("utf-8", "replace")))
        if form.get("grant_type") != "client_credentials":
            return self.json({"error": "unsupported_grant_type", "error_description": "grant type not supported"}, 400)
        if form.get("client_id") != self.client_id:
            return self.json({"error": "invalid_client_id", "error_description": "client identifier invalid"}, 400)
        if form.get("client_secret") != self.client_secret:
            return self.json({"error": "invalid_client", "error_description": "invalid client credentials"}, 400)
        token = f"00D5L0000000001!{secrets.token_urlsafe(32)}"
        self._issued[token] = self.clock.monotonic() + self.token_ttl
        base = f"{'https' if self.tls else 'http'}://{call.headers.get('host', '127.0.0.1')}"
        return self.json({"access_token": token, "signature": secrets.token_urlsafe(32), "scope": "api",
                          "instance_url": base, "id": f"{base}/id/00D5L0000000001EAA/{self.org.api_user}",
                          "token_type": "Bearer", "issued_at": str(self.clock.now_ms())})

    # -- queries --------------------------------------------------------------------------
    @staticmethod
    def _batch(call: Call) -> int:
        m = re.search(r"batchSize\s*=\s*(\d+)", call.headers.get("sforce-query-options", ""), re.IGNORECASE)
        return min(2000, max(200, int(m.group(1)))) if m else 2000  # Salesforce adjusts, never refuses

    def _query(self, call: Call) -> Response:
        text = call.query.get("q")
        if not text:
            raise Reject(400, "A query string has to be specified", errorCode="MALFORMED_QUERY")
        kind = call.route.split("/")[-1]
        try:
            loc_id, loc = self.org.query(text, kind == "queryAll", self._batch(call))
        except SoqlError as exc:
            raise Reject(400, exc.message, errorCode=exc.code) from None
        return self._page(call, kind, loc_id, loc, 0)

    def _more(self, call: Call) -> Response:
        loc_id, _, offset = call.params["locator"].rpartition("-")
        loc = self.org.locator(loc_id) if offset.isdigit() else None
        if loc is None or int(offset) > len(loc.rows):
            raise Reject(400, "invalid query locator", errorCode="INVALID_QUERY_LOCATOR")
        return self._page(call, call.route.split("/")[-2], loc_id, loc, int(offset))

    def _page(self, call: Call, kind: str, loc_id: str, loc: Locator, offset: int) -> Response:
        version = call.params["version"][1:]
        end = offset + loc.batch
        body: dict[str, Any] = {"totalSize": len(loc.rows), "done": end >= len(loc.rows)}
        if end < len(loc.rows):
            body["nextRecordsUrl"] = f"/services/data/v{version}/{kind}/{loc_id}-{end}"
        else:
            self.org.locators.pop(loc_id, None)
        body["records"] = [self.org.render(loc, rec, parents, version) for rec, parents in loc.rows[offset:end]]
        return self.json(body)

    def _limits(self, call: Call) -> Response:
        limit = self.rate or UNLIMITED
        used = self._used if self.rate is None else self.rate - self.window("daily", "org", self.rate,
                                                                             86_400.0).peek().remaining
        return self.json({"DailyApiRequests": {"Max": limit, "Remaining": max(0, limit - used)}})

    def _get(self, call: Call) -> Response:
        obj = self._object(call.params["sobject"], writable=False)
        rec = self.org.live(obj, full_id(call.params["id"], obj))
        if rec is None:
            raise Reject(404, "The requested resource does not exist", errorCode="NOT_FOUND")
        return self.json(self.org.record(obj, rec, call.params["version"][1:]))

    # -- sObject Collections --------------------------------------------------------------
    @staticmethod
    def _object(name: str, writable: bool = True) -> str:
        obj = next((o for o in SCHEMA if o.lower() == name.lower()), None)
        if obj is None or (writable and obj not in _WRITABLE):
            raise Reject(404, "The requested resource does not exist", errorCode="NOT_FOUND")
        return obj

    def _collection(self, call: Call) -> tuple[bool, list[dict[str, Any]]]:
        body = call.json()
        if not isinstance(body, dict) or not isinstance(body.get("records"), list) \
                or not all(isinstance(r, dict) for r in body["records"]):
            raise Reject(400, "Cannot deserialize instance of SObjectCollection: the body needs allOrNone and a "
                              "records list of objects", errorCode="JSON_PARSER_ERROR")
        if len(body["records"]) > MAX_RECORDS:
            raise Reject(400, f"record limit reached. cannot submit more than {MAX_RECORDS} records into this call",
                         errorCode="EXCEEDED_ID_LIMIT")
        return bool(body.get("allOrNone", False)), body["records"]

    def _typed(self, records: list[dict[str, Any]], body: bytes,
               uri_type: str | None = None) -> list[tuple[str, dict[Field, Any]] | RecordError]:
        """Each record's type and parsed values; names and JSON types fail the whole request."""
        out: list[tuple[str, dict[Field, Any]] | RecordError] = []
        for rec in records:
            attrs = rec.get("attributes")
            obj = next((o for o in _WRITABLE if isinstance(attrs, dict) and str(attrs.get("type", "")).lower()
                        == o.lower()), None)
            if obj is None or (uri_type is not None and obj != uri_type):
                out.append(RecordError("INVALID_TYPE", "Must send a concrete entity type.", []))
                continue
            out.append((obj, self.org.parse(obj, rec, body)))
        return out

    def _run(self, records: list[dict[str, Any]], typed: list[Any], all_or_none: bool,
             plan: Callable[[dict[str, Any], str, dict[Field, Any]], Plan], upsert: bool = False) -> Response:
        """Check each record in order and write it; with allOrNone, write only if every record passes."""
        now = self.org.now()
        outcomes: list[Plan | RecordError] = []
        for rec, t in zip(records, typed):
            try:
                if isinstance(t, RecordError):
                    raise t
                step = plan(rec, *t)
                if not all_or_none:
                    step = (step[0], self.org.write(step[0], step[1], step[2], now), step[2], step[3])
                outcomes.append(step)
            except RecordError as exc:
                outcomes.append(exc)
        failed = any(isinstance(o, RecordError) for o in outcomes)
        results = []
        for o in outcomes:
            if isinstance(o, RecordError) or (all_or_none and failed):
                errors = [o.as_dict() if isinstance(o, RecordError) else _ROLLED_BACK]
                failed_row = {"id": None, "success": False, "errors": errors}
                results.append({**failed_row, **({"created": False} if upsert else {})})
                continue
            rid = self.org.write(o[0], o[1], o[2], now) if all_or_none else o[1]
            results.append({"id": rid, "success": True, "errors": [], **({"created": o[3]} if upsert else {})})
        return self.json(results)

    def _existing(self, obj: str, raw_id: Any) -> dict[str, Any]:
        if _blank(raw_id):
            raise RecordError("MISSING_ARGUMENT", "Id not specified in an update call", [])
        rid = full_id(raw_id, obj)
        if rid is None:
            raise RecordError("MALFORMED_ID", f"{obj} ID: id value of incorrect type: {raw_id}", ["Id"])
        rec = self.org.tables[obj].get(rid)
        if rec is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        if rec["IsDeleted"]:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [])
        if rec.get("IsConverted"):
            raise RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
        return rec

    def _create(self, call: Call) -> Response:
        all_or_none, records = self._collection(call)

        def plan(rec: dict[str, Any], obj: str, values: dict[Field, Any]) -> Plan:
            if not _blank(_key(rec, "id")):
                raise RecordError("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            return obj, None, self.org.check(obj, values, None), True
        return self._run(records, self._typed(records, call.body), all_or_none, plan)

    def _update(self, call: Call) -> Response:
        all_or_none, records = self._collection(call)

        def plan(rec: dict[str, Any], obj: str, values: dict[Field, Any]) -> Plan:
            current = self._existing(obj, _key(rec, "id"))
            return obj, current["Id"], self.org.check(obj, values, current), False
        return self._run(records, self._typed(records, call.body), all_or_none, plan)

    def _upsert(self, call: Call) -> Response:
        obj = self._object(call.params["sobject"])
        ext = SCHEMA[obj].get(call.params["field"].lower())
        if ext is None or not ext.unique:
            raise Reject(404, f"Provided external ID field does not exist or is not accessible: "
                              f"{call.params['field']}", errorCode="NOT_FOUND")
        all_or_none, records = self._collection(call)
        seen: set[str] = set()

        def plan(rec: dict[str, Any], _: str, values: dict[Field, Any]) -> Plan:
            key = _key(rec, ext.name)
            if _blank(key):
                raise RecordError("MISSING_ARGUMENT", f"{ext.name} not specified", [])
            folded = str(key).casefold()
            if folded in seen:
                raise RecordError("DUPLICATE_VALUE", f"Duplicate external id specified: {key}", [ext.name])
            seen.add(folded)
            rid = self.org.hub_ids.get(folded)
            current = self.org.tables[obj][rid] if rid else None
            if current is not None and current.get("IsConverted"):
                raise RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
            return obj, rid, self.org.check(obj, values, current), rid is None
        return self._run(records, self._typed(records, call.body, obj), all_or_none, plan, upsert=True)

    def _delete(self, call: Call) -> Response:
        ids = call.query_list("ids")
        if len(ids) > MAX_RECORDS:
            raise Reject(400, f"record limit reached. cannot submit more than {MAX_RECORDS} records into this call",
                         errorCode="EXCEEDED_ID_LIMIT")
        now, results = self.org.now(), []
        for raw in ids:
            obj = next((o for o in _WRITABLE if str(raw).startswith(PREFIX[o])), None)
            rid = full_id(raw, obj) if obj else None
            rec = self.org.tables[obj].get(rid or "") if obj else None
            if rec is None or rec["IsDeleted"]:
                code, msg = ("ENTITY_IS_DELETED", "entity is deleted") if rec else \
                    ("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
                results.append({"id": raw, "success": False, "errors": [{"statusCode": code, "message": msg,
                                                                         "fields": []}]})
                continue
            self.org.delete(obj or "", rec["Id"], now)
            results.append({"id": rec["Id"], "success": True, "errors": []})
        return self.json(results)

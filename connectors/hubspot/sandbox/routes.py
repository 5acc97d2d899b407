"""The HTTP side of the HubSpot sandbox: auth, rate limits, error bodies, and the contacts (single and batch),
owners and properties endpoints."""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from hub.testing.sandbox import Call, Reject

from .model import _ALWAYS, _HIGH, _Contact, _Failure, _iso

__all__ = ["MAX_BATCH", "MAX_LIST", "_Routes"]

_BASE = "/crm/v3/objects/contacts"
MAX_BATCH, MAX_LIST = 100, 100


class _Routes:
    """Mixin for :class:`HubSpotSandbox`: request admission and the non-search handlers."""

    # -- HTTP: auth, limits, errors -------------------------------------------------------
    def error(self, status: int, message: str, **extra: Any) -> Response:
        if status == 429:  # an injected 429 looks like the real one
            return self._limited("TEN_SECONDLY_ROLLING", None)
        category = extra.pop("category", None) or {401: "INVALID_AUTHENTICATION", 404: "OBJECT_NOT_FOUND",
                                                    409: "CONFLICT"}.get(status, "VALIDATION_ERROR"
                                                                         if status < 500 else "INTERNAL_ERROR")
        return self.json({"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                          "category": category, **extra}, status)

    def _limited(self, policy: str, headers: dict[str, str] | None) -> Response:
        what = {"SECONDLY": "secondly", "DAILY": "daily"}.get(policy, policy.lower())
        return self.json({"status": "error", "message": f"You have reached your {what} limit.",
                          "errorType": "RATE_LIMIT", "correlationId": str(uuid.uuid4()), "policyName": policy},
                         429, headers)

    def admit(self, call: Call) -> Response | dict[str, str] | None:
        scheme, _, token = call.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.token:
            return self.error(401, "Authentication credentials not found. This API supports OAuth 2.0 "
                                   "authentication and you can find more details at "
                                   "https://developers.hubspot.com/docs/methods/auth/oauth-overview")
        search = call.method == "POST" and call.path.endswith("/search")
        if search and self.search_rate is not None and not self.window("search", token, self.search_rate,
                                                                       1.0).hit().allowed:
            return self._limited("SECONDLY", None)
        headers: dict[str, str] = {}
        if self.rate is not None:
            verdict = self.window("ten_secondly", token, self.rate, 10.0).hit()
            headers = {"X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                       "X-HubSpot-RateLimit-Max": str(self.rate),
                       "X-HubSpot-RateLimit-Remaining": str(verdict.remaining)}
            if not verdict.allowed:
                return self._limited("TEN_SECONDLY_ROLLING", None if search else self._daily(headers))
        today = self.clock.now().date()
        if today != self._day:
            self._day, self._used = today, 0
        if self._used >= self.daily:
            return self._limited("DAILY", None if search else self._daily(headers))
        self._used += 1
        return None if search else self._daily(headers)

    def _daily(self, headers: dict[str, str]) -> dict[str, str]:
        return {**headers, "X-HubSpot-RateLimit-Daily": str(self.daily),
                "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily - self._used))}

    def routes(self) -> list[tuple[str, str, Callable[[Call], Response]]]:
        b = _BASE
        return [("POST", f"{b}/search", self._search), ("GET", b, self._list), ("POST", b, self._create),
                ("POST", f"{b}/batch/read", self._batch_read), ("POST", f"{b}/batch/create", self._batch_create),
                ("POST", f"{b}/batch/update", self._batch_update),
                ("POST", f"{b}/batch/upsert", self._batch_upsert),
                ("POST", f"{b}/batch/archive", self._batch_archive), ("POST", f"{b}/merge", self._merge),
                ("GET", f"{b}/{{contactId}}", self._get), ("PATCH", f"{b}/{{contactId}}", self._update),
                ("DELETE", f"{b}/{{contactId}}", self._delete),
                ("GET", "/crm/v3/owners", self._owners), ("GET", "/crm/v3/owners/{ownerId}", self._owner),
                ("GET", "/crm/v3/properties/{objectType}", self._properties),
                ("GET", "/crm/v3/properties/{objectType}/{propertyName}", self._property)]

    # -- basic endpoints ------------------------------------------------------------------
    @staticmethod
    def _int(call: Call, name: str, default: int, low: int, high: int) -> int:
        raw = call.query.get(name)
        try:
            value = default if raw in (None, "") else int(raw)
        except ValueError:
            raise Reject(400, f"Invalid input: {name} must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise Reject(400, f"Invalid input: {name} must be between {low} and {high}, got {value}")
        return value

    def _list(self, call: Call) -> Response:
        limit = self._int(call, "limit", 10, 1, MAX_LIST)
        start = self._int(call, "after", 0, 0, _HIGH)
        archived = call.query.get("archived", "").lower() == "true"
        ids = self._archived if archived else self._active
        i = bisect.bisect_left(ids, start)
        wanted = self._wanted(call.query_list("properties"))
        recs = self._records
        out: dict[str, Any] = {"results": [self._render(r, recs[r].props, wanted, recs[r].archived_at)
                                           for r in ids[i:i + limit]]}
        if i + limit < len(ids):
            nxt = str(ids[i + limit])
            out["paging"] = {"next": {"after": nxt, "link": f"{_BASE}?after={nxt}"}}
        return self.json(out)

    def _one(self, call: Call, archived: bool = False) -> _Contact:
        rec = self._find(call.params["contactId"], call.query.get("idProperty"), archived)
        if rec is None:
            raise Reject(404, "resource not found")
        return rec

    def _get(self, call: Call) -> Response:
        rec = self._one(call, call.query.get("archived", "").lower() == "true")
        return self.json(self._render(rec.id, rec.props, self._wanted(call.query_list("properties")),
                                      rec.archived_at))

    def _body_props(self, call: Call) -> Any:
        body = call.json()
        if not isinstance(body, dict) or "properties" not in body:
            raise Reject(400, "Invalid input: the body must be an object with properties")
        return body["properties"]

    def _written(self, rec: _Contact, clean: dict[str, str]) -> dict[str, Any]:
        return self._render(rec.id, rec.props, tuple(dict.fromkeys([*clean, *_ALWAYS])))

    def _create(self, call: Call) -> Response:
        clean = self._validate(self._body_props(call), None)
        return self.json(self._written(self._apply(None, clean, self.clock.now_ms()), clean), 201)

    def _update(self, call: Call) -> Response:
        props = self._body_props(call)
        rec = self._one(call)
        clean = self._validate(props, rec.id)
        return self.json(self._written(self._apply(rec, clean, self.clock.now_ms()), clean))

    def _delete(self, call: Call) -> Response:
        rec = self._find(call.params["contactId"])
        if rec is not None:
            self._archive(rec, self.clock.now_ms())
        return Response(status_code=204)

    # -- batch endpoints ------------------------------------------------------------------
    def _inputs(self, call: Call) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        body = call.json()
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            raise Reject(400, "Invalid input: the body must be an object with an inputs list")
        inputs = body["inputs"]
        if len(inputs) > MAX_BATCH:
            raise Reject(400, f"Batch input limit exceeded: {len(inputs)} inputs given, the maximum number of "
                              f"inputs per batch is {MAX_BATCH}")
        if any(not isinstance(i, dict) for i in inputs):
            raise Reject(400, "Invalid input: every input must be an object")
        return body, inputs

    @staticmethod
    def _key(item: dict[str, Any]) -> str:
        prop, ident = item.get("idProperty") or "hs_object_id", str(item.get("id"))
        return f"{prop}:{ident.lower() if prop == 'email' else ident}"

    @staticmethod
    def _no_duplicates(keys: list[str]) -> None:
        seen, dupes = set(), []
        for k in keys:
            if k in seen:
                dupes.append(k)
            seen.add(k)
        if dupes:
            raise Reject(400, f"Duplicate IDs found in batch input: {sorted(set(dupes))}. IDs must be unique")

    def _answer(self, results: list[dict[str, Any]], errors: list[tuple[_Failure, dict[str, list[str]]]],
                started: str, ok: int = 200, partial: bool = False) -> Response:
        if errors and not results and not partial:
            failure, context = errors[0]
            return self.error(failure.status, failure.message, category=failure.category, context=context,
                              **({"errors": failure.errors} if failure.errors else {}))
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started,
                                "completedAt": _iso(self.clock.now_ms())}
        if not errors:
            return self.json(body, ok)
        body["numErrors"] = len(errors)
        body["errors"] = [{"status": "error", "category": f.category, "message": f.message, "context": ctx,
                           "errors": f.errors, "links": {}} for f, ctx in errors]
        return self.json(body, 207)

    def _each(self, inputs: list[dict[str, Any]], context: Callable[[dict[str, Any]], dict[str, list[str]]],
              write: Callable[[dict[str, Any], int], dict[str, Any]]) -> Response:
        now = self.clock.now_ms()
        results, errors = [], []
        for item in inputs:
            ctx = context(item)
            if item.get("objectWriteTraceId"):
                ctx["objectWriteTraceId"] = [str(item["objectWriteTraceId"])]
            try:
                result = write(item, now)
            except _Failure as failure:
                errors.append((failure, ctx))
                continue
            if item.get("objectWriteTraceId"):
                result["objectWriteTraceId"] = str(item["objectWriteTraceId"])
            results.append(result)
        return self._answer(results, errors, _iso(now))

    def _batch_read(self, call: Call) -> Response:
        body, inputs = self._inputs(call)
        wanted = self._wanted(body.get("properties"))
        archived = call.query.get("archived", "").lower() == "true"
        results, missing = [], []
        for item in inputs:
            rec = self._find(item.get("id"), body.get("idProperty"), archived)
            if rec is None:
                missing.append(str(item.get("id")))
            else:
                results.append(self._render(rec.id, rec.props, wanted, rec.archived_at))
        failure = _Failure(404, "OBJECT_NOT_FOUND", "Could not get some CONTACT objects, they may be deleted or "
                                                    "not exist. Check that ids are valid.")
        errors = [(failure, {"ids": missing})] if missing else []
        return self._answer(results, errors, _iso(self.clock.now_ms()), partial=True)

    def _batch_create(self, call: Call) -> Response:
        _, inputs = self._inputs(call)

        def write(item: dict[str, Any], now: int) -> dict[str, Any]:
            clean = self._validate(item.get("properties"), None)
            return self._written(self._apply(None, clean, now), clean)

        def context(item: dict[str, Any]) -> dict[str, list[str]]:
            props = item.get("properties") if isinstance(item.get("properties"), dict) else {}
            return {p: [str(props[p])] for p in reversed(self._uniques) if props.get(p)}
        return self._with_status(self._each(inputs, context, write), 201)

    @staticmethod
    def _with_status(response: Response, ok: int) -> Response:
        if response.status_code == 200:
            response.status_code = ok
        return response

    def _batch_update(self, call: Call) -> Response:
        _, inputs = self._inputs(call)
        self._no_duplicates([self._key(i) for i in inputs])

        def write(item: dict[str, Any], now: int) -> dict[str, Any]:
            rec = self._find(item.get("id"), item.get("idProperty"))
            if rec is None:
                raise _Failure(404, "OBJECT_NOT_FOUND", f"Could not find a contact with "
                                                        f"{item.get('idProperty') or 'id'} {item.get('id')}")
            clean = self._validate(item.get("properties"), rec.id)
            return self._written(self._apply(rec, clean, now), clean)
        return self._each(inputs, lambda item: {"ids": [str(item.get("id"))]}, write)

    def _batch_upsert(self, call: Call) -> Response:
        _, inputs = self._inputs(call)
        self._no_duplicates([self._key(i) for i in inputs])

        def write(item: dict[str, Any], now: int) -> dict[str, Any]:
            prop, ident = item.get("idProperty"), item.get("id")
            if prop not in self._uniques or ident in (None, ""):
                raise _Failure(400, "VALIDATION_ERROR", f"Upsert needs an id and an idProperty that is one of "
                                                        f"the unique properties {list(self._uniques)}")
            props = item.get("properties")
            props = {**props, prop: ident} if isinstance(props, dict) else props
            rec = self._find(ident, prop)
            clean = self._validate(props, rec.id if rec else None)
            new = rec is None
            return {**self._written(self._apply(rec, clean, now), clean), "new": new}
        return self._each(inputs, lambda item: {str(item.get("idProperty") or "id"): [str(item.get("id"))]}, write)

    def _batch_archive(self, call: Call) -> Response:
        _, inputs = self._inputs(call)
        now = self.clock.now_ms()
        for item in inputs:
            rec = self._find(item.get("id"))
            if rec is not None:
                self._archive(rec, now)
        return Response(status_code=204)

    # -- owners and properties ------------------------------------------------------------
    def _owners(self, call: Call) -> Response:
        limit = self._int(call, "limit", 100, 1, 500)
        start = self._int(call, "after", 0, 0, _HIGH)
        email = call.query.get("email", "").lower()
        archived = call.query.get("archived", "").lower() == "true"
        owners = [o for o in self.owners if o["archived"] == archived and (not email or o["email"] == email)]
        out: dict[str, Any] = {"results": owners[start:start + limit]}
        if start + limit < len(owners):
            out["paging"] = {"next": {"after": str(start + limit)}}
        return self.json(out)

    def _owner(self, call: Call) -> Response:
        key = "userId" if call.query.get("idProperty") == "userId" else "id"
        for owner in self.owners:
            if str(owner[key]) == call.params["ownerId"]:
                return self.json(owner)
        raise Reject(404, "resource not found")

    def _defs_for(self, call: Call) -> dict[str, dict[str, Any]]:
        if call.params["objectType"] not in ("contacts", "contact", "0-1"):
            raise Reject(404, f"Unable to infer object type from: {call.params['objectType']}")
        return self._properties_by_name

    def _properties(self, call: Call) -> Response:
        return self.json({"results": list(self._defs_for(call).values())})

    def _property(self, call: Call) -> Response:
        found = self._defs_for(call).get(call.params["propertyName"])
        if found is None:
            raise Reject(404, f"Property {call.params['propertyName']} does not exist")
        return self.json(found)

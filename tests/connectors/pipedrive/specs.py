"""Pipedrive's official OpenAPI specs, loaded for openapi-core, and the checks the tests make with them.

The specs live beside the repository (``../shared/specs/pipedrive``); tests skip with the path when
they are absent. Quirks of the specs, each patched here in the open rather than skipped:

* comma-separated list parameters (``status=open,won``, ``item_types=lead,deal``,
  ``include_fields``, ``fields``) are declared as *one* enum value; they take a comma-joined list
  of the enum's values (the parameters' own descriptions say so);
* v1 ``sort`` is declared as an enum of bare field names, while its description (and Pipedrive)
  take ``"update_time ASC"``, comma-separated;
* ``POST /api/v2/organizations`` requires a ``title`` property, which the schema does not define: it
  is ``name``;
* v2 declares ``additional_data.next_cursor`` a string but documents it ``null`` on the last page,
  and declares non-nullable what Pipedrive answers ``null`` when unset: a person's or deal's
  ``org_id``, a deal's ``person_id`` and ``expected_close_date``, an organization's ``address``, and
  any unset field of an activity (``deal_id``, ``project_id``, ``location``, ``priority``…);
* most error answers (400, 401, 404 on most operations, 429) are not declared per operation; those
  are checked against the error shape the v1 spec does declare (``CallLogBadRequestResponse``:
  ``success``, ``error``, ``error_info``, ``data``, ``additional_data``), which Pipedrive documents
  as the shape of every error.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import pytest

SPECS = Path(__file__).resolve().parents[3] / ".." / "shared" / "specs" / "pipedrive"
V1, V2 = "pipedrive-v1-openapi.yml", "pipedrive-v2-openapi.yml"
_NULLABLE = {"org_id", "person_id", "expected_close_date", "address", "next_cursor"}


def raw_spec(name: str) -> dict[str, Any]:
    """The parsed YAML (cached on disk by size and mtime: the files are megabytes)."""
    path = SPECS / name
    if not path.is_file():
        pytest.skip(f"Pipedrive's OpenAPI spec {name} not found at {path.resolve()} (expected the "
                    "shared/specs/pipedrive folder next to the repository)")
    stat = path.stat()
    cache = Path(tempfile.gettempdir()) / f"leadhub-{name}-{stat.st_size}-{int(stat.st_mtime)}.pickle"
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    import yaml

    data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    tmp = cache.with_suffix(f".{os.getpid()}")
    tmp.write_bytes(pickle.dumps(data))
    tmp.replace(cache)
    return data


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _patch(data: dict[str, Any]) -> dict[str, Any]:
    for node in _walk(data.get("paths", {})):
        if node.get("in") == "query" and isinstance(node.get("schema"), dict):
            schema, text = node["schema"], (node.get("description") or "").lower()
            if schema.get("enum") and "comma" in text and node["name"] != "sort":
                one = "|".join(re.escape(str(v)) for v in schema.pop("enum"))
                schema["pattern"] = f"^({one})(,({one}))*$"
            elif node["name"] == "sort" and schema.get("enum"):
                one = "|".join(schema.pop("enum"))
                schema["pattern"] = f"^({one})( (ASC|DESC|asc|desc))?(, ?({one})( (ASC|DESC|asc|desc))?)*$"
    for node in _walk(data):
        props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
        for name in _NULLABLE & set(props):
            if isinstance(props[name], dict):
                props[name]["nullable"] = True
    for path, item in data.get("paths", {}).items():
        if path.startswith("/activities"):  # an activity answers null for every field it has no value for
            for node in _walk([op.get("responses") for op in item.values() if isinstance(op, dict)]):
                for prop in (node.get("properties") if isinstance(node.get("properties"), dict) else {}).values():
                    if isinstance(prop, dict) and "type" in prop:
                        prop["nullable"] = True
    org = data.get("paths", {}).get("/organizations", {}).get("post")
    if org:
        org["requestBody"]["content"]["application/json"]["schema"]["required"] = ["name"]
    return data


@lru_cache(maxsize=2)
def api(name: str) -> Any:
    from openapi_core import Config, OpenAPI

    return OpenAPI.from_dict(_patch(raw_spec(name)), config=Config(spec_validator_cls=None))


def error_schema() -> dict[str, Any]:
    """The one error shape the v1 spec declares (and Pipedrive documents for every error)."""
    return raw_spec(V1)["paths"]["/callLogs"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]


def exchange_errors(method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes,
                    status: int, response_headers: dict[str, str], content: bytes) -> list[str]:
    """Every way one request and its answer depart from the spec; [] when both validate."""
    from openapi_core.testing import MockRequest, MockResponse
    from openapi_schema_validator import OAS30Validator

    version = V2 if path.startswith("/api/v2/") else V1
    path = "/v1" + path[len("/api/v1"):] if path.startswith("/api/v1/") else path
    spec = api(version)
    mreq = MockRequest("https://api.pipedrive.com", method, path, args=query, headers=headers, data=body or None,
                       content_type=headers.get("content-type", "application/json"))
    declared = _declared(version, method, path, status)
    problems: list[str] = []
    checks = [("request", lambda: spec.validate_request(mreq))]
    if declared:
        mresp = MockResponse(content, status, response_headers, response_headers.get("content-type", ""))
        checks.append(("response", lambda: spec.validate_response(mreq, mresp)))
    else:
        import json

        errors = list(OAS30Validator(error_schema()).iter_errors(json.loads(content)))
        problems += [f"error body: {e.message}" for e in errors]
        if json.loads(content).get("success") is not False:
            problems.append("error body: success is not false")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # openapi-core cannot check the oauth2 scheme and says so
        for what, check in checks:
            try:
                check()
            except Exception as exc:  # noqa: BLE001 - every kind of validation failure is reported
                cause = exc.__cause__
                found = [f"{what}: {list(e.absolute_path)} {e.message}" for e in getattr(cause, "schema_errors", ())]
                problems += found or [f"{what}: {type(exc).__name__}: {exc}"]
    return problems


def _declared(version: str, method: str, path: str, status: int) -> bool:
    prefix = "/v1" if version == V1 else "/api/v2"
    rel = path[len(prefix):]
    for template, ops in raw_spec(version)["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), rel) and method.lower() in ops:
            literal = template.count("{") == 0
            if literal or not any(re.fullmatch(t, rel) for t in raw_spec(version)["paths"] if "{" not in t):
                return str(status) in ops[method.lower()]["responses"]
    return False


def spec_errors(resp: httpx.Response) -> list[str]:
    req = resp.request
    return exchange_errors(req.method, req.url.path, list(req.url.params.multi_items()), dict(req.headers),
                           req.content, resp.status_code, dict(resp.headers), resp.content)


def valid(resp: httpx.Response) -> httpx.Response:
    """``resp``, asserting it and its request validate against Pipedrive's spec."""
    assert spec_errors(resp) == [], (resp.request.method, resp.request.url.path, resp.status_code, resp.text[:300])
    return resp

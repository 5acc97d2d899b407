"""Acme CRM: leads over a small JSON REST API. An example third-party LeadHub connector.

The API (served for tests and demos by :mod:`leadhub_acme.sandbox`), under ``/v1``:

* ``GET /leads?updated_since=<ISO 8601>&limit=<1..100>&cursor=<c>``: leads changed at or after
  ``updated_since``, oldest first, deleted ones as tombstones (``"deleted": true``);
  ``{"data": [...], "next_cursor": "..." | null}``. ``updated_at`` has whole seconds, so many
  leads share one: the connector keeps an inclusive cursor with a seen-set (``TimestampCursor``)
  of record *versions*, so an edit within the second of the last read is still taken.
* ``POST /leads/batch`` ``{"records": [...]}`` (at most 50): upserts, by ``id`` when given, else by
  ``external_id`` (the hub's lead id), so a retried create never duplicates; one result per
  record, in order: ``{"id", "created"}`` or ``{"error": {"code", "message"}}``.
* ``GET /users``: the owners. Auth: an ``X-Api-Key`` header. 20 requests/s, then 429 + ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from pydantic import SecretStr

from hub.connector import (
    Connector,
    ConnectorSettings,
    Limits,
    RawPage,
    RawRecord,
    RemoteUser,
    RemoteWrite,
    StatusMap,
    TimestampCursor,
    ValueMap,
    WriteResult,
    epoch_ms,
)
from hub.hookspecs import hookimpl
from hub.http import Answer, Rate, make_client

__all__ = ["AcmeSettings", "AcmeConnector", "hub_register_connectors"]


class AcmeSettings(ConnectorSettings):
    base_url: str = "https://api.acme-crm.example/v1"
    api_key: SecretStr


_ISO = "%Y-%m-%dT%H:%M:%SZ"


def _digest(item: dict[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(item, sort_keys=True).encode(), digest_size=6).hexdigest()


class AcmeConnector(Connector):
    name = "acme"
    title = "Acme CRM"
    settings_model = AcmeSettings
    lead_object = "leads"
    field_map = {"first_name": "first_name", "last_name": "last_name", "email": "email", "phone": "phone",
                 "company": "company", "title": "job_title", "country": "country", "source": "source"}
    value_maps = {"source": ValueMap({"web": "organic", "ads": "paid"}, write={"self-serve": "web"})}
    status_map = StatusMap({"Lead": {"stage": "new"}, "MQL": {"stage": "marketing_qualified"},
                            "SAL": {"stage": "accepted"}, "SQL": {"stage": "qualified"},
                            "Opportunity": {"stage": "proposal"}, "Negotiation": {"stage": "negotiation"},
                            "Closed Won": {"stage": "won"}, "Closed Lost": {"stage": "lost"},
                            "Nurture": {"stage": "nurture"}},
                           read=[({"stage": "contacted"}, "SAL")])  # a stage only Acme's users set
    owner_field = "owner_id"
    hub_id_field = "external_id"
    limits = Limits(page_size=100, batch_size=50, rate=Rate(20, 1.0))
    sandbox = "leadhub_acme.sandbox:AcmeSandbox"

    settings: AcmeSettings

    def __init__(self, settings: AcmeSettings, **kw: Any):
        super().__init__(settings, **kw)
        self.http = make_client(settings.base_url, self.guard, timeout=settings.timeout,
                                headers={"X-Api-Key": settings.api_key.get_secret_value()})

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        response = self.http.request(method, path, **kw)
        if response.status_code >= 400:  # final: the guard has retried what can be retried
            answer = Answer(response.status_code, response.headers, response.content)
            raise self.guard.error_for(answer, f"{method} {path}")
        return response.json()

    def read_pages(self, cursor: dict[str, Any] | None) -> Iterator[RawPage]:
        tc = TimestampCursor(cursor)
        params: dict[str, Any] = {"limit": self.page_size}
        if tc.since is not None:
            params["updated_since"] = datetime.fromtimestamp(tc.since // 1000, timezone.utc).strftime(_ISO)
        while True:
            data = self._call("GET", "/leads", params=params)
            records = []
            for item in data["data"]:
                ms = epoch_ms(item["updated_at"])
                version = f"{item['id']}:{_digest(item)}"  # a later edit in the same second is a new version
                if tc.admit(version, ms):
                    tc.advance(version, ms)
                    modified = datetime.fromtimestamp(ms / 1000, timezone.utc)
                    records.append(RawRecord(item["id"], modified, item, bool(item.get("deleted"))))
            yield RawPage(records, tc.to_dict())
            if not data.get("next_cursor"):
                return
            params["cursor"] = data["next_cursor"]

    def write_batch(self, batch: list[RemoteWrite]) -> list[WriteResult]:
        body = {"records": [{**w.props, **({"id": w.remote_id} if w.remote_id else {})} for w in batch]}
        results = self._call("POST", "/leads/batch", json=body)["results"]
        return [WriteResult(w.hub_id, True, r["id"]) if "error" not in r else
                WriteResult(w.hub_id, False, w.remote_id, f"{r['error']['code']}: {r['error']['message']}")
                for w, r in zip(batch, results)]

    def list_owners(self) -> list[RemoteUser]:
        users = self._call("GET", "/users")["data"]
        return [RemoteUser(u["id"], u["email"], u.get("name", "")) for u in users]

    def close(self) -> None:
        self.http.close()


@hookimpl
def hub_register_connectors(register):  # type: ignore[no-untyped-def]
    register(AcmeConnector)

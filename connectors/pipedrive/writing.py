"""Writes, one record at a time (Pipedrive has no batch endpoint for leads, persons or deals).

A record's flattened properties (see :mod:`connectors.pipedrive.maps`) are split into what belongs to
the person (``person.*``), the organization (``org.*``), the lead or deal, and the status fields, and
written with the fewest calls: a lead ``PATCH`` only when a lead field changes, a person ``PATCH``
only when a person field changes or the person still lacks the hub's marker. A status from
Opportunity on converts the lead (``POST /api/v2/leads/{id}/convert/deal``, then its status job) and
sets the deal; Closed Lost on a lead that is not a deal archives it (Pipedrive's way of dropping a
lead); a lead-phase status sent to a lead that already became a deal leaves the deal's status alone.

**Idempotent creates.** Pipedrive has no upsert and no client-chosen ids, so a create first looks
for the hub id — ``GET /api/v2/itemSearch?term=<hub id>&item_types=lead,deal,person&fields=custom_fields
&exact_match=true`` (20 tokens) — and only then creates, person first, then the lead, each carrying
the hub id in its custom field. A retry after a crash therefore finds whatever the first attempt
made: the lead (or, converted, its deal) → it is updated instead; only the person (the crash fell
between the two creates) → the lead is created for that person. What the argument rests on: the
hub id is unique per lead and written in the same request that creates each object, so an object
either exists with the id or not at all; the one gap is Pipedrive's search index lagging a fresh
write, which a retry seconds after the crash could fall into (the sync engine retries on the next
run, by when it has caught up). The same holds within a run: a ``POST`` that fails with a 5xx or a
dropped connection may have created its object, so it is not retried on the spot (only a 429 is);
the record stays pending and the next run's search finds what was made. Organizations are found by
exact name before one is created, one creation per name at a time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from hub.connector import RemoteWrite, WriteResult
from hub.errors import TransientError

from .api import PipedriveApi, Refused

__all__ = ["Parts", "Writer", "is_key", "split"]

_LEAD_KEYS = ("value", "currency", "expected_close_date", "probability", "lost_reason", "owner_id")


def is_key(name: str) -> bool:
    """A Pipedrive custom-field key: 40 lowercase hex characters."""
    return len(name) == 40 and all(c in "0123456789abcdef" for c in name)


@dataclass
class Parts:
    person: dict[str, Any] = field(default_factory=dict)
    org: dict[str, Any] = field(default_factory=dict)
    lead: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)


def split(props: dict[str, Any]) -> Parts:
    parts = Parts()
    for key, value in props.items():
        if key.startswith("person."):
            parts.person[key[7:]] = value
        elif key.startswith("org."):
            parts.org[key[4:]] = value
        elif key in ("lead_label", "is_archived", "deal_status", "deal_stage"):
            parts.status[key] = value
        elif key in _LEAD_KEYS or is_key(key):
            parts.lead[key] = value
    return parts


class Writer:
    """Writes one :class:`RemoteWrite`; see the module docstring."""

    def __init__(self, api: PipedriveApi, *, hub_key: str, person_hub_key: str, lost_key: str, currency: str,
                 pipeline: int | None, poll_interval: float = 0.5, poll_attempts: int = 60):
        self.api, self.hub_key, self.person_hub_key, self.lost_key = api, hub_key, person_hub_key, lost_key
        self.currency, self.pipeline = currency, pipeline
        self.poll_interval, self.poll_attempts = poll_interval, poll_attempts
        self._scanned = False
        self._scan_lock = threading.Lock()  # writes run concurrently: one scans, the others wait for its result

    def write(self, w: RemoteWrite) -> WriteResult:
        try:
            rid = self._update(w.remote_id, split(w.props), w.hub_id) if w.remote_id \
                else self._create(split(w.props), w.hub_id)
            return WriteResult(w.hub_id, True, rid)
        except Refused as exc:
            return WriteResult(w.hub_id, False, w.remote_id, exc.vendor_message)
        except TransientError as exc:
            return WriteResult(w.hub_id, False, w.remote_id, str(exc), retryable=True)

    # -- create -----------------------------------------------------------------------------------
    def _create(self, parts: Parts, hub_id: str) -> str:
        found = self.api.find_by_hub_id(hub_id)
        if found["lead"]:
            return self._update(found["lead"][0], parts, hub_id)
        for deal_id in found["deal"]:
            deal = self.api.call("GET", f"/deals/{deal_id}", v2=True, params={"include_fields": "source_lead_id"})
            lead_id = deal["data"].get("source_lead_id")
            if lead_id:
                self._remember_deal(lead_id, deal["data"])
                return self._update(lead_id, parts, hub_id)
        org_id = self.api.org_for(parts.org.get("name"))
        self._org_fields(org_id, {k: v for k, v in parts.org.items() if v is not None})
        owner = _int(parts.lead.get("owner_id"))
        body = {**self._person_body(parts.person, None, hub_id), "org_id": org_id,
                **({"owner_id": owner} if owner else {})}
        if found["person"]:
            person = self.api.call("PATCH", f"/persons/{found['person'][0]}", v2=True, body=body)["data"]
        else:
            body.setdefault("name", parts.person.get("email") or parts.org.get("name") or f"Lead {hub_id}")
            person = self.api.call("POST", "/persons", v2=True, body=body)["data"]
        self.api.persons.put(person["id"], person)
        lead_body = {k: v for k, v in self._lead_body(parts, None).items() if v is not None}
        lead_body.pop("is_archived", None)  # addLead takes no is_archived: archived below
        name = person.get("name") or ""
        lead_body.update(title=" - ".join(x for x in (parts.org.get("name"), name) if x) or f"Lead {hub_id}",
                         person_id=person["id"], organization_id=org_id)
        lead = self.api.call("POST", "/leads", body=lead_body)["data"]
        self._remember_lead(lead)
        self._after_status(lead["id"], parts)
        return lead["id"]

    # -- update -----------------------------------------------------------------------------------
    def _update(self, lead_id: str, parts: Parts, hub_id: str) -> str:
        known = self.api.leads.take(lead_id) or {}
        if known.get("deal_id"):
            return self._update_deal(lead_id, known, parts, hub_id)
        if parts.lead.get("value") is not None and "currency" not in known and not parts.lead.get("currency"):
            try:  # a value replaces amount *and* currency: keep the lead's own currency
                self._remember_lead(self.api.call("GET", f"/leads/{lead_id}")["data"])
                known = self.api.leads.take(lead_id) or known
            except Refused as exc:
                if exc.status != 404:
                    raise
        body = self._lead_body(parts, known.get("currency"))
        org_id = None
        if "name" in parts.org:
            org_id = body["organization_id"] = self.api.org_for(parts.org["name"])
        converting = parts.status.get("deal_status") in ("open", "won")
        stamped = known.get("hub_id") == hub_id and set(body) <= {self.hub_key}
        lead = None
        try:
            if body and not stamped:
                lead = self.api.call("PATCH", f"/leads/{lead_id}", body=body)["data"]
            elif known.get("person_id") is None:
                lead = self.api.call("GET", f"/leads/{lead_id}")["data"]
        except Refused as exc:
            if exc.status != 404:
                raise
            deal = self._deal_for(lead_id, hub_id)
            if deal is None:
                raise
            return self._update_deal(lead_id, self.api.leads.take(lead_id) or {}, parts, hub_id)
        if lead is not None:
            self._remember_lead(lead)
            known = self.api.leads.take(lead_id) or known
        self._write_person(known.get("person_id"), parts, hub_id, org_id)
        self._org_fields(org_id or known.get("org_id"), parts.org)
        if converting:
            self._convert(lead_id, parts)
        return lead_id

    def _update_deal(self, lead_id: str, known: dict[str, Any], parts: Parts, hub_id: str) -> str:
        body = self._deal_body(parts, known.get("status"))
        org_id = None
        if "name" in parts.org:
            org_id = body["org_id"] = self.api.org_for(parts.org["name"])
        if body:
            deal = self.api.call("PATCH", f"/deals/{known['deal_id']}", v2=True, body=body)["data"]
            self._remember_deal(lead_id, deal)
            known = self.api.leads.take(lead_id) or known
        self._write_person(known.get("person_id"), parts, hub_id, org_id)
        self._org_fields(org_id or known.get("org_id"), parts.org)
        return lead_id

    def _after_status(self, lead_id: str, parts: Parts) -> None:
        """A new lead's status beyond a label: converted to a deal, or archived (lost)."""
        status = parts.status.get("deal_status")
        if status in ("open", "won"):
            self._convert(lead_id, parts)
        elif status == "lost":
            self._remember_lead(self.api.call("PATCH", f"/leads/{lead_id}", body={"is_archived": True})["data"])

    def _convert(self, lead_id: str, parts: Parts) -> None:
        stage = parts.status.get("deal_stage")
        stage_id = self.api.stage_id(stage, self.pipeline) if stage else None
        body = {"stage_id": stage_id} if stage_id else ({"pipeline_id": self.pipeline} if self.pipeline else {})
        job = self.api.call("POST", f"/leads/{lead_id}/convert/deal", v2=True, body=body)["data"]
        for _attempt in range(self.poll_attempts):
            state = self.api.call("GET", f"/leads/{lead_id}/convert/status/{job['conversion_id']}", v2=True)["data"]
            if state["status"] == "completed":
                break
            if state["status"] in ("failed", "rejected"):
                raise Refused(f"lead {lead_id}: conversion to a deal {state['status']}", status=422,
                              vendor_message=f"Pipedrive's conversion of lead {lead_id} to a deal {state['status']}")
            time.sleep(self.poll_interval)
        else:
            raise TransientError(f"lead {lead_id}: conversion to a deal still running after "
                                 f"{self.poll_attempts * self.poll_interval:g}s")
        known = {**(self.api.leads.take(lead_id) or {}), "deal_id": state["deal_id"], "status": "open"}
        self.api.leads.put(lead_id, known)
        # the deal took the lead's value, dates, owner and custom fields; only deal-only ones remain
        rest = Parts(lead={k: v for k, v in parts.lead.items() if k == "probability"},
                     status={k: v for k, v in parts.status.items()
                             if k == "deal_status" and v != "open" or k == "deal_stage" and not stage_id})
        body = self._deal_body(rest, "open")
        if body:
            self._remember_deal(lead_id, self.api.call("PATCH", f"/deals/{state['deal_id']}", v2=True,
                                                       body=body)["data"])

    def _deal_for(self, lead_id: str, hub_id: str) -> dict[str, Any] | None:
        """The deal a converted lead became: by the hub id it carries, else by one scan of all deals."""
        for deal_id in self.api.find_by_hub_id(hub_id)["deal"]:
            deal = self.api.call("GET", f"/deals/{deal_id}", v2=True, params={"include_fields": "source_lead_id"})
            if deal["data"].get("source_lead_id") == lead_id:
                self._remember_deal(lead_id, deal["data"])
                return deal["data"]
        with self._scan_lock:
            if not self._scanned:
                params: dict[str, Any] = {"include_fields": "source_lead_id", "limit": 500}
                while True:
                    rows, params["cursor"] = self.api.v2_list("/deals", params)
                    for deal in rows:
                        if deal.get("source_lead_id"):
                            self._remember_deal(deal["source_lead_id"], deal)
                    if not params["cursor"]:
                        break
                self._scanned = True  # only once the scan is complete: a write that missed waits for it
        known = self.api.leads.take(lead_id) or {}
        return {"id": known["deal_id"]} if known.get("deal_id") else None

    # -- persons and organizations ------------------------------------------------------------------
    def _write_person(self, person_id: int | None, parts: Parts, hub_id: str, org_id: int | None) -> None:
        if person_id is None:
            return
        if not parts.person and org_id is None:
            return
        current = self.api.persons.take(person_id)
        if current is None:  # names and emails are merged with what the person holds
            current = self.api.call("GET", f"/persons/{person_id}", v2=True)["data"]
        marked = bool((current.get("custom_fields") or {}).get(self.person_hub_key))
        body = self._person_body(parts.person, current, None if marked else hub_id)
        if org_id is not None:
            body["org_id"] = org_id
        self.api.persons.put(person_id, self.api.call("PATCH", f"/persons/{person_id}", v2=True, body=body)["data"])

    def _person_body(self, person: dict[str, Any], current: dict[str, Any] | None,
                     hub_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if "first_name" in person or "last_name" in person:
            first = person.get("first_name", (current or {}).get("first_name")) or ""
            last = person.get("last_name", (current or {}).get("last_name")) or ""
            if f"{first} {last}".strip():
                body["name"] = f"{first} {last}".strip()
        for name, key in (("email", "emails"), ("phone", "phones")):
            if name in person:
                value = person[name]
                kept = [{**x, "primary": False} for x in (current or {}).get(key) or []
                        if not x.get("primary") and x.get("value") != value]
                body[key] = ([{"value": value, "primary": True, "label": "work"}] if value else []) + kept
        custom = {k: v for k, v in person.items() if is_key(k)}
        if hub_id:
            custom[self.person_hub_key] = hub_id
        if custom:
            body["custom_fields"] = custom
        return body

    def _org_fields(self, org_id: int | None, org: dict[str, Any]) -> None:
        custom = {k: v for k, v in org.items() if is_key(k)}
        if org_id is None or not custom:
            return
        held = (self.api.orgs.get(org_id) or {}).get("custom_fields")
        if held is not None and all(held.get(k) == v for k, v in custom.items()):
            return
        self.api.remember_org(self.api.call("PATCH", f"/organizations/{org_id}", v2=True,
                                            body={"custom_fields": custom})["data"])

    # -- bodies -----------------------------------------------------------------------------------
    def _lead_body(self, parts: Parts, currency: str | None) -> dict[str, Any]:
        lead, status = parts.lead, parts.status
        body: dict[str, Any] = {k: v for k, v in lead.items() if is_key(k)}
        if _int(lead.get("owner_id")):
            body["owner_id"] = _int(lead["owner_id"])
        if "value" in lead:
            body["value"] = None if lead["value"] is None else {
                "amount": float(lead["value"]), "currency": lead.get("currency") or currency or self.currency}
        if "expected_close_date" in lead:
            body["expected_close_date"] = lead["expected_close_date"]
        if "lost_reason" in lead:
            body[self.lost_key] = lead["lost_reason"]
        if "lead_label" in status:
            body["label_ids"] = [self.api.label_id(status["lead_label"])] if status["lead_label"] else []
            body["is_archived"] = False
        elif status.get("deal_status") == "lost":
            body["is_archived"] = True
        return body

    def _deal_body(self, parts: Parts, current: str | None) -> dict[str, Any]:
        lead, status = parts.lead, parts.status
        body: dict[str, Any] = {}
        custom = {k: v for k, v in lead.items() if is_key(k)}
        if _int(lead.get("owner_id")):
            body["owner_id"] = _int(lead["owner_id"])
        if "value" in lead:
            body["value"] = float(lead["value"] or 0)
            if lead.get("currency"):
                body["currency"] = lead["currency"]
        if "expected_close_date" in lead:
            body["expected_close_date"] = lead["expected_close_date"]
        if "probability" in lead:
            body["probability"] = None if lead["probability"] is None else round(float(lead["probability"]) * 100)
        if status.get("deal_status"):
            body["status"] = status["deal_status"]
        if status.get("deal_stage"):
            stage_id = self.api.stage_id(status["deal_stage"], self.pipeline)
            if stage_id is None:
                raise Refused(f"no stage named {status['deal_stage']!r}", status=400,
                              vendor_message=f"Pipedrive has no deal stage named {status['deal_stage']!r}")
            body["stage_id"] = stage_id
        if "lost_reason" in lead:
            custom[self.lost_key] = lead["lost_reason"]
            if body.get("status", current) == "lost":
                body["lost_reason"] = lead["lost_reason"]
        if custom:
            body["custom_fields"] = custom
        return body

    # -- the connector's memory of what it read or wrote --------------------------------------------
    def _remember_lead(self, lead: dict[str, Any]) -> None:
        self.api.leads.put(lead["id"], {"person_id": lead.get("person_id"), "org_id": lead.get("organization_id"),
                                        "deal_id": None, "hub_id": lead.get(self.hub_key),
                                        "currency": (lead.get("value") or {}).get("currency"),
                                        "archived": lead.get("is_archived")})

    def _remember_deal(self, lead_id: str, deal: dict[str, Any]) -> None:
        self.api.leads.put(lead_id, {"person_id": deal.get("person_id"), "org_id": deal.get("org_id"),
                                     "deal_id": deal["id"],
                                     "hub_id": (deal.get("custom_fields") or {}).get(self.hub_key),
                                     "currency": deal.get("currency"), "status": deal.get("status")})


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None

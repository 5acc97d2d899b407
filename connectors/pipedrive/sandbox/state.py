"""The Pipedrive sandbox's records: users, lead labels, stages, organizations, persons, leads, deals, and
the rules Pipedrive applies when they are written.

Records are plain dicts keyed by Pipedrive's own field names, plus internal ``add``/``upd`` epoch
milliseconds and a ``custom`` dict of custom-field values (40-character hash keys). Rendering turns
them into the official shapes: v1 leads stamp times in milliseconds (``2020-10-14T11:30:36.551Z``)
and put custom fields at the top level; v2 persons, organizations and deals stamp times in seconds
(``2021-01-01T00:00:00Z``) and put custom fields under ``custom_fields``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from hub.testing.sandbox import Reject

from .catalog import DEAL_FIELDS, ORG_FIELDS, PERSON_FIELDS, STAGES, iso_ms, iso_s

__all__ = ["CrmState", "Failure"]

_EMAIL = re.compile(r"^[^@\s\"]+@[^@\s\"]+\.[A-Za-z]{2,}$")


class Failure(Reject):
    """A refused request in Pipedrive's error shape; v2 answers also carry a ``code``."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(status, message, **({"code": code} if code else {}))


def _invalid(message: str) -> Failure:
    return Failure(400, f"Validation failed: {message}", "ERR_SCHEMA_VALIDATION_FAILED")


class CrmState:
    """Every record of one company account, with the rules Pipedrive applies on write."""

    def __init__(self) -> None:
        self.users: list[dict[str, Any]] = []
        self.labels: dict[str, dict[str, Any]] = {}
        self.stages: dict[int, dict[str, Any]] = {
            i: {"id": i, "order_nr": i, "name": name, "is_deleted": False, "deal_probability": p, "pipeline_id": 1,
                "is_deal_rot_enabled": False, "days_to_rotten": None, "add": 1_577_836_800_000,
                "upd": 1_577_836_800_000} for i, (name, p) in enumerate(STAGES, 1)}
        self.orgs: dict[int, dict[str, Any]] = {}
        self.persons: dict[int, dict[str, Any]] = {}
        self.leads: dict[str, dict[str, Any]] = {}
        self.deals: dict[int, dict[str, Any]] = {}
        self.conversions: dict[str, dict[str, Any]] = {}
        self.version = 0  # bumped on every write: list endpoints cache their sorted views by it
        #: exact-match search index: lowercased custom-field value or org name -> {(item type, id)}
        self.index: dict[str, set[tuple[str, Any]]] = {}
        self._ids = {"org": 0, "person": 0, "deal": 0, "seq": 0}

    def next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def touch(self) -> None:
        self.version += 1

    def reindex(self, kind: str, rec: dict[str, Any], before: list[str]) -> None:
        """Move ``rec``'s exact-search keys from ``before`` to its current values."""
        key = (kind, rec["id"])
        for value in before:
            self.index.get(value, set()).discard(key)
        for value in self.search_keys(rec):
            self.index.setdefault(value, set()).add(key)

    @staticmethod
    def search_keys(rec: dict[str, Any]) -> list[str]:
        if rec.get("deleted"):
            return []
        keys = [str(v).lower() for v in rec["custom"].values() if v not in (None, "")]
        return keys + ([rec["name"].lower()] if rec.get("name") else [])

    # -- lookups ------------------------------------------------------------------------------
    def live(self, table: dict[Any, dict[str, Any]], key: Any) -> dict[str, Any] | None:
        rec = table.get(key)
        return None if rec is None or rec.get("deleted") else rec

    def user_ids(self) -> set[int]:
        return {u["id"] for u in self.users}

    def stage_by_name(self, name: str) -> dict[str, Any] | None:
        return next((s for s in self.stages.values() if s["name"] == name), None)

    def label_by_name(self, name: str) -> dict[str, Any] | None:
        return next((lb for lb in self.labels.values() if lb["name"] == name), None)

    # -- checks shared by the v1 and v2 handlers ------------------------------------------------
    def check_owner(self, owner: Any, v2: bool) -> int | None:
        if owner is None:
            return None
        if not isinstance(owner, int) or isinstance(owner, bool) or owner not in self.user_ids():
            if v2:
                raise _invalid(f"owner_id: user {owner!r} does not exist")
            raise Failure(400, f"User with ID {owner} not found")
        return owner

    @staticmethod
    def check_custom(values: Any, known: dict[str, str], v2: bool) -> dict[str, Any]:
        if values is None:
            return {}
        if not isinstance(values, dict):
            raise _invalid("custom_fields: Expected object")
        for key, value in values.items():
            if key not in known:
                raise _invalid(f"custom_fields: Unknown custom field key {key!r}")
            if value is not None and not isinstance(value, (str, int, float)):
                raise _invalid(f"custom_fields.{key}: Expected string, received {type(value).__name__}")
        return {k: (None if v is None else str(v)) for k, v in values.items()}

    @staticmethod
    def check_contacts(values: Any, what: str, email: bool) -> list[dict[str, Any]]:
        if values is None:
            return []
        if not isinstance(values, list):
            raise _invalid(f"{what}: Expected array")
        out = []
        for i, item in enumerate(values):
            if not isinstance(item, dict) or not isinstance(item.get("value"), str):
                raise _invalid(f"{what}[{i}].value: Required")
            if email and not _EMAIL.match(item["value"]):
                raise _invalid(f"{what}[{i}].value: '{item['value']}' is not a valid email address")
            out.append({"value": item["value"], "primary": bool(item.get("primary", i == 0)),
                        "label": item.get("label") or "work"})
        if out and not any(x["primary"] for x in out):
            out[0]["primary"] = True
        return out

    # -- writes ---------------------------------------------------------------------------------
    def new_org(self, body: dict[str, Any], now: int) -> dict[str, Any]:
        org = {"id": self.next_id("org"), "name": None, "owner_id": self.users[0]["id"] if self.users else 1,
               "add": now, "upd": now, "deleted": False, "visible_to": 3, "label_ids": [], "address": None,
               "custom": {}}
        self.orgs[org["id"]] = org
        return self.edit_org(org, body, now, create=True)

    def edit_org(self, org: dict[str, Any], body: dict[str, Any], now: int, create: bool = False) -> dict[str, Any]:
        before = self.search_keys(org)
        if "name" in body or create:
            if not isinstance(body.get("name"), str) or not body["name"].strip():
                raise _invalid("name: Required")
            org["name"] = body["name"].strip()
        if "owner_id" in body:
            org["owner_id"] = self.check_owner(body["owner_id"], True) or org["owner_id"]
        if isinstance(body.get("address"), dict) or body.get("address") is None and "address" in body:
            org["address"] = body["address"]
        org["custom"].update(self.check_custom(body.get("custom_fields"), ORG_FIELDS, True))
        org["upd"] = now
        self.reindex("organization", org, before)
        self.touch()
        return org

    def new_person(self, body: dict[str, Any], now: int) -> dict[str, Any]:
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            raise _invalid("name: Required")
        person = {"id": self.next_id("person"), "name": "", "first_name": "", "last_name": "",
                  "owner_id": self.users[0]["id"] if self.users else 1, "org_id": None, "add": now, "upd": now,
                  "emails": [], "phones": [], "deleted": False, "visible_to": 3, "label_ids": [], "custom": {}}
        self.edit_person(person, body, now)
        self.persons[person["id"]] = person
        return person

    def edit_person(self, person: dict[str, Any], body: dict[str, Any], now: int) -> dict[str, Any]:
        before = self.search_keys(person)
        emails = self.check_contacts(body["emails"], "emails", True) if "emails" in body else person["emails"]
        phones = self.check_contacts(body["phones"], "phones", False) if "phones" in body else person["phones"]
        custom = self.check_custom(body.get("custom_fields"), PERSON_FIELDS, True)
        owner = self.check_owner(body["owner_id"], True) if "owner_id" in body else person["owner_id"]
        org_id = body.get("org_id", person["org_id"])
        if org_id is not None and self.live(self.orgs, org_id) is None:
            raise _invalid(f"org_id: organization {org_id!r} does not exist")
        if "name" in body:
            if not isinstance(body["name"], str) or not body["name"].strip():
                raise _invalid("name: Expected non-empty string")
            name = " ".join(body["name"].split())
            first, _, last = name.partition(" ")
            person.update(name=name, first_name=first, last_name=last)
        person.update(emails=emails, phones=phones, owner_id=owner or person["owner_id"], org_id=org_id, upd=now)
        person["custom"].update(custom)
        self.reindex("person", person, before)
        self.touch()
        return person

    def check_lead_body(self, body: Any, lead: dict[str, Any] | None) -> dict[str, Any]:
        """v1 lead fields, checked; raises the v1 error Pipedrive would give."""
        if not isinstance(body, dict):
            raise Failure(400, "Request body must be a JSON object")
        clean: dict[str, Any] = {}
        if lead is None or "title" in body:
            if not isinstance(body.get("title"), str) or not body["title"].strip():
                raise Failure(400, "Title is required")
            clean["title"] = body["title"]
        for key in ("person_id", "organization_id"):
            if key in body:
                value = body[key]
                table = self.persons if key == "person_id" else self.orgs
                if value is not None and (not isinstance(value, int) or self.live(table, value) is None):
                    raise Failure(400, f"{'Person' if key == 'person_id' else 'Organization'} with ID "
                                       f"{value} not found")
                clean[key] = value
        person = clean.get("person_id", lead and lead["person_id"])
        org = clean.get("organization_id", lead and lead["organization_id"])
        if person is None and org is None:
            raise Failure(400, "A lead must be linked to a person or an organization or both")
        if "owner_id" in body:
            clean["owner_id"] = self.check_owner(body["owner_id"], False)
        if "label_ids" in body:
            ids = body["label_ids"] or []
            unknown = [i for i in ids if i not in self.labels] if isinstance(ids, list) else [ids]
            if unknown:
                raise Failure(400, f"Lead label(s) not found: {', '.join(map(str, unknown))}")
            clean["label_ids"] = list(ids)
        if "value" in body:
            value = body["value"]
            if value is not None and (not isinstance(value, dict) or not isinstance(value.get("amount"), (int, float))
                                      or isinstance(value.get("amount"), bool)
                                      or not isinstance(value.get("currency"), str)):
                raise Failure(400, "The value must be an object with a numeric amount and a currency, "
                                   "e.g. { \"amount\": 200, \"currency\": \"EUR\" }")
            clean["value"] = value and {"amount": value["amount"], "currency": value["currency"]}
        if "expected_close_date" in body:
            date = body["expected_close_date"]
            if date is not None and not (isinstance(date, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)):
                raise Failure(400, f"Invalid expected_close_date {date!r}: use the format YYYY-MM-DD")
            clean["expected_close_date"] = date
        for key in ("is_archived", "was_seen"):
            if key in body:
                if not isinstance(body[key], bool):
                    raise Failure(400, f"{key} must be a boolean")
                clean[key] = body[key]
        for key in ("origin_id", "channel_id", "visible_to", "channel"):
            if key in body:
                clean[key] = body[key]
        custom = {k: v for k, v in body.items() if k in DEAL_FIELDS}
        clean["custom"] = {k: (None if v is None else str(v)) for k, v in custom.items()}
        return clean

    def new_lead(self, clean: dict[str, Any], now: int, *, creator: int, source: str = "API",
                 lead_id: str | None = None) -> dict[str, Any]:
        lead = {"id": lead_id or str(uuid.uuid4()), "title": "", "owner_id": creator, "creator_id": creator,
                "label_ids": [], "person_id": None, "organization_id": None, "source_name": source,
                "origin": "API" if source == "API" else "ManuallyCreated", "origin_id": None, "channel": None,
                "channel_id": None, "source_deal_id": None, "is_archived": False, "was_seen": False, "value": None,
                "expected_close_date": None, "next_activity_id": None, "add": now, "upd": now, "visible_to": "3",
                "cc_email": "", "custom": {}, "deleted": False, "seq": self.next_id("seq")}
        lead["cc_email"] = f"company+1+lead{lead['id'][:8]}@sandbox.pipedrivemail.com"
        self.leads[lead["id"]] = lead
        return self.edit_lead(lead, clean, now)

    def edit_lead(self, lead: dict[str, Any], clean: dict[str, Any], now: int) -> dict[str, Any]:
        before = self.search_keys(lead)
        custom = clean.pop("custom", {})
        lead.update({k: v for k, v in clean.items() if k != "owner_id" or v is not None})
        lead["custom"].update(custom)
        lead["upd"] = now
        self.reindex("lead", lead, before)
        self.touch()
        return lead

    def convert(self, lead: dict[str, Any], stage_id: int | None, now: int) -> dict[str, Any]:
        """Lead → deal: the deal takes its fields and custom-field values; the lead is marked deleted."""
        stage = self.stages[stage_id or 1]
        value = lead["value"] or {}
        deal = {"id": self.next_id("deal"), "title": lead["title"], "creator_user_id": lead["creator_id"],
                "owner_id": lead["owner_id"], "person_id": lead["person_id"], "org_id": lead["organization_id"],
                "pipeline_id": 1, "stage_id": stage["id"], "value": value.get("amount") or 0,
                "currency": value.get("currency") or "EUR", "add": now, "upd": now, "stage_change": now,
                "status": "open", "probability": None, "lost_reason": None, "close": None, "won": None,
                "lost": None, "expected_close_date": lead["expected_close_date"], "label_ids": [],
                "origin": lead["origin"], "origin_id": lead["origin_id"], "channel": lead["channel"],
                "channel_id": lead["channel_id"], "source_lead_id": lead["id"], "visible_to": 3,
                "custom": dict(lead["custom"]), "deleted": False, "is_archived": False}
        self.deals[deal["id"]] = deal
        before = self.search_keys(lead)
        lead.update(deleted=True, upd=now)
        self.reindex("lead", lead, before)
        self.reindex("deal", deal, [])
        self.touch()
        return deal

    def edit_deal(self, deal: dict[str, Any], body: Any, now: int) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _invalid("body: Expected object")
        status = body.get("status", deal["status"])
        if status not in ("open", "won", "lost"):
            raise _invalid(f"status: Invalid enum value. Expected 'open' | 'won' | 'lost', received '{status}'")
        if body.get("lost_reason") is not None and status != "lost":
            raise _invalid("lost_reason: can only be set if deal status is lost")
        if "stage_id" in body and body["stage_id"] not in self.stages:
            raise _invalid(f"stage_id: stage {body['stage_id']!r} does not exist")
        for key in ("value", "probability"):
            if body.get(key) is not None and (not isinstance(body[key], (int, float)) or isinstance(body[key], bool)):
                raise _invalid(f"{key}: Expected number, received {type(body[key]).__name__}")
        date = body.get("expected_close_date")
        if date is not None and not (isinstance(date, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)):
            raise _invalid(f"expected_close_date: Invalid date {date!r}")
        custom = self.check_custom(body.get("custom_fields"), DEAL_FIELDS, True)
        owner = self.check_owner(body["owner_id"], True) if "owner_id" in body else deal["owner_id"]
        if "person_id" in body and body["person_id"] is not None and self.live(self.persons, body["person_id"]) is None:
            raise _invalid(f"person_id: person {body['person_id']!r} does not exist")
        if "org_id" in body and body["org_id"] is not None and self.live(self.orgs, body["org_id"]) is None:
            raise _invalid(f"org_id: organization {body['org_id']!r} does not exist")
        before = self.search_keys(deal)
        if status != deal["status"]:
            deal.update(won=now if status == "won" else None, lost=now if status == "lost" else None,
                        close=None if status == "open" else now)
            if status != "lost":
                deal["lost_reason"] = None
        if "stage_id" in body and body["stage_id"] != deal["stage_id"]:
            deal["stage_change"] = now
        for key in ("title", "person_id", "org_id", "stage_id", "value", "currency", "probability", "lost_reason",
                    "expected_close_date", "visible_to"):
            if key in body:
                deal[key] = body[key]
        deal.update(status=status, owner_id=owner or deal["owner_id"], upd=now)
        deal["custom"].update(custom)
        self.reindex("deal", deal, before)
        self.touch()
        return deal

    def delete(self, kind: str, rec: dict[str, Any], now: int) -> None:
        before = self.search_keys(rec)
        rec.update(deleted=True, upd=now)
        self.reindex(kind, rec, before)
        self.touch()

    # -- rendering ------------------------------------------------------------------------------
    def render_lead(self, lead: dict[str, Any]) -> dict[str, Any]:
        keys = ("id", "title", "owner_id", "creator_id", "label_ids", "person_id", "organization_id", "source_name",
                "origin", "origin_id", "channel", "channel_id", "source_deal_id", "is_archived", "was_seen", "value",
                "expected_close_date", "next_activity_id", "visible_to", "cc_email")
        out = {k: lead[k] for k in keys}
        out.update(add_time=iso_ms(lead["add"]), update_time=iso_ms(lead["upd"]))
        out.update({k: v for k, v in lead["custom"].items() if v is not None})
        return out

    @staticmethod
    def render_person(p: dict[str, Any]) -> dict[str, Any]:
        return {"id": p["id"], "name": p["name"], "first_name": p["first_name"], "last_name": p["last_name"],
                "owner_id": p["owner_id"], "org_id": p["org_id"], "add_time": iso_s(p["add"]),
                "update_time": iso_s(p["upd"]), "emails": [dict(e) for e in p["emails"]],
                "phones": [dict(x) for x in p["phones"]], "is_deleted": p["deleted"], "visible_to": p["visible_to"],
                "label_ids": list(p["label_ids"]), "custom_fields": dict(p["custom"])}

    @staticmethod
    def render_org(o: dict[str, Any]) -> dict[str, Any]:
        return {"id": o["id"], "name": o["name"], "owner_id": o["owner_id"], "add_time": iso_s(o["add"]),
                "update_time": iso_s(o["upd"]), "is_deleted": o["deleted"], "visible_to": o["visible_to"],
                "label_ids": list(o["label_ids"]), "address": o["address"], "custom_fields": dict(o["custom"])}

    @staticmethod
    def render_deal(d: dict[str, Any], include: set[str] = frozenset()) -> dict[str, Any]:
        stamp = lambda ms: None if ms is None else iso_s(ms)
        out = {"id": d["id"], "title": d["title"], "creator_user_id": d["creator_user_id"], "owner_id": d["owner_id"],
               "person_id": d["person_id"], "org_id": d["org_id"], "pipeline_id": d["pipeline_id"],
               "stage_id": d["stage_id"], "value": d["value"], "currency": d["currency"], "add_time": iso_s(d["add"]),
               "update_time": iso_s(d["upd"]), "stage_change_time": stamp(d["stage_change"]),
               "is_deleted": d["deleted"], "is_archived": d["is_archived"], "status": d["status"],
               "probability": d["probability"], "lost_reason": d["lost_reason"], "visible_to": d["visible_to"],
               "close_time": stamp(d["close"]), "expected_close_date": d["expected_close_date"],
               "label_ids": list(d["label_ids"]), "origin": d["origin"], "origin_id": d["origin_id"],
               "channel": d["channel"], "channel_id": d["channel_id"], "custom_fields": dict(d["custom"])}
        if d["won"] is not None:
            out["won_time"] = iso_s(d["won"])
        if d["lost"] is not None:
            out["lost_time"] = iso_s(d["lost"])
        if "source_lead_id" in include:
            out["source_lead_id"] = d["source_lead_id"]
        return out

    @staticmethod
    def render_stage(s: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in s.items() if k not in ("add", "upd")}, "add_time": iso_s(s["add"]),
                "update_time": iso_s(s["upd"])}

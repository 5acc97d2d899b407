"""The Pipedrive sandbox as a CRM user sees it: seeding, and canonical fields in and out.

This is the sandbox's own knowledge of how a sales team keeps leads in Pipedrive (it does not use
the connector's maps):

* a lead is a v1 lead linked to a person (name, primary email and phone, custom fields ``Job title``
  and ``Country``) and, with a company, an organization (custom fields ``Industry``, ``Company
  size``); ``source`` and a loss reason are lead/deal custom fields;
* its status is a lead label — ``Cold`` (or none) Lead, ``Warm``/``MQL`` MQL, ``SAL`` SAL, ``Hot`` SQL,
  ``Nurture`` Nurture — or, archived, Closed Lost; from Opportunity on the lead has been converted to
  a deal: open in ``Qualified``/``Contact Made``/``Demo Scheduled`` (Opportunity) or ``Proposal
  Made``/``Negotiations Started`` (Negotiation), ``won`` (Closed Won) or ``lost`` (Closed Lost).

A converted lead keeps its id as the deal's ``source_lead_id``, which is how :meth:`remote_get` and
:meth:`remote_update` find it.
"""

from __future__ import annotations

import gc
import random
import uuid
from collections.abc import Iterable
from datetime import date
from typing import Any

from hub.testing import fakedata
from hub.testing.sandbox import Clock

from .catalog import COMPANY_SIZE, COUNTRY, HUB_ID, INDUSTRY, JOB_TITLE, LABELS, LOST_REASON, SOURCE
from .state import CrmState

__all__ = ["LABEL_STATUS", "SOURCE_NAMES", "STAGE_STATUS", "CanonicalView"]

SOURCE_NAMES = {"paid": "Paid Ads", "organic": "Organic Search", "referral": "Referral", "partner": "Partner",
                "event": "Event", "self-serve": "Website", "outbound": "Cold Outreach", "social": "Social Media",
                "email": "Email Campaign"}
LABEL_STATUS = {"": "Lead", "Cold": "Lead", "Warm": "MQL", "MQL": "MQL", "SAL": "SAL", "Hot": "SQL",
                "Nurture": "Nurture"}
STAGE_STATUS = {"Qualified": "Opportunity", "Contact Made": "Opportunity", "Demo Scheduled": "Opportunity",
                "Proposal Made": "Negotiation", "Negotiations Started": "Negotiation"}
_WRITE_LABEL = {"Lead": "Cold", "MQL": "MQL", "SAL": "SAL", "SQL": "Hot", "Nurture": "Nurture"}
_WRITE_STAGE = {"Opportunity": "Qualified", "Negotiation": "Negotiations Started"}


class CanonicalView:
    """Mixin for the sandbox: the test-side API of :class:`hub.testing.kit.ConformanceSandbox`."""

    state: CrmState
    clock: Clock
    lock: Any
    token: str

    # -- users and seeding ----------------------------------------------------------------------
    def add_users(self, members: list[dict[str, str]]) -> list[dict[str, Any]]:
        """Add Pipedrive users (``fakedata.team`` members); known emails are skipped."""
        with self.lock:
            known = {u["email"] for u in self.state.users}
            for m in members:
                if m["email"] in known:
                    continue
                uid = len(self.state.users) + 1
                self.state.users.append({
                    "id": uid, "name": m["name"], "default_currency": "EUR", "locale": "en_US", "lang": 1,
                    "email": m["email"], "phone": None, "activated": True, "last_login": "2026-01-05 08:00:00",
                    "created": "2024-01-02 09:00:00", "modified": None, "has_created_company": uid == 1,
                    "access": [{"app": "sales", "admin": m.get("role") == "manager",
                                "permission_set_id": "62cc4d7f-4038-4352-abf3-a8c1c822b631"}],
                    "active_flag": True, "timezone_name": "Europe/Berlin", "timezone_offset": "+01:00",
                    "role_id": 1, "icon_url": None, "is_you": uid == 1, "is_deleted": False})
            return self.state.users

    def _ensure_labels(self) -> None:
        for name, color in LABELS:
            if self.state.label_by_name(name) is None:
                lid = str(uuid.UUID(int=random.Random(f"label:{name}").getrandbits(128), version=1))
                stamp = 1_577_836_800_000
                self.state.labels[lid] = {"id": lid, "name": name, "color": color, "add": stamp, "upd": stamp}

    def seed(self, n: int, seed: int = 0, *, days: float = 365.0) -> list[str]:
        """Add ``n`` fakedata people as leads (converted to deals from Opportunity on), created and
        modified over the past ``days``. Returns their remote ids (the lead ids)."""
        paused = gc.isenabled()
        gc.disable()
        try:
            with self.lock:
                return self._seed(n, seed, days)
        finally:
            if paused:
                gc.enable()

    def _seed(self, n: int, seed: int, days: float) -> list[str]:
        self.add_users(fakedata.team(seed))
        rng = random.Random(f"pipedrive:{seed}")
        now, span = self.clock.now_ms(), int(days * 86_400_000)
        newest = now - 60_000
        ids = []
        for person in fakedata.people(n, seed):
            created = min(newest, now - 3_600_000 - int(rng.random() * span))
            updated = created + int(rng.random() * (newest - created))
            status = person["status"]
            if status == "Lead" and rng.random() < 0.4:
                person = {**person, "label": ""}
            elif status == "MQL" and rng.random() < 0.3:
                person = {**person, "label": "Warm"}
            stage = None
            if status in ("Opportunity", "Negotiation"):
                stage = rng.choice([s for s, c in STAGE_STATUS.items() if c == status])
            archived = status == "Closed Lost" and rng.random() < 0.5
            lead_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            ids.append(self._make(person, created, updated, lead_id=lead_id, stage=stage, archive=archived,
                                  source="Manually created"))
        return ids

    # -- the protocol ---------------------------------------------------------------------------
    def connector_settings(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "token": self.token}

    def remote_create(self, fields: dict[str, Any]) -> str:
        with self.lock:
            now = self.clock.now_ms()
            return self._make(fields, now, now, source="Manually created")

    def remote_update(self, remote_id: str, fields: dict[str, Any]) -> None:
        with self.lock:
            lead, deal = self._locate(remote_id)
            if lead is None and deal is None:
                raise KeyError(remote_id)
            now = self.clock.now_ms()
            st = self.state
            rec = deal or lead
            person = st.persons.get(rec["person_id"]) if rec["person_id"] else None
            person_body = self._person_body(fields, person)
            if person is not None and person_body:
                st.edit_person(person, person_body, now)
            if "company" in fields:
                org = self._org_for(fields["company"], now)
                key = "org_id" if deal else "organization_id"
                rec[key] = org and org["id"]
                if person is not None:
                    st.edit_person(person, {"org_id": org and org["id"]}, now)
            self._org_fields(fields, st.orgs.get(rec.get("org_id") or rec.get("organization_id") or -1), now)
            if deal is not None:
                self._apply_deal(deal, fields, now)
            else:
                self._apply_lead(lead, fields, now)

    def remote_delete(self, remote_id: str) -> None:
        with self.lock:
            lead, deal = self._locate(remote_id)
            if deal is not None:
                self.state.delete("deal", deal, self.clock.now_ms())
            elif lead is not None:
                self.state.delete("lead", lead, self.clock.now_ms())

    def remote_get(self, remote_id: str) -> dict[str, Any] | None:
        with self.lock:
            lead, deal = self._locate(remote_id)
            rec = deal or lead
            if rec is None:
                return None
            st = self.state
            person = st.persons.get(rec["person_id"]) if rec["person_id"] else None
            org = st.orgs.get(rec.get("org_id") or rec.get("organization_id") or (person or {}).get("org_id") or -1)
            owners = {u["id"]: u["email"] for u in st.users}
            primary = lambda items: next((x["value"] for x in items if x["primary"]), None)
            out = {"first_name": person and person["first_name"] or None,
                   "last_name": person and person["last_name"] or None,
                   "email": person and primary(person["emails"]), "phone": person and primary(person["phones"]),
                   "company": org and org["name"], "title": person and person["custom"].get(JOB_TITLE),
                   "country": person and person["custom"].get(COUNTRY), "owner": owners.get(rec["owner_id"]),
                   "source": {v: k for k, v in SOURCE_NAMES.items()}.get(rec["custom"].get(SOURCE) or "",
                                                                        rec["custom"].get(SOURCE)),
                   "industry": org and org["custom"].get(INDUSTRY),
                   "company_size": org and org["custom"].get(COMPANY_SIZE),
                   "hub_id": rec["custom"].get(HUB_ID)}
            if deal is not None:
                out.update(status=self._deal_status(deal), value=float(deal["value"]), currency=deal["currency"],
                           probability=None if deal["probability"] is None else deal["probability"] / 100,
                           loss_reason=deal["lost_reason"] or deal["custom"].get(LOST_REASON))
            else:
                value = lead["value"] or {}
                label = self._label(lead)
                out.update(status="Closed Lost" if lead["is_archived"] else LABEL_STATUS.get(label, label),
                           value=None if not value else float(value["amount"]), currency=value.get("currency"),
                           probability=None, loss_reason=lead["custom"].get(LOST_REASON))
            close = rec["expected_close_date"]
            out["expected_close"] = date.fromisoformat(close) if close else None
            return out

    def remote_ids(self) -> Iterable[str]:
        with self.lock:
            live = [ld["id"] for ld in self.state.leads.values() if not ld["deleted"]]
            return live + [d["source_lead_id"] for d in self.state.deals.values()
                           if not d["deleted"] and d["source_lead_id"]]

    def remote_status_values(self) -> Iterable[dict[str, str]]:
        """Every status a lead can hold: its label (by name) or archived flag, or its deal's status and stage."""
        with self.lock:
            combos = [{"lead_label": lb["name"], "is_archived": "", "deal_status": "", "deal_stage": ""}
                      for lb in self.state.labels.values()]
            combos += [{"lead_label": "", "is_archived": a, "deal_status": "", "deal_stage": ""} for a in ("", "true")]
            combos += [{"lead_label": "", "is_archived": "", "deal_status": s, "deal_stage": st["name"]}
                       for s in ("open", "won", "lost") for st in self.state.stages.values()]
            return combos

    def invalid_fields(self) -> dict[str, Any]:
        return {"email": "not-an-email@"}

    # -- the machinery ----------------------------------------------------------------------------
    def _locate(self, remote_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        lead = self.state.live(self.state.leads, remote_id)
        if lead is not None:
            return lead, None
        deal = next((d for d in self.state.deals.values() if d["source_lead_id"] == remote_id and not d["deleted"]),
                    None)
        return None, deal

    def _label(self, lead: dict[str, Any]) -> str:
        names = [self.state.labels[i]["name"] for i in lead["label_ids"] if i in self.state.labels]
        return next((n for n in names if n in LABEL_STATUS), names[0] if names else "")

    def _deal_status(self, deal: dict[str, Any]) -> str:
        if deal["status"] == "won":
            return "Closed Won"
        if deal["status"] == "lost":
            return "Closed Lost"
        return STAGE_STATUS.get(self.state.stages[deal["stage_id"]]["name"], "Opportunity")

    def _org_for(self, company: str | None, now: int) -> dict[str, Any] | None:
        if not company:
            return None
        key = company.strip().lower()
        for kind, oid in self.state.index.get(key, ()):
            org = self.state.orgs.get(oid)
            if kind == "organization" and org and not org["deleted"] and org["name"].lower() == key:
                return org
        return self.state.new_org({"name": company}, now)

    def _org_fields(self, fields: dict[str, Any], org: dict[str, Any] | None, now: int) -> None:
        custom = {k: fields[n] for n, k in (("industry", INDUSTRY), ("company_size", COMPANY_SIZE)) if n in fields}
        if org is not None and custom:
            self.state.edit_org(org, {"custom_fields": custom}, now)

    def _person_body(self, fields: dict[str, Any], person: dict[str, Any] | None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if "first_name" in fields or "last_name" in fields:
            first = fields.get("first_name", person and person["first_name"]) or ""
            last = fields.get("last_name", person and person["last_name"]) or ""
            body["name"] = f"{first} {last}".strip() or "(no name)"
        for name, key in (("email", "emails"), ("phone", "phones")):
            if name in fields:
                body[key] = [{"value": fields[name], "primary": True, "label": "work"}] if fields[name] else []
        custom = {k: fields[n] for n, k in (("title", JOB_TITLE), ("country", COUNTRY)) if n in fields}
        if custom:
            body["custom_fields"] = custom
        if fields.get("owner"):
            body["owner_id"] = self._owner(fields["owner"])
        return body

    def _owner(self, email: str | None) -> int | None:
        return next((u["id"] for u in self.state.users if email and u["email"].lower() == email.lower()), None)

    def _make(self, fields: dict[str, Any], created: int, updated: int, *, lead_id: str | None = None,
              stage: str | None = None, archive: bool = True, source: str = "API") -> str:
        """A person (and organization) with a lead; from Opportunity on, or lost and not ``archive``d,
        the lead is converted to a deal. Created at ``created``, last modified at ``updated``."""
        st = self.state
        self._ensure_labels()
        org = self._org_for(fields.get("company"), created)
        self._org_fields(fields, org, created)
        body = self._person_body({"first_name": None, "last_name": None, **fields}, None)
        if body.get("emails") and not _plausible(body["emails"][0]["value"]):
            body["emails"] = []  # Pipedrive would never have stored a malformed address
        person = st.new_person({**body, "org_id": org and org["id"]}, created)
        owner = self._owner(fields.get("owner")) or (st.users[0]["id"] if st.users else 1)
        name = " ".join(filter(None, [fields.get("first_name"), fields.get("last_name")]))
        lead = st.new_lead({"title": f"{fields.get('company') or name or 'Unknown'} lead", "person_id": person["id"],
                            "organization_id": org and org["id"], "owner_id": owner}, created, creator=owner,
                           source=source, lead_id=lead_id)
        status = fields.get("status") or "Lead"
        self._apply_lead(lead, {k: v for k, v in fields.items() if k != "status"}, created)
        if status in ("Opportunity", "Negotiation", "Closed Won") or status == "Closed Lost" and not archive:
            deal = st.convert(lead, st.stage_by_name(stage or _WRITE_STAGE.get(status, "Qualified"))["id"], created)
            self._apply_deal(deal, fields, updated)
        else:
            self._apply_lead(lead, {"status": status, "label": fields.get("label")}, updated)
        return lead["id"]

    def _apply_lead(self, lead: dict[str, Any], fields: dict[str, Any], now: int) -> None:
        clean: dict[str, Any] = {"custom": {}}
        if fields.get("status") in ("Opportunity", "Negotiation", "Closed Won"):
            deal = self.state.convert(lead, self.state.stage_by_name(_WRITE_STAGE.get(fields["status"],
                                                                                     "Qualified"))["id"], now)
            self._apply_deal(deal, fields, now)
            return
        if fields.get("status"):
            if fields["status"] == "Closed Lost":
                clean["is_archived"] = True
            else:
                clean["is_archived"] = False
                name = fields.get("label") if fields.get("label") is not None else _WRITE_LABEL[fields["status"]]
                label = self.state.label_by_name(name) if name else None
                clean["label_ids"] = [label["id"]] if label else []
        if fields.get("value") is not None:
            clean["value"] = {"amount": fields["value"], "currency": fields.get("currency") or "EUR"}
        if "expected_close" in fields:
            close = fields["expected_close"]
            clean["expected_close_date"] = close.isoformat() if hasattr(close, "isoformat") else close
        if fields.get("owner"):
            clean["owner_id"] = self._owner(fields["owner"]) or lead["owner_id"]
        for name, key in (("source", SOURCE), ("loss_reason", LOST_REASON)):
            if name in fields:
                value = SOURCE_NAMES.get(fields[name], fields[name]) if name == "source" else fields[name]
                clean["custom"][key] = value
        self.state.edit_lead(lead, clean, now)

    def _apply_deal(self, deal: dict[str, Any], fields: dict[str, Any], now: int) -> None:
        st = self.state
        body: dict[str, Any] = {}
        status = fields.get("status")
        if status in ("Opportunity", "Negotiation"):
            stage = st.stages[deal["stage_id"]]["name"]
            if STAGE_STATUS.get(stage) != status:
                body["stage_id"] = st.stage_by_name(_WRITE_STAGE[status])["id"]
            body["status"] = "open"
        elif status in ("Closed Won", "Closed Lost"):
            body["status"] = "won" if status == "Closed Won" else "lost"
        elif status:
            raise ValueError(f"deal {deal['id']} cannot go back to lead status {status!r}")
        if fields.get("value") is not None:
            body.update(value=float(fields["value"]), currency=fields.get("currency") or deal["currency"])
        if fields.get("probability") is not None:
            body["probability"] = round(float(fields["probability"]) * 100)
        if "expected_close" in fields:
            close = fields["expected_close"]
            body["expected_close_date"] = close.isoformat() if hasattr(close, "isoformat") else close
        if fields.get("owner"):
            body["owner_id"] = self._owner(fields["owner"]) or deal["owner_id"]
        custom = {}
        if "source" in fields:
            custom[SOURCE] = SOURCE_NAMES.get(fields["source"], fields["source"])
        if fields.get("loss_reason"):
            if body.get("status", deal["status"]) == "lost":
                body["lost_reason"] = fields["loss_reason"]
            custom[LOST_REASON] = fields["loss_reason"]
        if custom:
            body["custom_fields"] = custom
        st.edit_deal(deal, body, now)


def _plausible(email: str) -> bool:
    local, _, domain = email.partition("@")
    return bool(local) and "." in domain and not domain.endswith(".") and " " not in email


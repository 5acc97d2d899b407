"""The conformance kit's protocol (:class:`hub.testing.kit.ConformanceSandbox`) for the HubSpot sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from .model import SOURCE_MAP, STATUS_MAP, _number
from .validation import _OPTIONS

__all__ = ["_Kit"]


class _Kit:
    """Mixin for :class:`HubSpotSandbox`: canonical-field view of contacts for the conformance kit."""

    #: canonical field -> contact property for the kit's remote_* helpers (status, source, owner
    #: and hub_id are translated on their own)
    KIT_FIELDS = {"first_name": "firstname", "last_name": "lastname", "email": "email", "phone": "phone",
                  "company": "company", "domain": "website", "title": "jobtitle", "country": "country",
                  "industry": "industry", "company_size": "company_size", "value": "amount",
                  "probability": "hs_deal_probability", "expected_close": "closedate",
                  "loss_reason": "closed_lost_reason"}
    _KIT_STAGES = {"subscriber": "Lead", "lead": "Lead", "marketingqualifiedlead": "MQL",
                   "salesqualifiedlead": "SAL", "opportunity": "Opportunity", "customer": "Closed Won",
                   "evangelist": "Closed Won", "other": "Closed Lost"}

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        """Settings for ``HubSpotConnector`` to reach this sandbox; the search overlap covers ``lag``."""
        return {"base_url": base_url, "token": self.token, "unique_property": self.unique_property,
                "search_overlap": self.lag + 1.0 if self.lag else 0.0}

    def _kit_props(self, fields: Mapping[str, Any]) -> dict[str, str]:
        props: dict[str, str] = {}
        for name, value in fields.items():
            if name == "status":
                props["lifecyclestage"], props["hs_lead_status"] = STATUS_MAP[value] if value else ("", "")
            elif name == "source":
                props["hs_analytics_source"] = SOURCE_MAP.get(value, value) if value else ""
            elif name == "owner":
                found = [o["id"] for o in self.owners if value and o["email"] == value.lower()]
                if value and not found:
                    raise ValueError(f"no HubSpot owner has the email {value!r}")
                props["hubspot_owner_id"] = found[0] if found else ""
            elif name == "hub_id":
                props[self.unique_property] = value or ""
            elif name in self.KIT_FIELDS:
                text = value.isoformat() if hasattr(value, "isoformat") else "" if value is None else str(value)
                numeric = name in ("value", "probability") and text
                props[self.KIT_FIELDS[name]] = _number(text) if numeric else text
            else:
                raise KeyError(f"HubSpotSandbox has no contact property for canonical field {name!r}")
        return props

    def remote_create(self, fields: dict[str, Any]) -> str:
        """Create a contact from canonical fields, as a HubSpot user would; returns its id."""
        return self.add_contact(self._kit_props(fields))

    def remote_update(self, remote_id: str, fields: dict[str, Any]) -> None:
        self.update_contact(remote_id, self._kit_props(fields))

    def remote_delete(self, remote_id: str) -> None:
        self.archive_contact(remote_id)

    def remote_get(self, remote_id: str) -> dict[str, Any] | None:
        """A live contact in canonical names (``hub_id`` included); None once archived."""
        with self.lock:
            rec = self._find(remote_id)
            if rec is None:
                return None
            p = dict(rec.props)
        out: dict[str, Any] = {canon: p.get(prop) for canon, prop in self.KIT_FIELDS.items()}
        for canon in ("value", "probability"):
            try:
                out[canon] = float(out[canon]) if out[canon] else None
            except ValueError:
                pass  # a value planted with add_contact that HubSpot's API would refuse: shown as stored
        if out["expected_close"] and len(out["expected_close"]) == 10:
            out["expected_close"] = date.fromisoformat(out["expected_close"])
        pair = (p.get("lifecyclestage", ""), p.get("hs_lead_status", ""))
        out["status"] = next((s for s, v in STATUS_MAP.items() if v == pair), self._KIT_STAGES.get(pair[0]))
        source = p.get("hs_analytics_source")
        back = {v: k for k, v in reversed(list(SOURCE_MAP.items()))}
        out["source"] = back.get(source, source.lower().replace("_", "-")) if source else None
        out["owner"] = next((o["email"] for o in self.owners if o["id"] == p.get("hubspot_owner_id")), None)
        out["hub_id"] = p.get(self.unique_property)
        return out

    def remote_ids(self) -> list[str]:
        with self.lock:
            return [str(i) for i in self._active]

    def remote_status_values(self) -> list[dict[str, str]]:
        """Every lifecyclestage with every hs_lead_status (or none): what a portal's contacts can hold."""
        return [{"lifecyclestage": stage, "hs_lead_status": lead_status}
                for stage in _OPTIONS["lifecyclestage"].split()
                for lead_status in ("", *_OPTIONS["hs_lead_status"].split())]

    def invalid_fields(self) -> dict[str, Any]:
        """HubSpot refuses a malformed email (``INVALID_EMAIL``)."""
        return {"email": "not-an-email@"}

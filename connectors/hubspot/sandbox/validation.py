"""Contact property definitions (``GET /crm/v3/properties/contacts``) and the validation of written values."""

from __future__ import annotations

import json
import re
from typing import Any

from .model import _READ_ONLY, _Failure, _instant, _iso, _number

__all__ = ["_EMAIL", "_OPTIONS", "_Invalid", "_Validation"]

_OPTIONS = {
    "lifecyclestage": "subscriber lead marketingqualifiedlead salesqualifiedlead opportunity customer evangelist other",
    "hs_lead_status": "NEW OPEN IN_PROGRESS OPEN_DEAL UNQUALIFIED ATTEMPTED_TO_CONTACT CONNECTED BAD_TIMING",
    "hs_analytics_source": "ORGANIC_SEARCH PAID_SEARCH EMAIL_MARKETING SOCIAL_MEDIA REFERRALS OTHER_CAMPAIGNS "
                           "DIRECT_TRAFFIC OFFLINE PAID_SOCIAL AI_REFERRALS"}
_TYPES = {"hs_object_id": "number", "amount": "number", "hs_deal_probability": "number",
          "createdate": "datetime", "lastmodifieddate": "datetime", "closedate": "date",
          "lifecyclestage": "enumeration", "hs_lead_status": "enumeration", "hs_analytics_source": "enumeration",
          "hubspot_owner_id": "enumeration",
          "hs_merged_object_ids": "enumeration"}  # read-only: the ids merged into a contact, ";"-separated
_STRINGS = ("email firstname lastname phone mobilephone company website jobtitle country city industry "
            "company_size closed_lost_reason leadhub_id").split()
_CUSTOM = frozenset({"leadhub_id", "company_size", "amount", "hs_deal_probability", "closedate",
                     "closed_lost_reason"})
_EMAIL = re.compile(r"^[^@\s\"]+@[^@\s\"]+\.[A-Za-z]{2,}$")


class _Invalid(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class _Validation:
    """Mixin for :class:`HubSpotSandbox`: property definitions, value coercion and uniqueness checks."""

    def _definitions(self) -> dict[str, dict[str, Any]]:
        stamp = "2020-01-01T00:00:00.000Z"
        defs = {}
        for name in [*(self.unique_property if p == "leadhub_id" else p for p in _STRINGS), *_TYPES]:
            typ = _TYPES.get(name, "string")
            custom = name in _CUSTOM or name == self.unique_property
            values = ([(o["id"], f"{o['firstName']} {o['lastName']}") for o in self.owners]
                      if name == "hubspot_owner_id" else [(v, v.replace("_", " ").title())
                                                          for v in _OPTIONS.get(name, "").split()])
            defs[name] = {
                "name": name, "label": name.replace("_", " ").title(), "type": typ, "description": "",
                "fieldType": {"number": "number", "date": "date", "datetime": "date", "enumeration": "select"}
                .get(typ, "text"), "groupName": "leadhub" if custom else "contactinformation",
                "options": [{"label": label, "value": v, "displayOrder": i, "hidden": False}
                            for i, (v, label) in enumerate(values)],
                "displayOrder": -1, "hasUniqueValue": name in self._uniques[1:], "hidden": False,
                "formField": not name.startswith("hs_"), "hubspotDefined": not custom, "calculated": False,
                "externalOptions": name == "hubspot_owner_id", "createdAt": stamp, "updatedAt": stamp,
                "modificationMetadata": {"archivable": custom, "readOnlyDefinition": not custom,
                                         "readOnlyValue": name in _READ_ONLY}}
        return defs

    def _coerce(self, name: str, typ: str, text: str) -> str:
        if name == "email":
            if not _EMAIL.match(text.strip()):
                raise _Invalid("INVALID_EMAIL", f"Email address {text} is invalid")
            return text.strip().lower()
        try:
            if typ == "number":
                return _number(text)
            if typ == "date":
                ms = _instant(text)
                if ms % 86_400_000:
                    raise ValueError(text)
                return _iso(ms)[:10]
            if typ == "datetime":
                return _iso(_instant(text))
        except ValueError:
            code = {"number": "INVALID_DECIMAL", "date": "INVALID_DATE"}.get(typ, "INVALID_DATETIME")
            raise _Invalid(code, f"{text} is not a valid {typ} for property {name}"
                           + (" (a date must be midnight UTC)" if typ == "date" else "")) from None
        if typ == "enumeration":
            allowed = ([o["id"] for o in self.owners] if name == "hubspot_owner_id"
                       else _OPTIONS[name].split())
            if text not in allowed:
                raise _Invalid("INVALID_OPTION", f"{text} was not one of the allowed options: "
                                                 f"[{', '.join(allowed)}]")
        return text

    def _validate(self, raw: Any, current: int | None, strict: bool = True) -> dict[str, str]:
        """Clean property changes ("" clears), or raise the input's _Failure.

        Not ``strict`` (the test helpers): values are kept as given, like an import would, only
        names and uniqueness are checked.
        """
        if not isinstance(raw, dict):
            raise _Failure(400, "VALIDATION_ERROR", "Invalid input: properties must be an object")
        defs = self._properties_by_name
        clean, details = {}, []
        for name, value in raw.items():
            if name not in defs:
                details.append((name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
                continue
            if name in _READ_ONLY:
                continue
            text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            try:
                clean[name] = (text if text == "" else self._coerce(name, defs[name]["type"], text) if strict
                               else text.strip().lower() if name == "email" else text)
            except _Invalid as exc:
                details.append((name, exc.code, str(exc)))
        if details:
            shown = [{"isValid": False, "message": m, "error": c, "name": n, "localizedErrorMessage": m}
                     for n, c, m in details]
            raise _Failure(400, "VALIDATION_ERROR", "Property values were not valid: " + json.dumps(shown),
                           [{"message": m, "code": c, "in": n, "context": {"propertyName": [n]}}
                            for n, c, m in details])
        for prop in self._uniques:
            owner = self._by[prop].get(clean.get(prop) or "")
            if owner is not None and owner != current:
                raise _Failure(409, "CONFLICT", f"Contact already exists. Existing ID: {owner}")
        return clean

    @property
    def _properties_by_name(self) -> dict[str, dict[str, Any]]:
        if self._defs_owners != len(self.owners):
            self._defs, self._defs_owners = self._definitions(), len(self.owners)
        return self._defs

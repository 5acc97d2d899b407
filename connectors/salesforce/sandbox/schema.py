"""The sandbox org's schema: the Lead, Opportunity, Task and User objects, their fields, and Salesforce ids.

This is the org's own configuration, as an admin would have set it up for LeadHub:
the four default Lead Status values plus five added ones, the ten default
Opportunity stages, and three custom fields — ``Lead.LeadHub_Id__c`` (text 32,
External ID, unique, case-insensitive), ``Lead.Loss_Reason__c`` and
``Opportunity.Loss_Reason__c`` (text 255; the lead field maps onto the deal's at
conversion, as Setup's "Map Lead Fields" does).

Task has its standard fields only (``Subject``, ``ActivityDate``, ``Status``, ``Priority``,
``OwnerId``, ``WhoId`` — a lead here —, ``WhatId`` — an opportunity here —, ``Description``,
``IsClosed``) with the default Task Status and Priority values.

Stored values: datetimes as epoch milliseconds (Salesforce keeps seconds, so the
milliseconds are always 000), dates as ``YYYY-MM-DD``, numbers as float/int.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONVERTED_STATUS",
    "DEFAULT_STATUS",
    "LEAD_STATUSES",
    "PREFIX",
    "SCHEMA",
    "STAGES",
    "TASK_STATUSES",
    "Field",
    "full_id",
    "make_id",
    "render_datetime",
]

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
PREFIX = {"Lead": "00Q", "Opportunity": "006", "User": "005", "Account": "001", "Contact": "003",
          "Organization": "00D", "QueryLocator": "01g", "Task": "00T"}


def _checksum(id15: str) -> str:
    out = ""
    for i in range(3):
        chunk = id15[i * 5:(i + 1) * 5]
        out += _SUFFIX[sum(1 << j for j, c in enumerate(chunk) if "A" <= c <= "Z")]
    return out


def make_id(obj: str, n: int) -> str:
    """The 18-character id of the ``n``-th record of ``obj`` (ascending ids sort in creation order)."""
    digits = ""
    while True:
        n, r = divmod(n, 62)
        digits = _B62[r] + digits
        if not n:
            break
    id15 = PREFIX[obj] + "5L" + digits.rjust(10, "0")
    return id15 + _checksum(id15)


def full_id(value: Any, obj: str | None = None) -> str | None:
    """An 18-character id for a 15- or 18-character one (of ``obj``, if given); None if malformed."""
    text = str(value or "")
    if not re.fullmatch(r"[0-9A-Za-z]{15}(?:[0-9A-Z]{3})?", text):
        return None
    if obj is not None and text[:3] != PREFIX[obj]:
        return None
    id18 = text[:15] + _checksum(text[:15])
    return id18 if len(text) == 15 or text == id18 else None


def render_datetime(ms: int) -> str:
    """Epoch ms → ``2026-01-15T10:00:00.000+0000``, Salesforce's JSON form."""
    import time

    secs, milli = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{milli:03d}+0000"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str  # id string email phone url textarea picklist reference boolean datetime date double currency percent int
    label: str
    writable: bool = True
    required: bool = False  # must hold a value (on create, and may not be cleared)
    length: int = 255
    values: tuple[str, ...] = ()
    restricted: bool = False
    unique: bool = False  # (External ID, case-insensitive)
    reference_to: str | None = None
    relationship: str | None = None


def _fields(*fields: Field) -> dict[str, Field]:
    return {f.name.lower(): f for f in fields}


def _system(*extra: Field) -> tuple[Field, ...]:
    return (Field("Id", "id", "Record ID", writable=False), Field("IsDeleted", "boolean", "Deleted", writable=False),
            *extra,
            Field("CreatedDate", "datetime", "Created Date", writable=False),
            Field("CreatedById", "reference", "Created By ID", writable=False, reference_to="User"),
            Field("LastModifiedDate", "datetime", "Last Modified Date", writable=False),
            Field("LastModifiedById", "reference", "Last Modified By ID", writable=False, reference_to="User"),
            Field("SystemModstamp", "datetime", "System Modstamp", writable=False))


#: Lead Status (value, is converted). The first is the default.
LEAD_STATUSES: tuple[tuple[str, bool], ...] = (
    ("Open - Not Contacted", False), ("Working - Contacted", False), ("Closed - Converted", True),
    ("Closed - Not Converted", False),
    # added for LeadHub's funnel:
    ("Marketing Qualified", False), ("Sales Qualified", False), ("Opportunity Identified", False),
    ("In Negotiation", False), ("Nurturing", False))
DEFAULT_STATUS = LEAD_STATUSES[0][0]
#: Task Status, the default first; "Completed" closes the task
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
CONVERTED_STATUS = "Closed - Converted"
#: Opportunity stages: (name, default probability, closed, won)
STAGES: tuple[tuple[str, float, bool, bool], ...] = (
    ("Prospecting", 10, False, False), ("Qualification", 10, False, False), ("Needs Analysis", 20, False, False),
    ("Value Proposition", 50, False, False), ("Id. Decision Makers", 60, False, False),
    ("Perception Analysis", 70, False, False), ("Proposal/Price Quote", 75, False, False),
    ("Negotiation/Review", 90, False, False), ("Closed Won", 100, True, True), ("Closed Lost", 0, True, False))
_SOURCES = ("Advertisement", "Web", "External Referral", "Employee Referral", "Partner", "Partner Referral",
            "Trade Show", "Seminar - Internal", "Free Trial", "Outbound Prospecting", "Social Media",
            "Email Campaign", "Phone Inquiry", "Purchased List", "Word of mouth", "Other")
_INDUSTRIES = ("Agriculture", "Banking", "Communications", "Construction", "Consulting", "Education", "Energy",
               "Financial Services", "Healthcare", "Logistics", "Manufacturing", "Media", "Professional Services",
               "Retail", "Software", "Technology", "Telecommunications", "Other")

SCHEMA: dict[str, dict[str, Field]] = {
    "Lead": _fields(*_system(
        Field("FirstName", "string", "First Name", length=40), Field("LastName", "string", "Last Name", required=True,
                                                                      length=80),
        Field("Name", "string", "Full Name", writable=False, length=121),
        Field("Email", "email", "Email", length=80), Field("Phone", "phone", "Phone", length=40),
        Field("MobilePhone", "phone", "Mobile Phone", length=40),
        Field("Company", "string", "Company", required=True), Field("Title", "string", "Title", length=128),
        Field("Website", "url", "Website"), Field("Country", "string", "Country", length=80),
        Field("LeadSource", "picklist", "Lead Source", values=_SOURCES),
        Field("Industry", "picklist", "Industry", values=_INDUSTRIES),
        Field("Status", "picklist", "Lead Status", required=True, values=tuple(s for s, _ in LEAD_STATUSES),
              restricted=True),
        Field("NumberOfEmployees", "int", "Employees"), Field("Description", "textarea", "Description", length=32000),
        Field("OwnerId", "reference", "Owner ID", required=True, reference_to="User", relationship="Owner"),
        Field("IsConverted", "boolean", "Converted", writable=False),
        Field("ConvertedDate", "date", "Converted Date", writable=False),
        Field("ConvertedAccountId", "reference", "Converted Account ID", writable=False, reference_to="Account"),
        Field("ConvertedContactId", "reference", "Converted Contact ID", writable=False, reference_to="Contact"),
        Field("ConvertedOpportunityId", "reference", "Converted Opportunity ID", writable=False,
              reference_to="Opportunity", relationship="ConvertedOpportunity"),
        Field("MasterRecordId", "reference", "Master Record ID", writable=False, reference_to="Lead",
              relationship="MasterRecord"),  # set on a lead deleted by a merge: the winning lead
        Field("LeadHub_Id__c", "string", "LeadHub Id", length=32, unique=True),
        Field("Loss_Reason__c", "string", "Loss Reason"))),
    "Opportunity": _fields(*_system(
        Field("Name", "string", "Name", required=True, length=120),
        Field("StageName", "picklist", "Stage", required=True, values=tuple(s[0] for s in STAGES), restricted=True),
        Field("Amount", "currency", "Amount"), Field("Probability", "percent", "Probability (%)"),
        Field("CloseDate", "date", "Close Date", required=True),
        Field("IsClosed", "boolean", "Closed", writable=False), Field("IsWon", "boolean", "Won", writable=False),
        Field("LeadSource", "picklist", "Lead Source", values=_SOURCES),
        Field("OwnerId", "reference", "Owner ID", required=True, reference_to="User", relationship="Owner"),
        Field("AccountId", "reference", "Account ID", reference_to="Account"),
        Field("Loss_Reason__c", "string", "Loss Reason"))),
    "Task": _fields(*_system(
        Field("Subject", "string", "Subject"), Field("ActivityDate", "date", "Due Date Only"),
        Field("Status", "picklist", "Status", required=True, values=TASK_STATUSES, restricted=True),
        Field("Priority", "picklist", "Priority", required=True, values=("High", "Normal", "Low"), restricted=True),
        Field("OwnerId", "reference", "Assigned To ID", required=True, reference_to="User", relationship="Owner"),
        Field("WhoId", "reference", "Name ID", reference_to="Lead", relationship="Who"),
        Field("WhatId", "reference", "Related To ID", reference_to="Opportunity", relationship="What"),
        Field("Description", "textarea", "Comments", length=32000),
        Field("IsClosed", "boolean", "Closed", writable=False))),
    "User": _fields(*_system(
        Field("Username", "string", "Username", writable=False, length=80),
        Field("Email", "email", "Email", writable=False, length=128),
        Field("FirstName", "string", "First Name", writable=False, length=40),
        Field("LastName", "string", "Last Name", writable=False, length=80),
        Field("Name", "string", "Full Name", writable=False, length=121),
        Field("IsActive", "boolean", "Active", writable=False))),
}

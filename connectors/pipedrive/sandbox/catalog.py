"""What the sandbox's Pipedrive account holds before any record: custom fields, lead labels, stages, the
token cost of each operation, and Pipedrive's time formats.

Custom fields (a real account would need them created, and names its own 40-character keys): deals
and leads share :data:`DEAL_FIELDS` (``LeadHub ID``, ``Lead source``, ``Lost reason``), persons have
:data:`PERSON_FIELDS` (``LeadHub ID``, ``Job title``, ``Country``), organizations :data:`ORG_FIELDS`
(``Industry``, ``Company size``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache

__all__ = ["COMPANY_SIZE", "COSTS", "COUNTRY", "DEAL_FIELDS", "ERROR_INFO", "HUB_ID", "INDUSTRY", "JOB_TITLE",
           "LABELS", "LOST_REASON", "ORG_FIELDS", "PERSON_FIELDS", "PERSON_HUB_ID", "SOURCE", "STAGES", "instant",
           "iso_ms", "iso_s"]

HUB_ID = "7b4e89fe9168c93e86f861a737d4182bf3484205"
SOURCE = "c911b7f1881a34f766e68bdac4639abb2fe28284"
LOST_REASON = "08bfb672551a4819642e2308730726bc25639124"
PERSON_HUB_ID = "b673907311e598f9fb93de672710a1bda278ceee"
JOB_TITLE = "93b2aef0f1d74ff6cd83c3201156d4f98d8ad96a"
COUNTRY = "a3c9d232f3c819cd9a464b8f7c9c9313602ee632"
INDUSTRY = "166391b96bdc68dd78ea26110b17400622426df4"
COMPANY_SIZE = "6f058100a2321de986ba8a608ee19267d6968008"
DEAL_FIELDS = {HUB_ID: "LeadHub ID", SOURCE: "Lead source", LOST_REASON: "Lost reason"}
PERSON_FIELDS = {PERSON_HUB_ID: "LeadHub ID", JOB_TITLE: "Job title", COUNTRY: "Country"}
ORG_FIELDS = {INDUSTRY: "Industry", COMPANY_SIZE: "Company size"}
#: Pipedrive's three default lead labels and the ones this account added
LABELS = (("Hot", "red"), ("Warm", "yellow"), ("Cold", "blue"), ("MQL", "purple"), ("SAL", "green"),
          ("Nurture", "gray"))
#: Pipedrive's default pipeline stages (name, deal probability %)
STAGES = (("Qualified", 10), ("Contact Made", 20), ("Demo Scheduled", 40), ("Proposal Made", 60),
          ("Negotiations Started", 80))
ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."

#: token cost of each route, from the ``x-token-cost`` of its operation in the official specs
COSTS: dict[str, int] = {
    "GET /v1/leads": 20, "POST /v1/leads": 10, "GET /v1/leads/archived": 40, "GET /v1/leads/{id}": 2,
    "PATCH /v1/leads/{id}": 10, "DELETE /v1/leads/{id}": 6, "GET /v1/leadLabels": 10,
    "POST /v1/leadLabels": 10, "GET /v1/users": 20,
    "GET /api/v2/persons": 10, "POST /api/v2/persons": 5, "GET /api/v2/persons/search": 20,
    "GET /api/v2/persons/{id}": 1, "PATCH /api/v2/persons/{id}": 5, "DELETE /api/v2/persons/{id}": 3,
    "GET /api/v2/organizations": 10, "POST /api/v2/organizations": 5, "GET /api/v2/organizations/search": 20,
    "GET /api/v2/organizations/{id}": 1, "PATCH /api/v2/organizations/{id}": 5,
    "GET /api/v2/deals": 10, "GET /api/v2/deals/{id}": 1, "PATCH /api/v2/deals/{id}": 5,
    "DELETE /api/v2/deals/{id}": 3, "GET /api/v2/stages": 5, "GET /api/v2/pipelines": 5,
    "GET /api/v2/itemSearch": 20, "GET /api/v2/leads/search": 20, "POST /api/v2/leads/{id}/convert/deal": 40,
    "GET /api/v2/leads/{id}/convert/status/{conversion_id}": 1,
    "GET /api/v2/activities": 10, "POST /api/v2/activities": 5, "GET /api/v2/activities/{id}": 1,
    "PATCH /api/v2/activities/{id}": 5, "DELETE /api/v2/activities/{id}": 3,
}


@lru_cache(maxsize=4096)
def _day(days: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(days * 86_400))


def iso_ms(ms: int) -> str:
    """Epoch ms → ``2020-10-14T11:30:36.551Z`` (v1 leads)."""
    days, rest = divmod(ms, 86_400_000)
    secs, milli = divmod(rest, 1000)
    return f"{_day(days)}T{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{milli:03d}Z"


def iso_s(ms: int) -> str:
    """Epoch ms → ``2021-01-01T00:00:00Z`` (v2 objects: whole seconds)."""
    return iso_ms(ms)[:19] + "Z"


def instant(text: str) -> int:
    """Epoch ms from an ISO 8601 / RFC 3339 time (``Z`` or an offset; naive means UTC)."""
    dt = datetime.fromisoformat(text.strip().replace(" ", "T"))
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)

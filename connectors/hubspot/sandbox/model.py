"""Shared pieces of the HubSpot sandbox: status/source maps, timestamp and number helpers, the contact record
and the failure type."""

from __future__ import annotations

import math
import re
import sys
import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from hub.testing.sandbox import Reject

__all__ = ["DEFAULT_PROPERTIES", "SOURCE_MAP", "STATUS_MAP", "_ALWAYS", "_HIGH", "_READ_ONLY", "_Contact", "_Failure",
           "_instant", "_iso", "_number"]

STATUS_MAP: dict[str, tuple[str, str]] = {  # canonical → (lifecyclestage, hs_lead_status)
    "Lead": ("lead", "NEW"), "MQL": ("marketingqualifiedlead", ""), "SAL": ("salesqualifiedlead", "OPEN"),
    "SQL": ("salesqualifiedlead", "IN_PROGRESS"), "Opportunity": ("opportunity", "OPEN_DEAL"),
    "Negotiation": ("opportunity", "CONNECTED"), "Closed Won": ("customer", ""),
    "Closed Lost": ("other", "UNQUALIFIED"), "Nurture": ("lead", "BAD_TIMING")}
SOURCE_MAP = {"paid": "PAID_SEARCH", "organic": "ORGANIC_SEARCH", "referral": "REFERRALS",
              "partner": "OTHER_CAMPAIGNS", "event": "OFFLINE", "self-serve": "DIRECT_TRAFFIC",
              "outbound": "OFFLINE", "social": "SOCIAL_MEDIA", "email": "EMAIL_MARKETING"}
DEFAULT_PROPERTIES = ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname")
_ALWAYS = ("createdate", "hs_object_id", "lastmodifieddate")
_READ_ONLY = frozenset({*_ALWAYS, "hs_merged_object_ids"})  # written only by a merge
_HIGH = sys.maxsize


@lru_cache(maxsize=1024)
def _day(days: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(days * 86_400))


def _iso(ms: int) -> str:
    """Epoch ms → ``2024-05-01T10:00:00.123Z``, HubSpot's timestamp form."""
    days, rest = divmod(ms, 86_400_000)
    secs, milli = divmod(rest, 1000)
    return f"{_day(days)}T{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{milli:03d}Z"


def _instant(value: Any) -> int:
    """Epoch ms from an epoch-ms number/string or an ISO-8601 date or datetime (naive = UTC)."""
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    dt = datetime.fromisoformat(text)
    return int((dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp() * 1000)


def _number(value: str) -> str:
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(value)
    return str(int(f)) if f.is_integer() and "e" not in value.lower() else str(value).strip()


class _Contact:
    """One contact. ``merged_into``: the id of the contact a merge folded this one into (it is then
    gone from search and lists, and reading its id answers with that contact)."""

    __slots__ = ("id", "props", "created", "updated", "archived_at", "merged_into")

    def __init__(self, id: int, props: dict[str, str], created: int, updated: int):
        self.id, self.props, self.created, self.updated = id, props, created, updated
        self.archived_at: int | None = None
        self.merged_into: int | None = None


class _Failure(Reject):
    """One input's error (or a whole request's): HTTP status, HubSpot category, message, details."""

    def __init__(self, status: int, category: str, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(status, message, category=category, **({"errors": errors} if errors else {}))
        self.category, self.errors = category, errors or []

"""Deduplication's own books: the blocking-key index and the merges CRMs still owe.

* ``dedup_keys`` — every lead's blocking keys (:mod:`rules.dedup.blocking`),
  ``(key, lead_id)`` unique and indexed by key: a new lead finds its candidates
  with one indexed look-up instead of a pass over every lead.
* ``dedup_merge_requests`` — one row per connection a merged lead lived in: the
  hub has merged the two leads; the CRM should merge its records too.
  :mod:`rules.dedup.remote` carries it out after that connection's push:
  ``requested`` until then, ``done`` once the CRM merged them (or there was
  nothing left to merge), ``failed`` if the CRM refused (its words in
  ``message``), ``unsupported`` where the connector cannot merge (set once; a
  person merges the records in the CRM), ``skipped`` where the CRM is certain to
  refuse it (Dynamics: a record is inactive; why in ``message``; not sent, and
  merged once both records are active again). ``updated_at`` is the last change.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from hub.store import UTCDateTime

__all__ = ["DedupKey", "MergeRequest"]


class DedupKey(SQLModel, table=True):
    __tablename__ = "dedup_keys"

    key: str = Field(primary_key=True, max_length=255)
    lead_id: str = Field(primary_key=True, max_length=64, index=True)


class MergeRequest(SQLModel, table=True):
    __tablename__ = "dedup_merge_requests"
    __table_args__ = (sa.Index("ix_dedup_merge_requests_open", "connection", "state"),)

    id: int | None = Field(default=None, primary_key=True)
    survivor_id: str = Field(foreign_key="leads.id", index=True, max_length=64)
    merged_id: str = Field(foreign_key="leads.id", index=True, max_length=64)
    connection: str = Field(max_length=100)
    object: str = Field(max_length=100)
    survivor_remote_id: str | None = Field(default=None, max_length=255)
    merged_remote_id: str | None = Field(default=None, max_length=255)
    confidence: float
    state: str = Field(default="requested", max_length=20)  # requested | done | failed | unsupported | skipped
    at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    message: str | None = None  # the CRM's words on a refusal, or why it is done / waiting / unsupported / skipped
    updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

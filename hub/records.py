"""The records that cross the connector boundary, in the CRM's terms and in the hub's.

Reading: a connector yields :class:`RawPage` objects of :class:`RawRecord` (remote field names and
values); :meth:`hub.connector.Connector.read_changes` decodes them into :class:`Page` objects of
:class:`RemoteRecord` (canonical fields), which the sync engine applies. Writing: the hub asks for
:class:`WriteOp` (canonical), the base class encodes each into a :class:`RemoteWrite` for the
connector's ``write_batch``, which answers one :class:`WriteResult` per write. :class:`RemoteUser` is
a CRM user, for owner mapping by e-mail. Plain data; connectors import it from :mod:`hub.connector`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.model import fields_hash

__all__ = [
    "RawRecord",
    "RawPage",
    "RemoteRecord",
    "Page",
    "WriteOp",
    "RemoteWrite",
    "WriteResult",
    "RemoteUser",
]


@dataclass(slots=True)
class RawRecord:
    """One record as the CRM holds it (remote field names and values).

    ``merged_into``: for a ``deleted`` record that a merge inside the CRM removed, the remote id
    of the record it was merged into, when the CRM says so (passed on to :class:`RemoteRecord`).
    """

    remote_id: str
    modified: datetime
    props: dict[str, Any]
    deleted: bool = False
    merged_into: str | None = None


@dataclass(slots=True)
class RawPage:
    records: list[RawRecord]
    cursor: dict[str, Any]


@dataclass(slots=True)
class RemoteRecord:
    """One record in canonical terms, as the sync engine receives it.

    ``fields`` holds only what the CRM maps (never the hub id); ``status`` may be
    ``None`` when the remote value is unmapped (see ``problems``).

    ``merged_into``: for a record with ``deleted=True``, the remote id of the record it was merged
    into, when the CRM says so (HubSpot's ``hs_merged_object_ids`` on the survivor, Salesforce's
    ``MasterRecordId``, Dynamics' ``masterid``); ``None`` for a plain deletion or when unknown.
    A connector may report the same merge more than once; the hub treats repeats as no change.
    """

    object: str
    remote_id: str
    modified: datetime
    fields: dict[str, Any]
    hub_id: str | None = None
    deleted: bool = False
    problems: list[str] = field(default_factory=list)
    merged_into: str | None = None

    @property
    def hash(self) -> str:
        return fields_hash(self.fields)


@dataclass(slots=True)
class Page:
    records: list[RemoteRecord]
    cursor: dict[str, Any]


@dataclass(slots=True)
class WriteOp:
    """A canonical write the hub wants made: create or update one lead remotely."""

    hub_id: str
    fields: dict[str, Any]
    remote_id: str | None = None  # None: create (idempotently, keyed by hub_id)
    object: str | None = None


@dataclass(slots=True)
class RemoteWrite:
    """A write in the CRM's own terms, as :meth:`~hub.connector.Connector.write_batch` receives it."""

    hub_id: str
    props: dict[str, Any]
    remote_id: str | None = None


@dataclass(slots=True)
class WriteResult:
    hub_id: str
    ok: bool
    remote_id: str | None = None
    error: str | None = None  # the vendor's verbatim message when not ok
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class RemoteUser:
    id: str
    email: str
    name: str = ""

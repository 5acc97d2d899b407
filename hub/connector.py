"""The connector contract: what a CRM plugin declares and the little it must implement.

A connector is mostly declaration (as in singer-sdk)::

    class AcmeConnector(Connector):
        name = "acme"
        settings_model = AcmeSettings          # validated config; secrets as SecretStr
        lead_object = "leads"
        field_map = {"email": "Email", "first_name": "FirstName", ...}
        status_map = StatusMap({...})          # canonical status -> remote values
        owner_field = "OwnerId"                # remote owner id <-> canonical owner email
        hub_id_field = "LeadHub_Id__c"         # where the hub's lead id lives remotely
        limits = Limits(page_size=200, batch_size=200, rate=Rate(100, 10))

        def read_pages(self, cursor): ...      # yield RawPage(records, cursor_after_page)
        def write_batch(self, batch): ...      # one vendor call for <= limits.batch_size writes
        def list_owners(self): ...             # [RemoteUser(id, email)]

The base class does the rest once for every CRM: mapping to and from canonical
fields (with type coercion and per-field problems for malformed values), owner
mapping by email, batching to ``limits.batch_size``, the rate budget, retries
and call metering (through :class:`hub.http.Guard`).

Cursors are opaque JSON-able dicts owned by the connector; the sync engine
stores the cursor after each page in the same transaction as the page's records.

The contract's data lives in modules of its own; this module keeps :class:`ConnectorSettings`,
:class:`Limits` and the :class:`Connector` base class, and re-exports the rest, so a connector
imports everything from here (``from hub.connector import ...``):

* :mod:`hub.records`: what crosses the boundary: ``RawRecord``, ``RawPage``, ``RemoteRecord``,
  ``Page``, ``WriteOp``, ``RemoteWrite``, ``WriteResult``, ``RemoteUser``;
* :mod:`hub.maps`: ``StatusMap``, ``ValueMap``;
* :mod:`hub.cursor`: ``TimestampCursor``, ``epoch_ms``;
* :mod:`hub.crm_tasks`: ``TaskOp``, ``TaskClose``, ``TaskResult`` (only with ``can_write_tasks``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from hub.crm_tasks import TaskClose, TaskOp, TaskResult
from hub.cursor import TimestampCursor, epoch_ms
from hub.errors import AuthError, ConnectorError, RateLimitError, TransientError
from hub.http import CallMeter, Guard, Hint, Rate, RateBudget, RetryPolicy
from hub.maps import StatusMap, ValueMap
from hub.model import LEAD_FIELDS, Lead
from hub.records import Page, RawPage, RawRecord, RemoteRecord, RemoteUser, RemoteWrite, WriteOp, WriteResult

__all__ = [
    "ConnectorSettings",
    "Limits",
    "StatusMap",
    "ValueMap",
    "RawRecord",
    "RawPage",
    "RemoteRecord",
    "Page",
    "WriteOp",
    "RemoteWrite",
    "WriteResult",
    "TaskOp",
    "TaskClose",
    "TaskResult",
    "RemoteUser",
    "TimestampCursor",
    "epoch_ms",
    "Connector",
]

log = logging.getLogger(__name__)

#: HTTP statuses with which a CRM refuses a write's content (not the caller or the moment)
REJECTING = frozenset({400, 409, 422})


class ConnectorSettings(BaseModel):
    """Settings every connection has. A connector subclasses this for its own.

    ``base_url`` (and a connector's token URL, where it has one) is always
    configurable, so the same code reaches the real CRM, its sandbox or a proxy.
    ``status_map`` and ``field_map`` override the connector's defaults per install.
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str
    timeout: float = 30.0
    rate: tuple[int, float] | None = None  # override (requests, seconds), e.g. [190, 10] for HubSpot Pro
    unlimited: bool = False  # no client-side budgets at all: for limit-free sandboxes and benchmarks
    page_size: int | None = None
    status_map: dict[str, dict[str, str]] | None = None
    field_map: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """A CRM's published limits, declared by its connector.

    ``page_size`` and ``batch_size`` are the vendor maxima (also the "vendor
    minimum" API-call figure: records / page_size). ``rate`` is the general
    request budget; ``budgets`` adds named ones (HubSpot's search: 5/s).
    ``batch_endpoint=False`` says the CRM writes one record per call (Pipedrive);
    ``batch_size`` is then how many such calls one write step runs concurrently.
    """

    page_size: int
    batch_size: int
    rate: Rate | None = None
    budgets: Mapping[str, Rate] = field(default_factory=dict)
    daily: int | None = None
    batch_endpoint: bool = True

    def min_reads(self, records: int) -> int:
        """The fewest calls the vendor allows for reading ``records`` lead records."""
        return -(-records // self.page_size)

    def min_writes(self, records: int) -> int:
        """The fewest calls the vendor allows for writing ``records`` lead records."""
        return records if not self.batch_endpoint else -(-records // self.batch_size)


_ADAPTERS = {name: TypeAdapter(f.annotation) for name, f in Lead.model_fields.items() if name in LEAD_FIELDS}


class Connector:
    """Base class of every connector. See the module docstring for what to declare."""

    name: ClassVar[str]
    title: ClassVar[str] = ""
    settings_model: ClassVar[type[ConnectorSettings]] = ConnectorSettings
    lead_object: ClassVar[str] = "leads"
    field_map: ClassVar[dict[str, str]] = {}
    #: picklist translations per canonical field, e.g. {"source": ValueMap({...})}
    value_maps: ClassVar[dict[str, ValueMap]] = {}
    status_map: ClassVar[StatusMap]
    owner_field: ClassVar[str | None] = None
    hub_id_field: ClassVar[str]
    limits: ClassVar[Limits]
    #: vendor rate-limit header readers, see :data:`hub.http.Hint`
    hints: ClassVar[tuple[Hint, ...]] = ()
    #: "module:Class" of this connector's sandbox, served by ``leadhub sandbox NAME``
    sandbox: ClassVar[str | None] = None
    #: the CRM can merge two records through its API, and :meth:`merge` does it
    can_merge: ClassVar[bool] = False
    #: the CRM has tasks (or activities): :meth:`write_tasks` creates them, :meth:`close_tasks` closes them
    can_write_tasks: ClassVar[bool] = False

    def __init__(self, settings: ConnectorSettings, *, connection: str = "", meter: CallMeter | None = None,
                 policy: RetryPolicy | None = None):
        self.settings = settings
        self.connection = connection or self.name
        self.meter = meter or CallMeter()
        rate = Rate(*settings.rate) if settings.rate else self.limits.rate
        budgets = [RateBudget(rate)] if rate and not settings.unlimited else []
        self.named_budgets = {k: RateBudget(r) for k, r in self.limits.budgets.items()
                              if not settings.unlimited}
        self.guard = Guard(connection=self.connection, budgets=budgets, policy=policy, meter=self.meter,
                           hints=self.hints)
        self.fields = {**self.field_map, **(settings.field_map or {})}
        self.statuses = self.status_map.overridden(settings.status_map)

    # -- what a connector implements -------------------------------------------------
    def read_pages(self, cursor: dict[str, Any] | None) -> Iterator[RawPage]:
        """Yield changed records since ``cursor`` page by page, each with the cursor after it."""
        raise NotImplementedError

    def write_batch(self, batch: list[RemoteWrite]) -> list[WriteResult]:
        """Write at most ``limits.batch_size`` records; one result per input, in any order."""
        raise NotImplementedError

    def list_owners(self) -> list[RemoteUser]:
        """The CRM's users that can own a lead (for owner mapping by email)."""
        return []

    def merge(self, survivor_remote_id: str, loser_remote_id: str, object: str | None = None) -> None:
        """Merge ``loser_remote_id`` into ``survivor_remote_id`` inside the CRM (``object``: the
        remote object, default ``lead_object``). Only where ``can_merge`` is True; the merge then
        shows on the next read as the loser deleted with ``merged_into`` set. The CRM decides
        which values survive; the hub writes its own view back afterwards as usual."""
        raise NotImplementedError(f"{self.name}: this connector cannot merge records in the CRM")

    def merge_blocker(self, remote_id: str, fields: Mapping[str, Any]) -> str | None:
        """Why the CRM is certain to refuse merging record ``remote_id``, judged from its canonical
        ``fields`` as last synced (``links.synced``) — e.g. Dynamics merges only active leads — or
        None when it may be merged (the CRM still decides). Makes no call."""
        return None

    def write_tasks(self, ops: Sequence[TaskOp]) -> list[TaskResult]:
        """Create at most ``limits.batch_size`` tasks, each on its lead's record, owned by
        ``owner_remote``; one result per op. Idempotent: an op pushed twice is one task in the CRM
        (an upsert where the CRM has one, else a look for :attr:`TaskOp.marker` when
        ``maybe_exists``). A refused task is ``TaskResult(ok=False, error=<the vendor's message>)``;
        a batch refused whole raises, and :mod:`hub.tasks_push` splits it. Only where
        ``can_write_tasks`` is True."""
        raise NotImplementedError(f"{self.name}: this connector cannot create tasks in the CRM")

    def find_tasks(self, ops: Sequence[TaskOp]) -> dict[int, str]:
        """Which of ``ops`` (at most ``limits.batch_size``) are already tasks in the CRM, made by an
        earlier push: hub task id -> the CRM's task id; an op not found is absent. The look
        :meth:`write_tasks` makes for ``maybe_exists`` ops (upsert key or :attr:`TaskOp.marker`), in
        the same batched queries, and nothing is created or changed. :mod:`hub.tasks_push` asks it for
        a task the hub closed after a push whose answer it never recorded. A lookup refused whole
        raises, and :mod:`hub.tasks_push` splits it. Only where ``can_write_tasks`` is True."""
        raise NotImplementedError(f"{self.name}: this connector cannot look for tasks in the CRM")

    def close_tasks(self, ops: Sequence[TaskClose]) -> list[TaskResult]:
        """Close at most ``limits.batch_size`` tasks this connector created (completed; canceled where
        the CRM has it and ``dismissed``); one result per op. Idempotent: closing a closed task is
        harmless. A task the CRM no longer has (deleted there) is ``TaskResult(ok=False, gone=True,
        error=<the vendor's message>)``; another refusal ``ok=False`` with the vendor's message; a batch
        refused whole raises, and :mod:`hub.tasks_push` splits it. Only where ``can_write_tasks``."""
        raise NotImplementedError(f"{self.name}: this connector cannot close tasks in the CRM")

    def remote_owner(self, email: str | None) -> str | None:
        """The CRM user id for a team member's e-mail (the owner map used for leads); None if unknown."""
        return self._owners[1].get(email.lower()) if email and self.owner_field else None

    def close(self) -> None:
        """Release clients and connections."""

    # -- what the base class does for every connector ----------------------------------
    @property
    def page_size(self) -> int:
        return self.settings.page_size or self.limits.page_size

    @cached_property
    def _owners(self) -> tuple[dict[str, str], dict[str, str]]:
        users = self.list_owners() if self.owner_field else []
        by_id = {u.id: u.email.lower() for u in users}
        return by_id, {email: uid for uid, email in by_id.items()}

    def decode(self, props: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Remote props → canonical fields, with a problem per value that cannot be read."""
        out: dict[str, Any] = {}
        problems: list[str] = []
        for canon, remote in self.fields.items():
            raw = props.get(remote)
            if raw is None or raw == "":
                out[canon] = None
                continue
            if canon in self.value_maps:
                raw = self.value_maps[canon].to_canonical(raw)
            adapter = _ADAPTERS.get(canon)
            if adapter is None:
                out[canon] = raw
                continue
            try:
                out[canon] = adapter.validate_python(raw, strict=False)
            except ValidationError:
                try:
                    out[canon] = adapter.validate_json(f'"{raw}"') if isinstance(raw, str) else None
                except ValidationError:
                    problems.append(f"field {remote!r}: cannot read {raw!r} as {canon}")
        if self.owner_field:
            oid = props.get(self.owner_field)
            out["owner"] = self._owners[0].get(str(oid)) if oid not in (None, "") else None
            if oid not in (None, "") and out["owner"] is None:
                problems.append(f"field {self.owner_field!r}: owner {oid!r} is not a known user")
        status = self.statuses.to_canonical(props)
        if status is None:
            shown = {f: props.get(f) for f in self.statuses.fields}
            problems.append(f"status {shown} maps to no canonical status")
        else:
            out["status"] = status
        return out, problems

    def encode_value(self, name: str, value: Any) -> Any:
        """A canonical value in the CRM's wire form. JSON-able by default; override per CRM."""
        if value is None:
            return None
        if hasattr(value, "isoformat"):
            return value.isoformat()
        return value

    def encode(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Canonical fields → remote props (only the fields given)."""
        props: dict[str, Any] = {}
        for canon, value in fields.items():
            if canon == "status":
                if value:
                    props.update(self.statuses.to_remote(value))
            elif canon == "owner":
                if self.owner_field:
                    oid = self._owners[1].get(value.lower()) if value else None
                    if value and oid is None:
                        # no CRM user has this e-mail: leave the CRM's owner alone rather than clear it
                        warned = self.__dict__.setdefault("_unknown_owners", set())
                        if value not in warned:  # once per owner and connection, not once per record
                            warned.add(value)
                            log.warning("[%s] owner %s has no user in this CRM; owner not written",
                                        self.connection, value)
                        continue
                    props[self.owner_field] = oid
            elif canon in self.fields:
                if canon in self.value_maps and value is not None:
                    value = self.value_maps[canon].to_remote(value)
                props[self.fields[canon]] = self.encode_value(canon, value)
        return props

    @property
    def mapped_fields(self) -> tuple[str, ...]:
        """The canonical fields this connection carries."""
        return (*self.fields, "status", *(("owner",) if self.owner_field else ()))

    def mapped(self, fields: Mapping[str, Any], remote_id: str | None = None) -> dict[str, Any]:
        """What the remote will hold for ``fields`` after writing them: encode then decode.

        The hub remembers this as the remote's state, so a lossy mapping (an
        unknown owner, a rounded number) never looks like a change on the next pull.
        ``remote_id`` is the record written (``None`` for a create), for connectors
        whose records hold different fields in different states (a converted
        Salesforce lead holds its deal's fields; an open one does not): override and
        leave out what that record cannot hold.
        """
        wanted = [k for k in fields if k in self.mapped_fields]
        if fields.get("status") and fields["status"] not in self.statuses.write:
            wanted.remove("status")  # a status this CRM cannot hold (a delivery board's) is not written
        props = self.encode({k: fields[k] for k in wanted})
        if self.owner_field and self.owner_field not in props and "owner" in wanted:
            wanted.remove("owner")  # not written (no such user): the remote keeps what it had
        decoded, _ = self.decode(props)
        return {k: decoded.get(k) for k in wanted}

    def read_changes(self, cursor: dict[str, Any] | None) -> Iterator[Page]:
        """Pages of canonical records changed since ``cursor``."""
        for raw_page in self.read_pages(cursor):
            records = []
            for raw in raw_page.records:
                fields, problems = self.decode(raw.props) if not raw.deleted else ({}, [])
                hub_id = raw.props.get(self.hub_id_field) or None
                records.append(RemoteRecord(self.lead_object, raw.remote_id, raw.modified, fields,
                                            str(hub_id) if hub_id else None, raw.deleted, problems,
                                            raw.merged_into if raw.deleted else None))
            yield Page(records, raw_page.cursor)

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """Write canonical ops in vendor-sized batches; the hub id always travels along."""
        results: list[WriteResult] = []
        size = self.limits.batch_size
        for start in range(0, len(ops), size):
            batch = []
            for op in ops[start:start + size]:
                props = self.encode(op.fields)
                props[self.hub_id_field] = op.hub_id
                batch.append(RemoteWrite(op.hub_id, props, op.remote_id))
            results.extend(self._write_isolating(batch))
        return results

    def _write_isolating(self, batch: list[RemoteWrite]) -> list[WriteResult]:
        """Write a batch; if the CRM refuses it whole (4xx), split it until the bad records
        stand alone, so one invalid record never blocks the rest (log2(n) extra calls each)."""
        try:
            return self.write_batch(batch)
        except ConnectorError as exc:
            if isinstance(exc, (AuthError, RateLimitError, TransientError)) or exc.status not in REJECTING:
                raise
            if len(batch) == 1:
                w = batch[0]
                return [WriteResult(w.hub_id, False, w.remote_id, exc.vendor_message)]
            mid = len(batch) // 2
            return self._write_isolating(batch[:mid]) + self._write_isolating(batch[mid:])

"""Pipedrive: leads (v1) with their persons and organizations, followed into deals (v2), over httpx.

A canonical lead is a Pipedrive lead plus its person (name, primary email and phone, custom fields)
and organization (its name is the lead's company). Its status is a lead label, or, once Pipedrive has
converted the lead to a deal, the deal's status and stage; its remote id is the lead's id throughout.

* **Reads** (:mod:`connectors.pipedrive.reading`): leads by ``updated_since`` (inclusive, with a
  seen-set keyed by record and version), archived leads, deals and persons changed on their own
  (v2 keyset cursors of up to 500), in one composite cursor.
* **Converted leads**: Pipedrive deletes a lead it converts; the deal names it in
  ``source_lead_id`` (read with ``include_fields=source_lead_id``), so the deal is emitted under the
  lead's id and the hub's existing link follows it to won or lost. The hub id travels too: leads
  inherit the deal custom-field schema, so the conversion copies the ``LeadHub ID`` field to the deal
  (and the hub stamps deals it first meets without it).
* **Writes** (:mod:`connectors.pipedrive.writing`): one record per call — there is no batch
  endpoint — several at once on a small thread pool, inside the 2-second burst window (the guard's
  rate budget is thread-safe); a refused record becomes ``WriteResult(ok=False, error=<Pipedrive's
  error verbatim>)`` while the rest are written.
* **Idempotent creates**: there is no upsert and no client-chosen id, so a create first searches for
  the hub id in custom fields (``GET /api/v2/itemSearch``, leads, deals and persons) and creates
  only what it does not find: the person, then the lead, each carrying the hub id in the request
  that creates it. An object therefore exists with the hub id or not at all; a retry after a crash
  finds the lead (or its deal) and updates it, or finds the person alone and adds only the lead.
  The one window is Pipedrive's search index lagging a write by seconds; the sync engine's next
  retry is a run later. Organizations are matched by exact name, one creation per name at a time.
* **Status** (:mod:`connectors.pipedrive.maps`): lead labels by name (ids resolved at run time, a
  missing label created), ``is_archived`` (Closed Lost), and the deal's status and stage by name;
  ``lost_reason`` both ways.
* **Limits** (:mod:`connectors.pipedrive.budget`): ``Rate(40, 2)`` (Growth plan, API token; set
  ``rate`` for another plan), 10 searches per 2 s, ``x-ratelimit-*`` headers read after every answer,
  and the daily token budget tracked per operation's ``x-token-cost``: a call that would dig into
  ``token_reserve`` stops the run with a ``RateLimitError`` naming the budget.
* **No merges**: Pipedrive merges persons, organizations and deals (``PUT /v1/persons/{id}/merge``
  with ``merge_with_id``; ``mergePersons``, ``mergeOrganizations``, ``mergeDeals`` in the v1 spec) but
  has no merge for leads, the records the hub links, so ``can_merge`` is False and no read carries
  ``merged_into`` (a merge of two persons is not a merge of their leads, and is not reported as one).

``base_url`` is ``https://api.pipedrive.com`` (v1 under ``/v1``, v2 under ``/api/v2``) or a company
domain (``https://acme.pipedrive.com`` with ``v1_prefix: /api/v1``), the sandbox, or a proxy.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import Field, SecretStr

from hub.connector import Connector, ConnectorSettings, Limits, RawPage, RemoteUser, RemoteWrite, WriteResult
from hub.errors import AuthError, RateLimitError
from hub.hookspecs import hookimpl
from hub.http import CallMeter, Rate, RetryPolicy

from .api import NamedBudget, PipedriveApi
from .budget import DailyAwarePolicy, DailyTokens, remaining_hint
from .maps import FIELD_MAP, HUB_ID_KEY, LOST_REASON_KEY, PERSON_HUB_ID_KEY, STATUS_MAP, VALUE_MAPS
from .reading import Reader
from .tasks import PipedriveTasks
from .writing import Writer

__all__ = ["PipedriveConnector", "PipedriveSettings", "hub_register_connectors"]


class PipedriveSettings(ConnectorSettings):
    base_url: str = "https://api.pipedrive.com"
    token: SecretStr  # the API token, sent as the x-api-token header
    v1_prefix: str = "/v1"  # "/api/v1" on a company domain
    v2_prefix: str = "/api/v2"
    hub_id_key: str = HUB_ID_KEY  # deal (and so lead) custom field holding the hub's lead id
    person_hub_id_key: str = PERSON_HUB_ID_KEY  # person custom field: the hub's marker
    lost_reason_key: str = LOST_REASON_KEY  # deal/lead custom field for a lead's loss reason
    currency: str = "EUR"  # for a value written without one (Pipedrive needs both)
    pipeline_id: int | None = None  # where stages are looked up by name and conversions land
    daily_tokens: int | None = None  # the account's daily budget, until Pipedrive's headers tell
    token_reserve: int = Field(1_000, ge=0)  # tokens left for everyone else on the account
    concurrency: int = Field(8, ge=1, le=40)  # single-record writes in flight at once


class PipedriveConnector(PipedriveTasks, Connector):
    name = "pipedrive"
    title = "Pipedrive"
    settings_model = PipedriveSettings
    lead_object = "leads"
    field_map = FIELD_MAP
    value_maps = VALUE_MAPS
    status_map = STATUS_MAP
    owner_field = "owner_id"
    hub_id_field = HUB_ID_KEY
    # batch_size: no batch endpoint exists; it is how many single-record writes one write_batch runs
    limits = Limits(page_size=500, batch_size=20, rate=Rate(40, 2), budgets={"search": Rate(10, 2)},
                    daily=30_000 * 2, batch_endpoint=False)
    hints = (remaining_hint,)
    sandbox = "connectors.pipedrive.sandbox:PipedriveSandbox"
    can_merge = False  # Pipedrive cannot merge leads (only persons, organizations, deals): see the module

    settings: PipedriveSettings

    def __init__(self, settings: PipedriveSettings, *, connection: str = "", meter: CallMeter | None = None,
                 policy: RetryPolicy | None = None):
        self.tokens = DailyTokens(configured=settings.daily_tokens, reserve=settings.token_reserve)
        self.hints = (remaining_hint, self.tokens.observe)
        base = policy or RetryPolicy()
        policy = DailyAwarePolicy(**{f.name: getattr(base, f.name) for f in dataclasses.fields(RetryPolicy)})
        super().__init__(settings, connection=connection, meter=_locked(meter or CallMeter()), policy=policy)
        self.tokens.connection = self.connection
        self.hub_id_field = settings.hub_id_key
        self.api = PipedriveApi(base_url=settings.base_url, token=settings.token.get_secret_value(), guard=self.guard,
                                timeout=settings.timeout, v1_prefix=settings.v1_prefix, v2_prefix=settings.v2_prefix,
                                tokens=self.tokens, search=NamedBudget(self.named_budgets, "search"),
                                connection=self.connection)
        keys = {"hub_key": settings.hub_id_key, "person_hub_key": settings.person_hub_id_key,
                "lost_key": settings.lost_reason_key}
        labels = {v for values, _ in self.statuses.entries for f, v in values.items() if f == "lead_label" and v}
        self.reader = Reader(self.api, page_size=min(self.page_size, 500), status_labels=labels, **keys)
        self.writer = Writer(self.api, currency=settings.currency, pipeline=settings.pipeline_id, **keys)
        rate = None if settings.unlimited else Rate(*settings.rate) if settings.rate else self.limits.rate
        # a write is a few ms to a few hundred: a fifth of the window's requests in flight fills it
        self.workers = settings.concurrency if rate is None else max(1, min(settings.concurrency, rate.requests // 5))

    def read_pages(self, cursor: dict[str, Any] | None) -> Iterator[RawPage]:
        return self.reader.pages(cursor)

    def write_batch(self, batch: list[RemoteWrite]) -> list[WriteResult]:
        if len(batch) == 1 or self.workers == 1:
            return [self.writer.write(w) for w in batch]
        with ThreadPoolExecutor(min(self.workers, len(batch)), "pipedrive-write") as pool:
            futures = [pool.submit(self.writer.write, w) for w in batch]
        results, fatal = [], None
        for future in futures:
            exc = future.exception()
            if exc is None:
                results.append(future.result())
            elif isinstance(exc, (AuthError, RateLimitError)):
                fatal = fatal or exc
            else:
                raise exc
        if fatal is not None:  # the writes that went through are simply redone next run: they are idempotent
            raise fatal
        return results

    def list_owners(self) -> list[RemoteUser]:
        return self.api.users()

    def encode(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """As the base does, except that no owner (or one Pipedrive does not know) is written as the
        token's own user: every Pipedrive record has an owner, and that is whom Pipedrive would pick."""
        props = super().encode(fields)
        if "owner" in fields and not props.get(self.owner_field):
            _ = self._owners  # reads the users, and with them the token's own
            props[self.owner_field] = self.api.me
        return props

    def close(self) -> None:
        self.api.close()


def _locked(meter: CallMeter) -> CallMeter:
    """Make ``meter.record`` safe for the write pool's threads (the core's meter is not)."""
    lock = threading.Lock()
    record = meter.record

    def locked(kind: str, status: int | None) -> None:
        with lock:
            record(kind, status)
    meter.record = locked  # type: ignore[method-assign]
    return meter


@hookimpl
def hub_register_connectors(register):  # type: ignore[no-untyped-def]
    register(PipedriveConnector)

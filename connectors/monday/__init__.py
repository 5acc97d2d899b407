"""monday.com: a lead is an item on a board, over GraphQL with httpx (``API-Version`` pinned).

Columns are found by title: the first call reads ``boards { columns { id title type
settings_str } }`` and maps the declared titles (:mod:`.maps`) to this board's column
ids; column values are encoded per column type in :mod:`.columns`.

Reads: ``items_page`` sorted by ``__last_updated__`` and filtered ``>=`` the cursor
(``compare_attribute: "UPDATED_AT"``, ``compare_value: ["EXACT", iso]``, the shape
monday's own Python SDK sends), then ``next_items_page`` (500 per page), with an
inclusive cursor, a seen-set of item versions (``updated_at`` has whole seconds) and a
guard against items edited mid-pull (:mod:`.paging`).
Deleted or archived items drop out of ``items_page`` and are not reported. monday has no merge
(its item mutations create, duplicate, move, archive, delete and change column values; the API
reference's Items page lists none that merges), so ``can_merge`` is False and no read carries
``merged_into``.

Tasks: none (``can_write_tasks`` is False). monday has no task object: an item's update
(``create_update``) is a comment, with no owner, due date or done state, and a subitem would need
People and Date columns on the board's subitems board, discovered and mapped per install like the
lead board's. A hub task for a lead that lives only on monday stays open in the hub and is
reported as unlinked by :func:`hub.tasks_push.push_tasks`.

Writes: one request per batch of up to 50 aliased ``change_multiple_column_values``
mutations, and one of aliased ``create_item`` mutations for new leads. monday has no
upsert, so a retry must not create twice: after a complete pull (pull, then push, in one
run) an item the hub created without hearing back has been read and linked by the hub id
it carries; a connector that has not pulled (a write-only connection, a bare ``write``)
first looks the hub ids up in the ``LeadHub ID`` column. A refused alias is a per-record
rejection carrying monday's message.

Limits: complexity is monday's real limit (10M points/min for personal tokens, 5M per
request; ~10,000 points per item mutation, so ~1,000 item writes a minute);
``COMPLEXITY_BUDGET_EXHAUSTED`` and the minute limit are waited out as monday says
(``retry_in_seconds`` / ``Retry-After``, see :mod:`.client`).

:class:`MondayDeliveryConnector` (``monday_delivery``) writes one way into a delivery
board: a Closed Won lead becomes a kickoff item named after the company.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, ClassVar

from pydantic import ConfigDict, SecretStr

from hub.connector import (
    Connector,
    ConnectorSettings,
    Limits,
    RawPage,
    RawRecord,
    RemoteUser,
    RemoteWrite,
    WriteResult,
    epoch_ms,
)
from hub.errors import ConnectorError, TransientError
from hub.hookspecs import hookimpl
from hub.http import Rate

from . import mutations as M
from . import queries as Q
from .client import GraphQL, Reply, retry_in_seconds
from .columns import Column, from_wire, to_wire
from .delivery import DeliveryMixin
from .maps import FIELD_MAP, HUB_ID, NAME_PARTS, OWNER, STATUS_MAP, VALUE_MAPS
from .paging import ChangeFeed, version

__all__ = ["MondaySettings", "MondayConnector", "MondayDeliveryConnector", "hub_register_connectors"]

log = logging.getLogger(__name__)


class MondaySettings(ConnectorSettings):
    """A monday.com connection: ``token`` (personal or app), the ``board_id`` holding the leads.

    ``base_url`` is the API host (``/v2`` is appended); ``api_version`` the ``API-Version``
    header; ``field_map`` / ``status_map`` override the title maps in :mod:`.maps`.
    """

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    base_url: str = "https://api.monday.com"
    token: SecretStr
    board_id: str
    api_version: str = "2025-10"
    #: pin a title to a column id where the board's titles differ from the maps
    columns: dict[str, str] = {}
    #: item mutations per request (~10,000 complexity points each); the default 50 fits a trial
    #: account's 1M points a minute twice
    batch_size: int | None = None


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


class MondayConnector(Connector):
    name = "monday"
    title = "monday.com"
    settings_model = MondaySettings
    lead_object = "items"
    field_map = FIELD_MAP
    value_maps = VALUE_MAPS
    status_map = STATUS_MAP
    owner_field = OWNER
    hub_id_field = HUB_ID
    #: titles whose values make up the item name, unless the board has columns with those titles
    name_parts: ClassVar[tuple[str, ...]] = NAME_PARTS
    limits = Limits(page_size=500, batch_size=50, rate=Rate(5000, 60))
    hints = (retry_in_seconds,)
    sandbox = "connectors.monday.sandbox:MondaySandbox"

    settings: MondaySettings

    def __init__(self, settings: MondaySettings, **kw: Any):
        super().__init__(settings, **kw)
        if settings.batch_size:
            self.limits = replace(self.limits, batch_size=settings.batch_size)
        self.gql = GraphQL(settings.base_url, settings.token, settings.api_version, settings.timeout, self.guard)
        self._pulled = False  # whether read_pages last ran to its end

    # -- the board's columns ----------------------------------------------------------------
    @cached_property
    def board(self) -> dict[str, Column]:
        """Columns by title, read once; drops mapped fields whose column the board lacks."""
        reply = self.gql("board", Q.BOARD, {"b": [self.settings.board_id]}).check("board", self.connection)
        found = reply.data.get("boards") or []
        if not found:
            raise ConnectorError(f"board {self.settings.board_id} not found, or not shared with this token",
                                 connection=self.connection)
        cols = {c["title"]: Column(c["id"], c["title"], c["type"], c.get("settings_str") or "{}")
                for c in found[0].get("columns") or []}
        by_id = {c.id: c for c in cols.values()}
        cols.update({title: by_id[cid] for title, cid in self.settings.columns.items() if cid in by_id})
        missing = sorted({*self.statuses.fields, self.hub_id_field} - set(cols))
        if missing:
            raise ConnectorError(f"board {found[0]['name']!r} has no column titled {', '.join(map(repr, missing))}"
                                 f" (its columns: {', '.join(sorted(cols))})", connection=self.connection)
        for canon, title in list(self.fields.items()):
            if title not in cols and title not in self.name_parts:
                log.warning("%s: board has no column %r; %s is not synced", self.connection, title, canon)
                del self.fields[canon]
        if self.owner_field and self.owner_field not in cols:
            log.warning("%s: board has no column %r; owners are not synced", self.connection, self.owner_field)
            self.owner_field = None
        self._by_id = {c.id: c for c in cols.values()}
        self._titles = {c.id: c.title for c in cols.values()}
        self._virtual = tuple(t for t in self.name_parts if t not in cols)
        return cols

    @property
    def mapped_fields(self) -> tuple[str, ...]:
        _ = self.board  # the board decides which mapped fields exist
        return super().mapped_fields

    @property
    def _name_titles(self) -> tuple[str, ...]:
        """The mapped titles that make up the item name on this board (not columns of their own)."""
        _ = self.board
        return self._virtual

    def _column_ids(self) -> list[str]:
        titles = {*self.fields.values(), *self.statuses.fields, self.hub_id_field, self.owner_field}
        return sorted(self.board[t].id for t in titles if t in self.board)

    # -- reads ------------------------------------------------------------------------------
    def read_pages(self, cursor: dict[str, Any] | None) -> Iterator[RawPage]:
        self._pulled = False
        feed, cols = ChangeFeed(cursor), self._column_ids()
        page: tuple[list[dict[str, Any]], str | None] | None = self._first_page(feed, cols)
        while page is not None:
            items, after = page
            ahead = self._next_page(after, feed, cols) if after else None
            records = []
            for item in items:
                ms, props = epoch_ms(item["updated_at"]), self._props(item)
                key = version(str(item["id"]), props)
                if feed.admit(key, ms):
                    feed.take(key, ms)
                    records.append(RawRecord(str(item["id"]), datetime.fromtimestamp(ms / 1000, timezone.utc),
                                             props))
            yield RawPage(records, feed.commit(epoch_ms(i["updated_at"]) for i in (ahead[0] if ahead else ())))
            page = ahead
        self._pulled = True

    def _first_page(self, feed: ChangeFeed, cols: list[str]) -> tuple[list[dict[str, Any]], str | None]:
        qp: dict[str, Any] = {"order_by": [{"column_id": Q.LAST_UPDATED, "direction": "asc"}]}
        if feed.since is not None:
            qp["rules"] = [{"column_id": Q.LAST_UPDATED, "compare_attribute": "UPDATED_AT",
                            "compare_value": ["EXACT", _iso(feed.since)], "operator": "greater_than_or_equals"}]
        reply = self.gql("items_page", Q.FIRST_PAGE, {"b": [self.settings.board_id], "limit": self.page_size,
                                                      "qp": qp, "cols": cols}).check("items_page", self.connection)
        newest = (reply.data.get("newest") or [{}])[0].get("items_page", {}).get("items") or []
        feed.set_ceiling(epoch_ms(newest[0]["updated_at"]) if newest else None)
        found = reply.data.get("boards") or []
        if not found:
            raise ConnectorError(f"board {self.settings.board_id} not found", connection=self.connection)
        return found[0]["items_page"]["items"], found[0]["items_page"]["cursor"]

    def _next_page(self, after: str, feed: ChangeFeed, cols: list[str]) -> tuple[list[dict[str, Any]], str | None]:
        reply = self.gql("next_items_page", Q.NEXT_PAGE, {"cursor": after, "limit": self.page_size, "cols": cols})
        if any("CursorExpired" in Reply.describe(e) for e in reply.errors):
            log.info("%s: items_page cursor expired; restarting at the stored cursor", self.connection)
            return self._first_page(feed, cols)
        page = reply.check("next_items_page", self.connection).data["next_items_page"]
        return page["items"], page["cursor"]

    def _props(self, item: dict[str, Any]) -> dict[str, Any]:
        props = {col.title: from_wire(col, cv.get("text"), cv.get("value"))
                 for cv in item.get("column_values") or [] if (col := self._by_id.get(cv["id"]))}
        name = item.get("name") or ""
        if len(self._virtual) == 1:
            props[self._virtual[0]] = name or None
        elif len(self._virtual) == 2:
            first, _, rest = name.partition(" ")
            props.update(zip(self._virtual, (first or None, rest or None) if rest else (None, name or None),
                             strict=True))
        return props

    # -- writes -----------------------------------------------------------------------------
    def encode(self, fields: Any) -> dict[str, Any]:
        props = super().encode(fields)
        if len(self._name_titles) == 2 and all(t in props for t in self._name_titles):
            props.update(self._props({"name": self._item_name(props, "")}))  # as monday will read it back
        return props

    def encode_value(self, name: str, value: Any) -> Any:
        if isinstance(value, float):
            return str(int(value)) if value.is_integer() else repr(value)
        return super().encode_value(name, value)

    def write_batch(self, batch: list[RemoteWrite]) -> list[WriteResult]:
        parts = self._name_titles
        # after a complete pull, an item the hub created before (and never heard back about) has been
        # read and linked by the hub id it carries, so only a connector that has not pulled looks first
        unsure = [w.hub_id for w in batch if not w.remote_id and not self._pulled]
        renamed = [w.remote_id for w in batch if w.remote_id and 0 < sum(t in w.props for t in parts) < len(parts)]
        existing: dict[str, str] = {}
        names: dict[str, str] = {}
        if unsure or renamed:
            doc, variables = M.lookup(self.settings.board_id, self.board[self.hub_id_field].id, unsure, renamed)
            existing, names = M.lookup_results(self.gql("lookup", doc, variables).check("lookup",
                                                                                        self.connection).data)
        updates, creates = [], []
        for w in batch:
            item_id = w.remote_id or existing.get(w.hub_id)
            values = {self.board[t].id: to_wire(self.board[t], v) for t, v in w.props.items()
                      if t in self.board and t not in parts}
            if item_id is None:
                name = self._item_name(w.props, "") or f"Lead {w.hub_id}"
                creates.append(M.Write(w.hub_id, None, {k: v for k, v in values.items() if v != ""}, name))
                continue
            if any(t in w.props for t in parts):
                values["name"] = self._item_name(w.props, names.get(item_id, ""))
            updates.append(M.Write(w.hub_id, item_id, values))
        return self._send("update", updates) + self._send("create", creates)

    def _item_name(self, props: dict[str, Any], current: str) -> str:
        """The item name from the name parts in ``props``, the rest taken from the ``current`` name."""
        parts = self._props({"name": current}) if current else {}
        parts.update({t: props[t] for t in self._name_titles if t in props})
        return " ".join(str(parts[t]) for t in self._name_titles if parts.get(t)) or current

    def _send(self, kind: str, writes: list[M.Write]) -> list[WriteResult]:
        if not writes:
            return []
        doc, variables = M.mutation(self.settings.board_id, writes)
        try:
            reply = self.gql(kind, doc, variables, not_idempotent=kind == "create")
        except TransientError as exc:
            if kind != "create":
                raise
            self._pulled = False  # the items may exist now: look before creating them again
            return [WriteResult(w.hub_id, False, None, f"no answer ({exc}); looked up by hub id and retried "
                                "next run", retryable=True) for w in writes]
        results = M.results(reply, writes, self._titles)
        if reply.errors and not reply.by_alias():
            reply.check(kind, self.connection)  # a whole-request error (the document itself)
        return results

    # -- owners ---------------------------------------------------------------------------
    def list_owners(self) -> list[RemoteUser]:
        users, page = [], 1
        while True:
            got = self.gql("users", Q.USERS, {"page": page}).check("users", self.connection).data.get("users") or []
            users += [RemoteUser(str(u["id"]), u["email"], u.get("name") or "") for u in got if u.get("email")]
            if len(got) < Q.USERS_PAGE:
                return users
            page += 1

    def close(self) -> None:
        self.gql.close()


class MondayDeliveryConnector(DeliveryMixin, MondayConnector):  # type: ignore[misc]
    """A delivery board that Closed Won leads flow into as kickoff items (see :mod:`.delivery`)."""


@hookimpl
def hub_register_connectors(register):  # type: ignore[no-untyped-def]
    register(MondayConnector)
    register(MondayDeliveryConnector)

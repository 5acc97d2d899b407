"""The conformance kit's machinery: what it needs from a sandbox, and the harness that drives a connector.

:class:`ConformanceSandbox` is what the kit needs from a connector's sandbox;
:class:`Kit` serves one, builds connectors for it and syncs them into a real
store (the checks themselves are :class:`hub.testing.conformance.ConformanceSuite`).

Every built-in sandbox implements this protocol, and so should a third-party
connector's, so that :mod:`hub.testing.conformance` can run the standard read,
write and round-trip suite against it. The methods act *as a user of the CRM
would* (they bypass the API, its rate limits and faults, but they do stamp the
CRM's modified time), and speak canonical field names so the kit is the same
for every CRM: ``first_name``, ``last_name``, ``email``, ``phone``, ``company``,
``title``, ``country``, ``source``, ``status`` (a canonical status), ``owner``
(an owner's e-mail), plus ``hub_id`` on reads (the hub's id as stored remotely,
or ``None``). ``remote_get`` returns values in the hub's types (text as ``str``,
numbers as ``float``, dates as ``date``), so the kit can compare them with what
the connector wrote.

The kit constructs the sandbox as ``Sandbox(rate=None, **sandbox_kwargs)`` (so
the constructor must take ``rate``, None meaning no limit) and, for its
rate-limit check, with ``rate=<a small number>`` per the connector's declared
``limits.rate.per`` window.

A connector's test file then is a few lines::

    from hub.testing.conformance import ConformanceSuite

    class TestAcme(ConformanceSuite):
        connector = AcmeConnector
        sandbox = AcmeSandbox

Two more methods are optional (:class:`ConformanceSandboxExtras`); the kit uses
them when a sandbox has them and says so when it skips a check for want of one:
``remote_status_values()`` (every status combination the CRM can hold, so the kit
can check each maps to a canonical status) and ``invalid_fields()`` (canonical
fields the CRM refuses, so the kit can check a rejected record is reported with
the vendor's message while the rest of its batch is written).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa
from sqlmodel import Session

from hub import outbox
from hub.connector import Connector, ConnectorSettings
from hub.http import Answer, Rate, RateBudget
from hub.model import LEAD_FIELDS, Lead, utcnow
from hub.store import LeadRow, Link, OutboxRow, RecordIssue, Store, row_values
from hub.sync import Connection, Syncer, SyncOutcome, jsonable

__all__ = ["ConformanceSandbox", "ConformanceSandboxExtras", "CONNECTION", "expect", "on_sandbox_clock",
           "CallReport", "Kit"]

#: the connection name every kit run uses (so error messages can be checked for it)
CONNECTION = "conformance"


@runtime_checkable
class ConformanceSandbox(Protocol):
    """The test-side handle on a stateful fake CRM (see the module docstring)."""

    #: a valid credential for this sandbox (the connector's token / API key / client secret)
    token: str

    def seed(self, n: int, seed: int = 0) -> Any:
        """Fill the CRM with ``n`` realistic leads (deterministic for ``seed``)."""

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        """Settings (as a config file would give them) for this connector to reach this sandbox.

        Must include ``base_url`` (and a token URL where the CRM has one) and the
        credential; must not include rate overrides.
        """

    def remote_create(self, fields: dict[str, Any]) -> str:
        """Create a lead as a CRM user would; returns its remote id."""

    def remote_update(self, remote_id: str, fields: dict[str, Any]) -> None:
        """Change some fields of a lead as a CRM user would (stamps the modified time)."""

    def remote_delete(self, remote_id: str) -> None:
        """Delete (or archive) a lead as a CRM user would."""

    def remote_get(self, remote_id: str) -> dict[str, Any] | None:
        """The lead as the CRM holds it, in canonical names (with ``hub_id``); None if deleted."""

    def remote_ids(self) -> Iterable[str]:
        """Every live (not deleted) lead's remote id."""


@runtime_checkable
class ConformanceSandboxExtras(Protocol):
    """Optional methods a sandbox may add to :class:`ConformanceSandbox` (each checked on its own)."""

    def remote_status_values(self) -> Iterable[dict[str, str]]:
        """Every combination of the CRM's status fields a lead can hold, in the CRM's own names
        and values, e.g. ``[{"lifecyclestage": "subscriber", "hs_lead_status": ""}, ...]``."""

    def invalid_fields(self) -> dict[str, Any]:
        """Canonical fields that make the CRM refuse a write, e.g. ``{"email": "not-an-email@"}``."""


_PROTOCOL = ("token", "seed", "connector_settings", "remote_create", "remote_update", "remote_delete",
             "remote_get", "remote_ids")


def expect(ok: bool, check: str, expected: str, got: str, hint: str = "") -> None:
    """Fail readably: what was checked, what the kit expected, what the connector did."""
    __tracebackhide__ = True
    if not ok:
        lines = [f"conformance: {check}", f"  the kit expected: {expected}", f"  the connector gave: {got}"]
        raise AssertionError("\n".join(lines + ([f"  hint: {hint}"] if hint else [])))


class _VirtualTime:
    """Waiting on the sandbox's clock for one connector, safe with concurrent callers.

    Every call the guard makes passes the connector's general budget (an admission) and ends with
    the meter recording its answer. The clock only jumps once every admitted call has its answer,
    so no call started before a jump reaches the sandbox after it and lands in the wrong window.
    """

    def __init__(self, clock: Any, meter: Any):
        self.clock = clock
        self.admitted = self.answered = self.held = 0  # held: admissions of threads now waiting
        self.cond = threading.Condition()
        self.mine = threading.local()
        record = meter.record

        def recorded(kind: str, status: int | None) -> None:
            record(kind, status)
            with self.cond:
                self.answered += 1
                self.mine.pending = 0
                self.cond.notify_all()
        meter.record = recorded

    def admit(self) -> None:
        with self.cond:
            self.admitted += 1
            self.mine.pending = 1

    def sleep(self, seconds: float) -> None:
        with self.cond:
            until = self.clock.monotonic() + seconds  # a target, so threads waiting together jump once
            own = getattr(self.mine, "pending", 0)
            self.held += own
            if not self.cond.wait_for(lambda: self.admitted - self.answered - self.held <= 0, timeout=2.0):
                self.answered = self.admitted - self.held  # a call that never reported: stop waiting for it
            self.clock.advance(max(0.0, until - self.clock.monotonic()))
            self.held -= own


class _AdmittingBudget(RateBudget):
    def __init__(self, rate: Rate, time: _VirtualTime):
        super().__init__(rate, clock=time.clock.monotonic, sleep=time.sleep)
        self._time = time

    def acquire(self) -> None:
        super().acquire()
        self._time.admit()


def on_sandbox_clock(connector: Connector, clock: Any) -> None:
    """Run the connector's rate budgets on the sandbox's clock: waiting advances it, no real time passes.

    A connector without budgets (``unlimited``) gets one that never limits, so the pause a 429 asks
    for is still waited out, on that clock. Retry backoff after errors is shortened to 20 ms steps.
    """
    time_ = _VirtualTime(clock, connector.meter)
    guard = connector.guard
    rates = [b.rate for b in guard.budgets] or [Rate(1_000_000_000, 1.0)]
    guard.budgets[:] = [_AdmittingBudget(rates[0], time_),
                        *(RateBudget(r, clock=clock.monotonic, sleep=time_.sleep) for r in rates[1:])]
    for name, budget in list(connector.named_budgets.items()):
        connector.named_budgets[name] = RateBudget(budget.rate, clock=clock.monotonic, sleep=time_.sleep)
    guard.policy = dataclasses.replace(guard.policy, base=0.02)


@dataclass(frozen=True, slots=True)
class CallReport:
    """API calls (and seconds) to read ``records``, stamp them (updates) and create as many."""

    connector: str
    records: int
    page_size: int
    batch_size: int
    read_calls: int
    update_calls: int
    create_calls: int
    read_seconds: float
    update_seconds: float
    create_seconds: float

    @property
    def read_minimum(self) -> int:
        return math.ceil(self.records / self.page_size)

    @property
    def write_minimum(self) -> int:
        return math.ceil(self.records / self.batch_size)

    def per_10k(self, calls: int) -> float:
        return round(calls * 10_000 / max(self.records, 1), 1)

    def __str__(self) -> str:
        def part(what: str, calls: int, minimum: int, seconds: float) -> str:
            return (f"{what} {calls} calls = {self.per_10k(calls):g}/10k records (vendor minimum {minimum}), "
                    f"{self.records / max(seconds, 1e-9):,.0f} records/s")
        return (f"{self.connector}, {self.records} records (page {self.page_size}, batch {self.batch_size}): "
                + "; ".join([part("read", self.read_calls, self.read_minimum, self.read_seconds),
                             part("update", self.update_calls, self.write_minimum, self.update_seconds),
                             part("create", self.create_calls, self.write_minimum, self.create_seconds)]))


def _same(name: str, a: Any, b: Any) -> bool:
    if a in (None, "") or b in (None, ""):
        return a in (None, "") and b in (None, "")
    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9)
        except (TypeError, ValueError):
            return False
    a, b = (v.isoformat() if hasattr(v, "isoformat") else str(v).strip() for v in (a, b))
    return a.casefold() == b.casefold() if name in ("email", "owner") else a == b


class Kit:
    """One sandbox of ``suite.sandbox`` served on loopback, a SQLite store, and connectors built for it.

    ``with Kit(SuiteClass, folder, **sandbox_kwargs) as kit:`` — ``kit.box`` is the sandbox,
    ``kit.connect(**settings)`` a connector, ``kit.sync(...)`` one :class:`hub.sync.Syncer` run.
    """

    def __init__(self, suite: Any, folder: Path, **sandbox_kwargs: Any):
        self.suite = suite
        self.cls: type[Connector] = suite.connector
        kwargs = {"rate": None, **suite.sandbox_kwargs, **sandbox_kwargs}
        try:
            self.box = suite.sandbox(**kwargs)
        except TypeError as exc:
            expect(False, f"constructing {suite.sandbox.__name__}", f"it to take {kwargs} (token=, rate= "
                   "at least; None: no limit)", str(exc))
        missing = [m for m in _PROTOCOL if not hasattr(self.box, m)]
        expect(not missing, f"{type(self.box).__name__} implements hub.testing.kit.ConformanceSandbox",
               "every member of the protocol", f"missing {missing}")
        limit = self.cls.limits.page_size
        self.page_size = min(suite.page_size or limit, limit)
        self.folder = Path(folder)
        self.url = ""
        self.last: Connector | None = None
        self._served: Any = None
        self._store: Store | None = None
        self._opened: list[Connector] = []

    def __enter__(self) -> Kit:
        self._served = self.box.serve()
        self.url = self._served.url
        return self

    def __exit__(self, *exc: object) -> None:
        for cn in self._opened:
            try:
                cn.close()
            except Exception:  # closing is best effort; the test's own outcome matters
                pass
        if self._served is not None:
            self._served.stop()
        if self._store is not None:
            self._store.dispose()

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(f"sqlite:///{self.folder / f'kit-{uuid.uuid4().hex[:8]}.db'}")
            self._store.migrate()
        return self._store

    # -- connectors and runs --------------------------------------------------------------------
    def settings(self, **overrides: Any) -> ConnectorSettings:
        raw = dict(self.box.connector_settings(self.url))
        return self.cls.settings_model.model_validate(
            {**raw, "unlimited": True, "page_size": self.page_size, **overrides})

    def connect(self, **overrides: Any) -> Connector:
        cn = self.cls(self.settings(**overrides), connection=CONNECTION)
        on_sandbox_clock(cn, self.box.clock)
        self._opened.append(cn)
        return cn

    def sync(self, connector: Connector | None = None, *, push: bool = True, check: bool = True,
             on_page: Callable[[int], None] | None = None, **overrides: Any) -> SyncOutcome:
        """One sync run (a fresh connector unless given), stopped if its pull does not end."""
        cn = self.last = connector or self.connect(**overrides)
        live = len(list(self.box.remote_ids()))
        cap = 10 + 4 * math.ceil((live + 1) / max(cn.page_size, 1))
        pages = 0

        def progress(phase: str, n: int) -> None:
            nonlocal pages
            if phase != "pull":
                return
            pages += 1
            expect(pages <= cap, "pagination ends", f"about {math.ceil(live / cn.page_size)} pages "
                   f"for {live} records", f"{pages} pages and counting",
                   "stop when the vendor says there is no next page")
            if on_page:
                on_page(n)

        out = Syncer(self.store).run(Connection(CONNECTION, cn), push=push, progress=progress)
        if check:
            expect(out.error is None, "a sync run", "no error", str(out.error))
        return out

    def push(self, connector: Connector) -> tuple[SyncOutcome, int, float]:
        """Push the open outbox only: the outcome, its API calls and seconds."""
        out, calls, t0 = SyncOutcome(CONNECTION), connector.meter.calls, time.perf_counter()
        Syncer(self.store).push(Connection(CONNECTION, connector), out)
        return out, connector.meter.calls - calls, time.perf_counter() - t0

    def measure(self, n: int, *, seed: int = 0, page_size: int | None = None) -> CallReport:
        """See :meth:`hub.testing.conformance.ConformanceSuite.measure_calls`."""
        self.box.seed(n, seed=seed)
        cn = self.connect(page_size=page_size)
        t0 = time.perf_counter()
        read = self.sync(cn, push=False)
        read_s = time.perf_counter() - t0
        expect(read.pulled == n, f"reading {n} seeded records", f"{n}", f"{read.pulled}")
        stamped, update_calls, update_s = self.push(cn)
        self.queue_creates([self.person(i, "bench") for i in range(n)])
        created, create_calls, create_s = self.push(cn)
        expect(stamped.pushed == n and created.pushed == n, f"writing {n} hub ids, then {n} creates",
               f"{n} and {n} written", f"{stamped.pushed} and {created.pushed} ({self.issue_messages()[:3]})")
        return CallReport(self.cls.name, n, cn.page_size, self.cls.limits.batch_size, read.pull_calls,
                          update_calls, create_calls, read_s, update_s, create_s)

    # -- people and the hub's side ----------------------------------------------------------------
    def person(self, i: int, tag: str = "kit", **extra: Any) -> dict[str, Any]:
        """A canonical sample lead, unique by ``(i, tag)``; ``suite.sample_fields`` and ``extra`` win."""
        statuses = list(self.cls.status_map.write)
        fields = {"first_name": "Ada", "last_name": f"{tag.title()} {i}",
                  "email": f"ada.{tag}.{i}@kit-example.com", "phone": f"+44 20 7946 {i % 10_000:04d}",
                  "company": "Analytical Engines Ltd", "title": "Head of Research", "country": "GB",
                  "source": "referral", "status": "Lead" if "Lead" in statuses else statuses[0]}
        return {**fields, **self.suite.sample_fields, **extra}

    @staticmethod
    def owner_email(connector: Connector) -> str | None:
        users = connector.list_owners() if connector.owner_field else []
        return users[0].email.lower() if users else None

    @staticmethod
    def _lead(fields: Mapping[str, Any]) -> Lead:
        return Lead(**{k: v for k, v in fields.items() if k in LEAD_FIELDS},
                    custom={k: v for k, v in fields.items() if k not in LEAD_FIELDS})

    def queue_create(self, fields: Mapping[str, Any]) -> Lead:
        return self.queue_creates([fields])[0]

    def queue_creates(self, many: Iterable[Mapping[str, Any]]) -> list[Lead]:
        """New hub leads with an open outbox row each (no remote id: creates), in one transaction."""
        leads, now = [self._lead(f) for f in many], utcnow()
        with self.store.session() as s:
            s.execute(sa.insert(LeadRow.__table__),
                      [{**row_values(lead), "created_at": now, "updated_at": now} for lead in leads])
            s.execute(sa.insert(OutboxRow.__table__), [
                {"connection": CONNECTION, "object": self.cls.lead_object, "lead_id": lead.id,
                 "remote_id": None, "fields": {}, "state": "pending", "attempts": 0, "created_at": now,
                 "updated_at": now}
                for lead in leads])
        return leads

    def queue_update(self, lead_id: str, fields: Mapping[str, Any]) -> None:
        """Change a hub lead and queue the write, as a rule or a user of the hub would."""
        with self.store.session() as s:
            row = s.get(LeadRow, lead_id)
            for k, v in fields.items():
                setattr(row, k, v)
            row.updated_at = utcnow()
            outbox.enqueue(s, connection=CONNECTION, object=self.cls.lead_object, lead_id=lead_id,
                           fields=jsonable(dict(fields)))

    def create_through_outbox(self, fields: Mapping[str, Any]) -> tuple[Lead, str]:
        """Queue a create, sync, check the next sync sees no change; the lead and its new remote id."""
        lead = self.queue_create(fields)
        out = self.sync()
        expect(out.pushed == 1 and out.rejected == 0, "a create through the outbox", "1 write, none refused",
               f"{out.pushed} written, {out.rejected} refused: {self.issue_messages()}")
        link = self.link_for(lead.id) or (self.sync(push=False) and self.link_for(lead.id))
        expect(link is not None, "a create through the outbox", "the new record linked to the lead",
               "no link", "return the new record's id in WriteResult.remote_id")
        self.no_echo("the sync after the hub's create")
        return lead, link.remote_id

    def no_echo(self, check: str) -> None:
        out = self.sync()
        expect((out.created, out.updated, out.pushed, out.rejected, out.push_calls) == (0, 0, 0, 0, 0), check,
               "no change and no write (the hub's own write is not a new change)",
               f"{out.created} created, {out.updated} updated, {out.pushed} written "
               f"({out.push_calls} write calls)",
               "compare with Connector.mapped(): what encode then decode gives for the fields written")

    def compare(self, connector: Connector, fields: Mapping[str, Any], held: Mapping[str, Any] | None,
                check: str) -> None:
        """The CRM (or the hub) holds ``fields`` as the connector's maps would have them."""
        expect(held is not None, check, "the record", "none (remote_get gave None)")
        wanted = connector.mapped({k: v for k, v in fields.items() if k in connector.mapped_fields})
        diffs = [f"{k}: expected {v!r}, found {held.get(k)!r}" for k, v in wanted.items()
                 if not _same(k, v, held.get(k))]
        expect(not diffs, check, "the values written (after the connector's maps)", "; ".join(diffs))

    def told_wait(self, connector: Connector) -> float | None:
        """Seconds the sandbox's own 429 answer tells a client to wait (as the connector reads it)."""
        response = self.box.error(429, "Injected fault")
        return connector.guard.wait_hint(Answer(429, dict(response.headers), bytes(response.body)))

    # -- reading the store ----------------------------------------------------------------------------
    def links(self) -> dict[str, Link]:
        with Session(self.store.engine) as s:
            return {ln.remote_id: ln for ln in s.exec(sa.select(Link)).scalars()}

    def link_for(self, lead_id: str) -> Link | None:
        return next((ln for ln in self.links().values() if ln.lead_id == lead_id), None)

    def issues(self, kind: str | None = None) -> list[RecordIssue]:
        with Session(self.store.engine) as s:
            q = sa.select(RecordIssue).where(RecordIssue.kind == kind) if kind else sa.select(RecordIssue)
            return list(s.exec(q).scalars())

    def issue_messages(self) -> list[str]:
        return [f"{i.kind}: {i.message}" for i in self.issues()]

    def outbox_row(self, lead_id: str) -> OutboxRow | None:
        with Session(self.store.engine) as s:
            return s.exec(sa.select(OutboxRow).where(OutboxRow.lead_id == lead_id)
                          .order_by(OutboxRow.id.desc())).scalars().first()

"""The conformance kit: the checks every connector must pass, run against the connector's own sandbox.

A connector's test file subclasses :class:`ConformanceSuite` and names two classes::

    from hub.testing.conformance import ConformanceSuite

    class TestAcmeConformance(ConformanceSuite):
        connector = AcmeConnector
        sandbox = AcmeSandbox
        supports_delete = True           # optional knobs: see ConformanceSuite

Each test serves a fresh sandbox on loopback (``sandbox(rate=None, **sandbox_kwargs)``), builds the
connector from ``sandbox.connector_settings(url)`` through ``settings_model.model_validate`` (with
``unlimited=True``, except in the rate-limit check) and syncs with :class:`hub.sync.Syncer` into a
real SQLite store. The checks:

* read — credentials are sent and kept secret, a bad one is an ``AuthError`` naming the connection;
  pagination ends and yields every record once; the incremental cursor loses and repeats nothing when
  many records share one modified time, across an interrupted pull (and, for CRMs stamping whole
  seconds, an edit in the cursor's own second is not lost); deletions are seen; merges read as the
  loser deleted ``merged_into`` the survivor (:mod:`hub.testing.merge_check`, where they apply);
* write — a create through the outbox reads back equal and carries the hub id; updates round-trip both
  ways; the hub's own writes are never pulled back as changes; a retried create does not duplicate;
* status — every canonical status maps to a remote value and back; every remote value maps to one;
* errors — a 429 is waited out as told; 5xx are retried; a refused record is reported with the
  vendor's message while the rest of its batch is written; at a small rate, a run gets at most one 429;
* cost — API calls per record read and written against the vendor minimum, printed and kept on the
  suite as ``calls`` (:meth:`ConformanceSuite.measure_calls` is the same measurement for benchmarks).

Waiting costs no real time: :func:`on_sandbox_clock` runs the connector's rate budgets on the sandbox's
clock, so a budget (or a 429) that waits 10 s advances the sandbox 10 s at once.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from hub.connector import Connector, WriteOp
from hub.errors import AuthError
from hub.model import Status
from hub.testing.kit import CONNECTION, CallReport, Kit, expect, on_sandbox_clock
from hub.testing.merge_check import MergeChecks

__all__ = ["ConformanceSuite", "REPORTS", "CallReport", "Kit", "expect", "on_sandbox_clock"]

#: every CallReport measured in this process (the pytest plugin prints them at the end of a run)
REPORTS: list[CallReport] = []


class _Interrupted(Exception):
    """Raised from a progress callback to stop a pull after its first page."""


class ConformanceSuite(MergeChecks):
    """Subclass with ``connector`` and ``sandbox``; every ``test_*`` here then runs against them.

    Knobs (class attributes): ``sandbox_kwargs`` (extra constructor arguments), ``supports_delete``
    (the CRM shows deletions to an incremental read), ``tie_count`` (records sharing one modified
    time), ``page_size`` (a settings override that keeps seeds small; None: the vendor's),
    ``rate_limit`` (the small sandbox rate of the rate check), ``rate_window`` (its window in seconds;
    None: the connector's ``limits.rate.per``), ``sample_fields`` (canonical values to use instead of
    the kit's sample person, e.g. a country the CRM's picklist knows), ``timestamp_resolution`` (of
    the CRM's modified times, in seconds; at 1 or more the kit also checks that an edit stamped with
    the same time as the last pull's cursor is not lost).
    """

    connector: ClassVar[type[Connector]]
    sandbox: ClassVar[type[Any]]
    sandbox_kwargs: ClassVar[dict[str, Any]] = {}
    supports_delete: ClassVar[bool] = True
    tie_count: ClassVar[int] = 250
    page_size: ClassVar[int | None] = 50
    rate_limit: ClassVar[int] = 3
    rate_window: ClassVar[float | None] = None
    sample_fields: ClassVar[dict[str, Any]] = {}
    timestamp_resolution: ClassVar[float] = 0.001
    #: the last :class:`CallReport` this suite measured (``test_api_calls_per_record…``)
    calls: ClassVar[CallReport | None] = None

    @pytest.fixture
    def kit(self, tmp_path: Path) -> Iterable[Kit]:
        with Kit(type(self), tmp_path) as kit:
            yield kit

    @classmethod
    def measure_calls(cls, n: int, *, seed: int = 0, page_size: int | None = None,
                      folder: Path | None = None) -> CallReport:
        """Seed ``n`` records, pull them, stamp them (n updates), then create ``n`` through the outbox;
        count the API calls of each step. ``page_size`` None: the vendor's (for benchmarks)."""
        tmp = None if folder else Path(tempfile.mkdtemp(prefix="leadhub-kit-"))
        try:
            with Kit(cls, folder or tmp) as kit:
                return kit.measure(n, seed=seed, page_size=page_size)
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)

    # -- read ---------------------------------------------------------------------------------
    def test_credentials_are_sent_kept_secret_and_a_bad_one_is_a_clear_auth_error(self, kit: Kit) -> None:
        kit.box.seed(3, seed=1)
        out = kit.sync(push=False)
        expect(out.pulled == 3, "read with the sandbox's credential", "3 records", f"{out.pulled} records")
        good, settings = kit.box.token, kit.settings()
        expect(good not in repr(settings) and good not in str(settings.model_dump()),
               "the credential is a secret", "it hidden in the settings' repr and dumps",
               "it shown", "declare it as pydantic.SecretStr")
        raw = dict(kit.box.connector_settings(kit.url))
        keys = [k for k, v in raw.items() if str(v) == good]
        expect(bool(keys), "a bad credential", "connector_settings() to carry sandbox.token",
               f"no setting equal to it among {sorted(raw)}")
        wrong = f"kit-wrong-{uuid.uuid4().hex[:12]}"
        raised: BaseException | None = None
        try:
            cn = kit.connect(**{k: wrong for k in keys})
            next(iter(cn.read_changes(None)), None)
        except Exception as exc:  # judged below
            raised = exc
        text = str(raised)
        did = f"{type(raised).__name__}: {text}" if raised else "no error: a wrong credential was taken"
        expect(isinstance(raised, AuthError), "a bad credential", "hub.errors.AuthError", did,
               "the guard turns 401/403 into AuthError; raise guard.error_for(answer, kind) on a 4xx")
        expect(CONNECTION in text, "the AuthError names the connection", f"{CONNECTION!r} in it", text)
        expect(wrong not in text and good not in text, "the AuthError keeps the secret",
               "no credential in it", text)
        expect(any(w in text.lower() for w in ("credential", "auth", "401", "403", "key", "token")),
               "the AuthError says what is wrong", "a message about credentials", text)
        out = kit.sync(push=False, check=False, **{k: wrong for k in keys})
        expect(bool(out.error) and wrong not in out.error, "a sync with a bad credential",
               "the run's error set, without the secret", repr(out.error))

    def test_pagination_ends_and_yields_every_record_once(self, kit: Kit) -> None:
        page = kit.page_size
        n = 2 * page + page // 2 + 1
        kit.box.seed(n, seed=2)
        remote = set(map(str, kit.box.remote_ids()))
        pages: list[int] = []
        out = kit.sync(push=False, on_page=pages.append)
        linked = set(kit.links())
        expect(out.pulled == n and out.created == n and linked == remote, "pagination: every record once",
               f"{n} records pulled and linked once each",
               f"{out.pulled} pulled, {out.created} created; missing {sorted(remote - linked)[:5]}, "
               f"unknown {sorted(linked - remote)[:5]}")
        expect(len(pages) >= math.ceil(n / page), "pagination: the page size is honoured",
               f">= {math.ceil(n / page)} pages of at most {page}", f"{len(pages)} pages: {pages}",
               "ask for self.page_size records per call; if the vendor has a minimum page size, set the "
               "suite's page_size to it")

    def test_incremental_cursor_loses_and_repeats_nothing_on_shared_modified_times(self, kit: Kit) -> None:
        box = kit.box
        tie = box.clock.now().replace(microsecond=0)
        box.clock.freeze(tie - timedelta(minutes=5))
        for i in range(3):
            box.remote_create(kit.person(i, "early"))
        box.clock.freeze(tie)
        for i in range(self.tie_count):
            box.remote_create(kit.person(i, "tie"))
        first: list[int] = []

        def interrupt(n: int) -> None:
            first.append(n)
            raise _Interrupted

        with pytest.raises(_Interrupted):
            kit.sync(push=False, on_page=interrupt)
        taken = len(kit.links())
        expect(taken == first[0], "an interrupted pull", "the first page and its cursor committed together",
               f"{taken} records stored after a first page of {first[0]}")
        total = 3 + self.tie_count
        out = kit.sync(push=False)
        expect(len(kit.links()) == total and out.created == total - taken and out.pulled == out.created,
               f"resuming after {taken} of {total} records ({self.tie_count} share one modified time)",
               f"the other {total - taken} records, each once",
               f"{out.pulled} pulled, {out.created} new; {len(kit.links())} of {total} stored",
               "keep an inclusive (>=) cursor with a seen-set: hub.connector.TimestampCursor")
        for i in range(3):
            box.remote_create(kit.person(i, "sametime"))
        box.clock.freeze(tie + timedelta(minutes=1))
        for i in range(2):
            box.remote_create(kit.person(i, "later"))
        out = kit.sync(push=False)
        expect(out.created == 5 and out.pulled == 5, "records added at the cursor's own time, and later",
               "exactly those 5", f"{out.pulled} pulled, {out.created} new")

    def test_an_edit_in_the_same_timestamp_unit_as_the_last_read_is_not_lost(self, kit: Kit) -> None:
        if self.timestamp_resolution < 1:
            pytest.skip(f"timestamp_resolution = {self.timestamp_resolution:g}s: same-instant edits are not "
                        "a practical risk")
        box = kit.box
        box.clock.freeze(box.clock.now().replace(microsecond=0))
        ids = [box.remote_create(kit.person(i, "instant")) for i in range(2)]
        kit.sync(push=False)
        edit = {"last_name": "Edited"}
        box.remote_update(ids[0], edit)  # within the same second as the record the last pull took
        if self.supports_delete:
            box.remote_delete(ids[1])
        out = kit.sync(push=False)
        expect(out.updated == 1 and out.deleted == int(self.supports_delete),
               "an edit (and a deletion) stamped with the same modified time as the last pull's cursor",
               f"1 update{' and 1 deletion' if self.supports_delete else ''} seen",
               f"{out.updated} updates, {out.deleted} deletions, {out.pulled} records pulled",
               "at whole-second resolution, re-read the cursor's own second: key the seen-set by record "
               "and version (e.g. a hash of its fields), not by record alone")

    def test_deletions_are_seen(self, kit: Kit) -> None:
        if not self.supports_delete:
            pytest.skip("supports_delete = False: the connector does not read deletions")
        ids = [kit.box.remote_create(kit.person(i, "gone")) for i in range(3)]
        kit.sync()
        kit.box.clock.advance(1.0)  # a moment later: a later modified time even at one-second resolution
        kit.box.remote_delete(ids[0])
        expect(kit.box.remote_get(ids[0]) is None and ids[0] not in set(kit.box.remote_ids()),
               "sandbox: remote_delete", "the record gone from remote_get and remote_ids", "still there")
        out = kit.sync()
        link = kit.links().get(ids[0])
        expect(out.deleted == 1 and link is not None and link.deleted_at is not None, "a deleted record",
               "the next pull reports it (RawRecord(deleted=True)) and the link is marked deleted",
               f"{out.deleted} deletions seen", "or set supports_delete = False if the CRM never shows them")
        expect(out.created == 0 and out.pushed == 0, "after a deletion", "nothing created or written",
               f"{out.created} created, {out.pushed} written")

    # -- write and round trip -----------------------------------------------------------------
    def test_a_create_through_the_outbox_reads_back_equal_and_is_not_echoed(self, kit: Kit) -> None:
        cn = kit.connect()
        fields = kit.person(1, "round", owner=kit.owner_email(cn))
        lead, rid = kit.create_through_outbox(fields)
        held = kit.box.remote_get(rid)
        kit.compare(cn, fields, held, "read back after the create")
        expect(held is not None and held.get("hub_id") == lead.id, "the created record carries the hub id",
               repr(lead.id), repr(None if held is None else held.get("hub_id")))

    def test_updates_round_trip_both_ways_without_echo(self, kit: Kit) -> None:
        cn = kit.connect()
        lead, rid = kit.create_through_outbox(kit.person(2, "update"))
        statuses = list(cn.status_map.write)
        change = {k: v for k, v in {"title": "Chief Analyst", "status": statuses[1 % len(statuses)]}.items()
                  if k in cn.mapped_fields}
        kit.queue_update(lead.id, change)
        out = kit.sync()
        expect(out.pushed == 1 and out.rejected == 0, "the hub's update", "1 write, none refused",
               f"{out.pushed} written, {out.rejected} refused; issues: {kit.issue_messages()}")
        kit.compare(cn, change, kit.box.remote_get(rid), "read back after the hub's update")
        kit.no_echo("the sync after the hub's update")
        edit = {k: v for k, v in {"phone": "+44 20 7946 9999", "company": "Difference Engines plc"}.items()
                if k in cn.mapped_fields}
        kit.box.clock.advance(1.0)  # a CRM user edits a moment later (same-instant edits: their own check)
        kit.box.remote_update(rid, edit)
        out = kit.sync()
        expect(out.updated == 1 and out.pushed == 0, "a CRM user's edit", "1 lead updated, none written back",
               f"{out.updated} updated, {out.pushed} written")
        stored = kit.store.get_lead(lead.id)
        kit.compare(cn, edit, stored and {k: stored.get(k) for k in edit}, "the hub after a remote edit")
        kit.no_echo("the sync after a remote edit")

    def test_a_retried_create_does_not_duplicate(self, kit: Kit) -> None:
        cn = kit.connect()
        lead, rid = kit.create_through_outbox(kit.person(3, "retry"))
        before = sorted(map(str, kit.box.remote_ids()))
        op = WriteOp(lead.id, {n: lead.get(n) for n in cn.mapped_fields}, None, cn.lead_object)
        results = cn.write([op])  # the CRM took the first create, but the hub died before recording it
        expect(len(results) == 1 and results[0].ok and results[0].remote_id in (None, rid),
               "the same create sent again", f"an ok result for the same record {rid!r}", repr(results))
        after = sorted(map(str, kit.box.remote_ids()))
        carriers = [r for r in after if (kit.box.remote_get(r) or {}).get("hub_id") == lead.id]
        expect(len(after) == len(before) and carriers == [rid], "the same create sent again",
               f"no new record; only {rid!r} carries hub id {lead.id}",
               f"{len(after) - len(before)} new records; carriers {carriers}",
               "creates must be upserts keyed by hub_id_field")
        kit.no_echo("the sync after a retried create")

    # -- statuses -----------------------------------------------------------------------------
    def test_every_canonical_status_maps_to_a_remote_value_and_back(self, kit: Kit) -> None:
        cn = kit.connect()
        missing = [s.value for s in Status if s.value not in cn.status_map.write]
        expect(not missing, "status map", "a remote value for each canonical status", f"none for {missing}")
        trips = {s: (cn.encode({"status": s}), cn.decode(cn.encode({"status": s}))[0].get("status"))
                 for s in cn.status_map.write}
        bad = [f"{s!r} -> {remote} -> {back!r}" for s, (remote, back) in trips.items() if back != s]
        expect(not bad, "status round trip", "decode(encode(status)) == status", "; ".join(bad))
        made = {kit.box.remote_create(kit.person(i, "status", status=s)): s
                for i, s in enumerate(cn.status_map.write)}
        kit.sync(push=False)
        links = kit.links()
        read = {s: kit.store.get_lead(links[r].lead_id).status if r in links else None
                for r, s in made.items()}
        wrong = {s: got for s, got in read.items() if got != s}
        expect(not wrong, "a status set in the CRM, pulled", "the same canonical status",
               ", ".join(f"{s!r} read as {g!r}" for s, g in wrong.items()))

    def test_every_remote_status_value_maps_to_a_canonical_status(self, kit: Kit) -> None:
        cn = kit.connect(page_size=kit.page_size)
        combos = [dict(c) for c in getattr(kit.box, "remote_status_values", list)()]
        kit.box.seed(60, seed=3)
        for page in cn.read_pages(None):
            combos += [{f: r.props.get(f) for f in cn.statuses.fields} for r in page.records if not r.deleted]
        unmapped = sorted({repr(c) for c in combos if cn.statuses.to_canonical(c) is None})
        expect(not unmapped, "every remote status value", "a canonical status for each",
               f"none for {', '.join(unmapped[:10])}", "add them to the status map's read entries")

    # -- errors and limits --------------------------------------------------------------------
    @staticmethod
    def _warmed(kit: Kit) -> tuple[Connector, dict[str, Any]]:
        """A connector that has synced once (so a token it fetches is cached), two new records to pull,
        and its meter's figures before the next run."""
        kit.box.seed(5, seed=4)
        cn = kit.connect()
        kit.sync(cn, push=False)
        for i in range(2):
            kit.box.remote_create(kit.person(i, "fault"))
        m = cn.meter
        return cn, {"throttled": m.throttled, "retries": m.retries, "waited": m.waited, **m.by_status}

    def test_a_429_is_waited_out_as_told_and_the_run_succeeds(self, kit: Kit) -> None:
        cn, before = self._warmed(kit)
        told = kit.told_wait(cn)
        kit.box.faults.add(status=429, count=1)
        out = kit.sync(cn, push=False)
        m = cn.meter
        throttled, retries, waited = (m.throttled - before["throttled"], m.retries - before["retries"],
                                      m.waited - before["waited"])
        expect(out.created == 2 and throttled == 1 and retries >= 1, "one 429", "retried, then every record",
               f"{out.created} of 2 new records, {throttled} 429s, {retries} retries")
        expect(waited >= (told or 0) * 0.99 and waited > 0, "one 429",
               f"a wait of {told}s as the vendor's answer says" if told else "a backoff wait",
               f"waited {waited:.3f}s", "declare the vendor's rate-limit headers as Connector.hints")

    def test_5xx_answers_are_retried(self, kit: Kit) -> None:
        cn, before = self._warmed(kit)
        kit.box.faults.add(status=500, count=1)
        kit.box.faults.add(status=503, count=1)
        out = kit.sync(cn, push=False)
        m = cn.meter
        answers = {s: m.by_status[s] - before.get(s, 0) for s in (500, 503)}
        retries = m.retries - before["retries"]
        expect(out.created == 2 and answers == {500: 1, 503: 1} and retries >= 2, "a 500 then a 503",
               "both retried, then every record",
               f"{out.created} of 2 new records; 5xx answers {answers}, {retries} retries")

    def test_a_refused_record_is_reported_with_the_vendors_message_and_the_rest_is_written(
            self, kit: Kit) -> None:
        if not hasattr(kit.box, "invalid_fields"):
            pytest.skip(f"{self.sandbox.__name__} has no invalid_fields() "
                        "(hub.testing.kit.ConformanceSandboxExtras)")
        cn = kit.connect()
        bad_fields = dict(kit.box.invalid_fields())
        good = [kit.queue_create(kit.person(i, "batch")) for i in range(3)]
        bad = kit.queue_create({**kit.person(9, "batch"), **bad_fields})
        out = kit.sync()
        expect(out.pushed == 3 and out.rejected == 1, f"a batch of 4 with one refused record ({bad_fields})",
               "3 written, 1 refused", f"{out.pushed} written, {out.rejected} refused; error {out.error!r}")
        issues = [i for i in kit.issues("rejected") if i.lead_id == bad.id]
        message = issues[0].message if issues else ""
        clues = [str(v) for v in bad_fields.values()] + [cn.fields.get(k, k) for k in bad_fields]
        expect(any(c.lower() in message.lower() for c in clues), "the refused record's issue",
               f"the vendor's own message, naming one of {clues}", repr(message))
        row = kit.outbox_row(bad.id)
        expect(row is not None and row.state == "failed" and row.last_error == message,
               "the refused record's outbox row", "kept 'failed' with the vendor's message",
               repr(None if row is None else (row.state, row.last_error)))
        carried = {(kit.box.remote_get(r) or {}).get("hub_id") for r in kit.box.remote_ids()}
        expect({g.id for g in good} <= carried and bad.id not in carried, "the rest of the batch",
               "the 3 valid records in the CRM, the refused one not", f"hub ids in the CRM: {carried}")

    def test_at_a_small_rate_a_run_gets_at_most_one_429(self, tmp_path: Path) -> None:
        declared = self.connector.limits.rate
        if declared is None:
            pytest.skip(f"{self.connector.name} declares no rate limit")
        rate, per = self.rate_limit, self.rate_window or declared.per
        with Kit(type(self), tmp_path, rate=rate) as kit:
            page = min(10, self.connector.limits.page_size)
            n = page * (2 * rate + 1)
            kit.box.seed(n, seed=6)
            out = kit.sync(unlimited=False, rate=(rate, per), page_size=page)
            expect(out.api_calls > rate, "the rate check", f"a run needing more than {rate} calls",
                   f"{out.api_calls} calls")
            expect(out.pulled == n and out.pushed == n and out.throttled <= 1,
                   f"{out.api_calls} calls at {rate} per {per:g}s, the connector's rate set to match",
                   "every record read and stamped, at most one 429",
                   f"{out.pulled} read, {out.pushed} written, {out.throttled} 429s",
                   "declare Limits.rate as the vendor's window; read its rate-limit headers in hints")

    def test_api_calls_per_record_are_near_the_vendor_minimum(self, tmp_path: Path) -> None:
        page = min(self.page_size or self.connector.limits.page_size, self.connector.limits.page_size)
        report = type(self).measure_calls(2 * page + page // 2 + 1, seed=7, page_size=page, folder=tmp_path)
        type(self).calls = report
        REPORTS.append(report)
        print(f"\n{report}")
        for what, calls, minimum in (("reads", report.read_calls, report.read_minimum),
                                     ("updates", report.update_calls, report.write_minimum),
                                     ("creates", report.create_calls, report.write_minimum)):
            expect(calls <= minimum * 1.1 + 2, f"API calls for {report.records} {what}",
                   f"<= {minimum * 1.1 + 2:g} (vendor minimum {minimum})", f"{calls}: {report}")

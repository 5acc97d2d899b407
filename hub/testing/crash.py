"""The crash lab: SIGKILL ``leadhub sync`` at random points against every sandbox, then check the books.

Issue 4's promise — *nothing lost, nothing duplicated* — tested the hard way::

    with CrashLab(folder, seed=7) as lab:
        report = lab.crash_loop(kills=60)     # edits outside, `leadhub sync`, SIGKILL, repeat
        lab.settle()                          # clean runs until one writes nothing (at most 4)
        problems = lab.check()                # [] when every CRM and the store agree

One sandbox per built-in CRM is served on loopback in this process, seeded with
a few hundred messy leads; a config file points a real ``leadhub sync``
subprocess at them (secrets through environment variables, as an install
would). Between runs the lab edits records *as a CRM user would* (bypassing the
API: a new title or phone, a Lead moved to MQL, a new lead), remembering each
edit in order. Each run is killed with SIGKILL at a point drawn from a seeded
``random.Random``:

* ``startup`` — a random time before the hub's first request (config, imports, migrations);
* ``request`` — as the k-th pull (read) or push (write) request of one connection
  reaches its sandbox (pull or push at even odds, k up to what the last complete
  run made there): *before* it is applied (it is then refused, as if lost on the
  wire), *after* it is applied (the CRM holds the write, the hub never hears of
  it), or a few milliseconds *later* (while the hub applies a page or records a batch);
* ``time`` — uniformly over the duration of a complete run (the shortest of the last three).

Every kill is labelled with the phase it landed in — ``start-up``, or
``pull``/``push`` and the connection of the last request — from the sandboxes'
own request stream. A run that ends before its kill point is a clean run, not a
kill. :meth:`CrashLab.check` then verifies:

(a) no CRM holds two records with one hub id, nor more hub-created records with one email than
    the store has leads with it;
(b) every live link points to a record its CRM holds, that record carries the
    link's lead id, and every CRM record is linked exactly once;
(c) no lost edit: the last outside edit of each (lead, field) is in the store's
    lead and in every CRM that holds the lead and carries the field (a status
    move the process refuses is kept as a conflict instead, and a write the CRM
    refuses stays in the outbox with its message, e.g. a converted Salesforce lead);
(d) the outbox has no open row but rejected ones with the CRM's error;
(e) the store is consistent: every lead has a live link, its status is the last
    one its history moved it to, and a CRM record's title/phone is the lead's.

Every message names the seed, so ``python -m hub.testing.crash --seed N
--kills K`` replays a failure (kill timing is wall-clock, so a replay is close,
not exact).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlmodel import Session

from hub.actions import LeadRelation
from hub.model import Status
from hub.plugins import registry
from hub.sandboxes import sandbox_class
from hub.store import Conflict, LeadRow, Link, OutboxRow, StatusChange, Store

__all__ = ["LAB_CONNECTIONS", "Edit", "Kill", "CrashLab", "main"]

REPO = Path(__file__).resolve().parents[2]

_ALL_BUT_LEAD = [s.value for s in Status if s != Status.LEAD]
_SALES = [s.value for s in (Status.MQL, Status.SAL, Status.SQL, Status.OPPORTUNITY, Status.NEGOTIATION,
                            Status.CLOSED_WON, Status.CLOSED_LOST)]


@dataclass(frozen=True)
class LabConnection:
    connector: str
    role: str
    records: int  # seeded
    statuses: tuple[str, ...] | None = None  # handoffs: the hub creates the lead here in these statuses


#: connection name -> what it is. Small seeds and page sizes: a run takes a second or two, over several pages.
LAB_CONNECTIONS: dict[str, LabConnection] = {
    "marketing": LabConnection("hubspot", "marketing", 150, ("Lead", *_ALL_BUT_LEAD)),
    "sales": LabConnection("salesforce", "sales", 120, tuple(_SALES)),
    "sales-smb": LabConnection("pipedrive", "sales-smb", 40),  # one write call per record: fewer
    "sales-emea": LabConnection("dynamics", "sales-emea", 100),
    "partners": LabConnection("monday", "partners", 80),
}
PAGE_SIZE = 40
#: fields the lab edits outside and checks everywhere (every built-in connector carries them)
EDITED = ("title", "phone")


@dataclass(frozen=True)
class Edit:
    """One outside edit, as a CRM user made it: ``seq`` orders them all."""

    seq: int
    round: int
    connection: str
    remote_id: str
    field: str
    value: Any
    created: bool = False  # the record was created by this edit


@dataclass
class Kill:
    round: int
    mode: str  # startup | request-before | request-after | request-later | time
    phase: str  # start-up | pull | push
    connection: str | None  # of the last request before the kill
    at: float  # seconds after start
    requests: int  # requests the run had made

    def __str__(self) -> str:
        where = f"{self.phase}:{self.connection}" if self.connection else self.phase
        return f"round {self.round}: {self.mode} kill at {self.at:.2f}s in {where} after {self.requests} requests"


@dataclass
class LabReport:
    seed: int
    kills: list[Kill] = field(default_factory=list)
    clean_runs: int = 0
    rounds: int = 0
    settle_runs: list[dict[str, int]] = field(default_factory=list)
    seconds: float = 0.0

    def by_phase(self) -> Counter[str]:
        return Counter(k.phase for k in self.kills)

    def by_place(self) -> Counter[str]:
        return Counter(f"{k.phase}:{k.connection}" if k.connection else k.phase for k in self.kills)

    def by_mode(self) -> Counter[str]:
        return Counter(k.mode for k in self.kills)

    def summary(self) -> str:
        return (f"seed {self.seed}: {len(self.kills)} kills in {self.rounds} rounds ({self.clean_runs} runs ended "
                f"before their kill point), {self.seconds:.0f}s; by phase {dict(self.by_phase())}; "
                f"by place {dict(sorted(self.by_place().items()))}; by mode {dict(self.by_mode())}"
                + (f"; settling runs pushed {[r['pushed'] for r in self.settle_runs]}" if self.settle_runs else ""))


def _kind(method: str, path: str, body: bytes) -> str:
    """``read``, ``write`` or ``auth``: what one request to a sandbox does."""
    lower = path.lower()
    if "token" in lower and method == "POST":
        return "auth"
    if method == "GET":
        return "read"
    if lower.endswith("/v2"):  # monday's GraphQL
        return "write" if b"mutation" in body[:200] else "read"
    if lower.endswith("/search") or "/query" in lower or "batch/read" in lower:
        return "read"
    return "write"


def _phase(kind: str) -> str:
    return "push" if kind == "write" else "pull"


def _is_secret(model: Any, key: str) -> bool:
    f = model.model_fields.get(key)
    return f is not None and "SecretStr" in str(f.annotation)


class CrashLab:
    """Sandboxes for every built-in CRM, a config file, and ``leadhub sync`` run and killed in a loop."""

    def __init__(self, folder: Path | str, *, seed: int, connections: dict[str, LabConnection] | None = None,
                 page_size: int = PAGE_SIZE, verbose: bool = False):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.rng = random.Random(seed)
        self.spec = connections or LAB_CONNECTIONS
        self.page_size = page_size
        self.verbose = verbose
        self.boxes: dict[str, Any] = {}
        self.outside: dict[str, set[str]] = {}  # remote ids seeded or created outside the hub, per connection
        self.edits: list[Edit] = []
        self.env: dict[str, str] = {}
        self.db = self.folder / "leadhub.db"
        self.config = self.folder / "leadhub.yaml"
        self.log: list[tuple[float, str, str, str]] = []  # (monotonic, connection, kind, "METHOD path")
        self.report = LabReport(seed)
        self._lock = threading.Lock()
        self._arm: dict[str, Any] | None = None
        self._stack = ExitStack()
        self._seq = 0
        self._phones = 0
        self._edited_at = 0.0
        self._pending: dict[str, list[Edit]] = {}  # lead (hub id) -> its edits the hub may not have read yet
        self._run_seconds: list[float] = [3.0]  # duration of each complete run
        self._last_counts: Counter[tuple[str, str]] = Counter()  # (connection, phase) -> requests, last full run
        self._created: set[str] = set()  # connections with records created outside this round (to be stamped)
        self._startup_seconds = 1.0
        self._store: Store | None = None
        self.checked: Counter[str] = Counter()  # what check() looked at, for reports

    # -- set-up ----------------------------------------------------------------------------------------
    def __enter__(self) -> CrashLab:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._store is not None:
            self._store.dispose()
        self._stack.close()

    def _start(self) -> None:
        urls = {}
        for i, (name, spec) in enumerate(self.spec.items()):
            box = sandbox_class(spec.connector)()
            ids = box.seed(spec.records, seed=self.seed * 10 + i)
            self.outside[name] = {str(x) for x in ids} | {str(x) for x in box.remote_ids()}
            self._tap(name, box)
            urls[name] = self._stack.enter_context(box.serve()).url
            self.boxes[name] = box
        self._write_config(urls)

    def _tap(self, name: str, box: Any) -> None:
        """Log every request a sandbox answers, and fire the armed kill at the k-th one."""
        respond = box._respond

        def tapped(method: str, path: str, request: Any, body: bytes, fault: Any) -> Any:
            kind = _kind(method, path, body)
            with self._lock:
                self.log.append((time.monotonic(), name, kind, f"{method} {path}"))
                arm = self._arm
                fire = False
                if arm is not None and not arm["fired"] and arm["target"] == (name, _phase(kind)):
                    arm["count"] += 1
                    fire = arm["fired"] = arm["count"] >= arm["k"]
            if fire and arm["when"] == "before":
                self._kill(arm)
                return box.error(503, "connection reset (the crash lab killed the client)")
            response = respond(method, path, request, body, fault)
            if fire:
                if arm["when"] == "after":
                    self._kill(arm)
                else:
                    arm["timer"] = threading.Timer(arm["delay"], self._kill, (arm,))
                    arm["timer"].start()
            return response

        box._respond = tapped

    def _write_config(self, urls: dict[str, str]) -> None:
        connections: dict[str, Any] = {}
        connectors = registry().connectors
        for name, spec in self.spec.items():
            model = connectors[spec.connector].settings_model
            entry: dict[str, Any] = {"connector": spec.connector, "role": spec.role}
            if spec.statuses:
                entry["statuses"] = list(spec.statuses)
            for key, value in self.boxes[name].connector_settings(urls[name]).items():
                if _is_secret(model, key):
                    var = f"LEADHUB_CRASH_{name.upper().replace('-', '_')}_{key.upper()}"
                    self.env[var] = str(value)
                    entry[key] = f"${{{var}}}"
                else:
                    entry[key] = value
            entry["page_size"] = self.page_size
            connections[name] = entry
        body = {"database": f"sqlite:///{self.db}", "connections": connections}
        self.config.write_text(f"# written by hub.testing.crash (seed {self.seed})\n"
                               + yaml.safe_dump(body, sort_keys=False))

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(f"sqlite:///{self.db}")
        return self._store

    # -- outside edits ---------------------------------------------------------------------------------
    def _record(self, rnd: int, connection: str, remote_id: str, name: str, value: Any,
                created: bool = False) -> None:
        self._seq += 1
        edit = Edit(self._seq, rnd, connection, str(remote_id), name, value, created)
        self.edits.append(edit)
        pending = self._pending.setdefault(self._lead_key(connection, str(remote_id)), [])
        pending[:] = [e for e in pending if (e.connection, e.remote_id, e.field) != (connection, edit.remote_id, name)]
        pending.append(edit)  # an edit the CRM no longer shows can never be read: only the newest counts

    def _lead_key(self, connection: str, remote_id: str, held: dict[str, Any] | None = None) -> str:
        """The lead a record belongs to: its link's, else the hub id it carries, else the record itself."""
        if self.db.exists():
            with Session(self.store.engine) as s:
                lead = s.execute(sa.select(Link.lead_id).where(Link.connection == connection,
                                                               Link.remote_id == remote_id)).scalar()
            if lead:
                return lead
        held = held if held is not None else self.boxes[connection].remote_get(remote_id)
        return (held or {}).get("hub_id") or f"{connection}:{remote_id}"

    def _read(self, edit: Edit) -> bool:
        """Has the hub read this edit (its ledger of the record holds the value)?"""
        if not self.db.exists():
            return False
        with Session(self.store.engine) as s:
            synced = s.execute(sa.select(Link.synced).where(Link.connection == edit.connection,
                                                            Link.remote_id == edit.remote_id)).scalar()
        return bool(synced) and synced.get(edit.field) == edit.value

    def _phone(self) -> str:
        """A phone number no other record has (phones are identity keys: a shared one would match two people)."""
        self._phones += 1
        return f"+1 212 555 {self._phones:04d}"

    def outside_edits(self, rnd: int) -> int:
        """A few edits as CRM users would make them, in random CRMs; returns how many were made.

        "The last edit" must be well defined for check (c), as the hub can know it: CRMs stamp a record's
        modified time (to the second in Salesforce, Pipedrive and monday), not a field's. So a round edits
        each lead's field at most once, rounds' edits are more than a second apart, and a lead is not
        edited in a second CRM while the hub has not read its edit in the first (else a later, unrelated
        edit of the first record would make its older value look newer than the second CRM's: a
        most_recent rule decides by the record's time).
        """
        wait = self._edited_at + 1.1 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        rng, made = self.rng, 0
        self._created = set()
        names = list(self.boxes)
        touched: set[tuple[str, str]] = set()  # (lead, field) edited this round

        def first_touch(name: str, rid: str, what: str, held: dict[str, Any] | None = None) -> bool:
            lead = self._lead_key(name, rid, held)
            if (lead, what) in touched:
                return False
            pending = self._pending[lead] = [e for e in self._pending.get(lead, []) if not self._read(e)]
            if any(e.connection != name for e in pending):
                return False
            touched.add((lead, what))
            return True

        for i in range(rng.randint(1, 6)):  # a changed title or phone
            name = rng.choice(names)
            box = self.boxes[name]
            ids = list(box.remote_ids())
            if not ids:
                continue
            rid = rng.choice(ids)
            what = rng.choice(EDITED)
            if not first_touch(name, rid, what):
                continue
            value = f"Crash {what} r{rnd}e{i} s{self.seed}" if what == "title" else self._phone()
            try:
                box.remote_update(rid, {what: value})
            except (ValueError, KeyError):
                continue  # e.g. Salesforce refuses edits to a converted lead: the user could not make this one
            self._record(rnd, name, rid, what, value)
            made += 1
        for _ in range(rng.randint(0, 2)):  # a Lead moved to MQL (a handoff to sales, once handoffs exist)
            name = rng.choice(names)
            box = self.boxes[name]
            ids = list(box.remote_ids())
            for rid in rng.sample(ids, min(8, len(ids))):
                held = box.remote_get(rid)
                if held and held.get("status") == "Lead" and first_touch(name, rid, "status", held):
                    try:
                        box.remote_update(rid, {"status": "MQL"})
                    except (ValueError, KeyError):
                        continue
                    self._record(rnd, name, rid, "status", "MQL")
                    made += 1
                    break
        for i in range(rng.randint(1, 3)):  # a new lead (stamped by the next run: a push)
            name = rng.choice(names)
            tag = f"r{rnd}n{i}s{self.seed}"
            fields = {"first_name": "Crash", "last_name": f"Test {tag}", "email": f"crash.{tag}@crash-lab.example",
                      "company": f"Crash Lab {tag} Ltd", "title": f"Crash title {tag}",
                      "phone": self._phone(), "country": "US",
                      "source": "referral", "status": rng.choice(["Lead", "Lead", "MQL"])}
            rid = str(self.boxes[name].remote_create(fields))
            self.outside[name].add(rid)
            self._created.add(name)
            for k in ("title", "phone", "status"):
                self._record(rnd, name, rid, k, fields[k], created=True)
            made += 1
        self._edited_at = time.monotonic()
        return made

    # -- runs --------------------------------------------------------------------------------------------
    def _command(self) -> list[str]:
        # The real entry point, through the interpreter running the tests: the ``leadhub`` script can
        # belong to another checkout's editable install.
        return [sys.executable, "-m", "hub.cli", "sync", "--config", str(self.config), "--json"]

    def _env(self) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH")
        return {**os.environ, **self.env, "PYTHONPATH": str(REPO) + (os.pathsep + path if path else "")}

    def _kill(self, arm: dict[str, Any]) -> None:
        with self._lock:
            if arm.get("killed_at") is not None:
                return
            run = self.log[arm["start"]:]
            arm["killed_at"] = time.monotonic() - arm["t0"]
            arm["seen"] = len(run)
            arm["last"] = run[-1] if run else None
        try:
            arm["proc"].send_signal(signal.SIGKILL)  # Popen checks it has not reaped the process yet
        except ProcessLookupError:
            pass

    def run(self, *, mode: str | None = None, rnd: int = 0,
            timeout: float = 180) -> tuple[int, dict[str, Any] | None, Kill | None]:
        """One ``leadhub sync``; ``mode`` None runs it to the end. Returns (exit code, its JSON, the kill)."""
        rng = self.rng
        out_path, err_path = self.folder / "last-run.out", self.folder / "last-run.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            t0 = time.monotonic()
            proc = subprocess.Popen(self._command(), stdout=out, stderr=err, env=self._env(), cwd=REPO)
            with self._lock:
                start = len(self.log)
                arm = {"proc": proc, "t0": t0, "start": start, "fired": False, "target": None, "k": 0, "count": 0,
                       "when": "", "delay": 0.0, "killed_at": None}
                if mode and mode.startswith("request"):
                    arm["target"], arm["k"] = self._draw_request()
                    arm["when"] = mode.removeprefix("request-")
                    arm["delay"] = rng.uniform(0.001, 0.08)
                    self._arm = arm
            if mode in ("startup", "time"):
                # runs differ a little in length: stay within the shortest of the last few
                span = self._startup_seconds if mode == "startup" else min(self._run_seconds[-3:])
                delay = rng.uniform(0.02, span)
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    arm["fired"] = True
                    self._kill(arm)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError(f"seed {self.seed}: leadhub sync did not end in {timeout}s; "
                                     f"stderr: {err_path.read_text()[-2000:]}") from None
            seconds = time.monotonic() - t0
            if arm.get("timer") is not None:
                arm["timer"].cancel()
            with self._lock:
                self._arm = None
                run = self.log[start:]
        if run:
            self._startup_seconds = 0.8 * self._startup_seconds + 0.2 * (run[0][0] - t0)
        killed = code == -signal.SIGKILL and arm.get("killed_at") is not None
        if not killed:
            if code not in (0, 1):
                raise AssertionError(f"seed {self.seed}: leadhub sync exited {code} in round {rnd}; stderr: "
                                     f"{err_path.read_text()[-3000:]}")
            self._run_seconds.append(seconds)
            self._last_counts = Counter((r[1], _phase(r[2])) for r in run)
            try:
                data = json.loads(out_path.read_text())
            except ValueError:
                data = None
            return code, data, None
        last = arm["last"]
        phase = "start-up" if last is None else _phase(last[2])
        kill = Kill(rnd, mode or "", phase, None if last is None else last[1], arm["killed_at"], arm["seen"])
        return code, None, kill

    def _draw_request(self) -> tuple[tuple[str, str], int]:
        """Where a request kill lands: pull or push (even odds, when this run will push), one connection,
        and its k-th request of that phase, k up to what the last complete run made there."""
        pushes = {c for c, p in self._last_counts if p == "push"} | self._created
        phase = self.rng.choice(["pull", "push"]) if pushes else "pull"
        conn = self.rng.choice(sorted(pushes) if phase == "push" else list(self.boxes))
        most = self._last_counts.get((conn, phase)) or (2 if phase == "push" else 3)
        return (conn, phase), self.rng.randint(1, most)

    def crash_loop(self, kills: int, *, max_rounds: int | None = None) -> LabReport:
        """Edit outside, run, kill — until ``kills`` runs were killed mid-way."""
        t0 = time.monotonic()
        modes = ["startup", "request-before", "request-after", "request-later", "request-later", "time"]
        rnd = 0
        max_rounds = max_rounds or kills * 4 + 10
        while len(self.report.kills) < kills:
            rnd += 1
            if rnd > max_rounds:
                raise AssertionError(f"seed {self.seed}: only {len(self.report.kills)} of {kills} kills landed "
                                     f"in {max_rounds} rounds")
            self.outside_edits(rnd)
            mode = self.rng.choice(modes)
            _, _, kill = self.run(mode=mode, rnd=rnd)
            if kill is None:
                self.report.clean_runs += 1
            else:
                self.report.kills.append(kill)
            if self.verbose:
                print(kill or f"round {rnd}: {mode} kill point not reached; the run ended", file=sys.stderr)
        self.report.rounds = rnd
        self.report.seconds = time.monotonic() - t0
        return self.report

    def settle(self, max_runs: int = 4) -> list[dict[str, Any]]:
        """Clean runs until one writes nothing; each run's totals."""
        for _ in range(max_runs):
            code, data, _ = self.run()
            assert data is not None, f"seed {self.seed}: a clean run printed no JSON (exit {code})"
            errors = [f"{o['connection']}: {o['error']}" for o in data["connections"] if o.get("error")]
            assert not errors, f"seed {self.seed}: a clean run failed: {errors}"
            totals = {k: sum(o[k] for o in data["connections"]) for k in ("pulled", "created", "updated", "pushed",
                                                                           "rejected")}
            self.report.settle_runs.append(totals)
            if totals["pushed"] == 0:
                break
        return self.report.settle_runs

    # -- the checks ----------------------------------------------------------------------------------------
    def check(self) -> list[str]:
        """Every way the CRMs and the store disagree; [] when they agree (see the module docstring)."""
        problems: list[str] = []
        settled = self.report.settle_runs
        if not settled or settled[-1]["pushed"] != 0:
            problems.append(f"the sync does not settle: pushed per clean run {[r['pushed'] for r in settled]}")
        book = self._books()
        self.checked = Counter({"leads": len(book["leads"]), "live links": len(book["live"])})
        leads, live, by_remote, by_lead = book["leads"], book["live"], book["by_remote"], book["by_lead"]
        # writes the CRM refused (kept with its message, retried every run): (connection, lead) -> what they
        # carry: their fields, and what their reasons name ("hub_id" for the stamp, "*" for a create)
        failed: dict[tuple[str, str], set[str]] = {}
        for r in book["open"]:
            if r.state == "failed" and r.last_error:
                failed.setdefault((r.connection, r.lead_id), set()).update(
                    {*(r.fields or {}), *(getattr(r, "reasons", None) or {})})

        def refused(connection: str, lead_id: str, name: str) -> bool:
            """The CRM refused a write of this field for this lead (the whole write: one bad value in it is
            enough, e.g. a source a dropdown lacks, or any lead field on a converted Salesforce lead)."""
            carried = failed.get((connection, lead_id))
            return carried is not None and (not carried or name in carried or "*" in carried)

        # (d) the outbox: nothing open but writes the CRM refused, with its message
        for r in book["open"]:
            if not (r.state == "failed" and r.last_error):
                problems.append(f"(d) outbox row {r.id} ({r.connection}, lead {r.lead_id}) is still {r.state} "
                                f"after {r.attempts} attempts: {r.last_error or 'no error'}")

        held: dict[str, dict[str, dict[str, Any] | None]] = {}  # connection -> remote id -> canonical record
        for name, box in self.boxes.items():
            held[name] = {str(rid): box.remote_get(str(rid)) for rid in box.remote_ids()}
            self.checked["CRM records"] += len(held[name])
            records = {rid: rec for rid, rec in held[name].items() if rec is not None}
            # (a) one record per hub id; no duplicates among the records the hub created
            ids = Counter(rec.get("hub_id") for rec in records.values() if rec.get("hub_id"))
            for hub_id, n in ids.items():
                if n > 1:
                    rids = sorted(r for r, rec in records.items() if rec.get("hub_id") == hub_id)
                    problems.append(f"(a) {name} holds {n} records with hub id {hub_id}: {rids}")
            # Two leads may share an email (two records in one CRM are two people until the dedup rule
            # says otherwise), and each may be handed off: more hub-made records than leads is a duplicate.
            made = {rid: rec for rid, rec in records.items() if rid not in self.outside[name]}
            emails = Counter((rec.get("email") or "").lower() for rec in made.values() if rec.get("email"))
            for email, n in emails.items():
                if n > max(1, book["emails"][email]):
                    rids = sorted(r for r, rec in made.items() if (rec.get("email") or "").lower() == email)
                    problems.append(f"(a) the hub created {n} records for {email} in {name}, for "
                                    f"{book['emails'][email]} lead(s) with that email: {rids}")
            # (b) every CRM record linked exactly once, and carrying its lead's id
            for rid, rec in records.items():
                ln = by_remote.get((name, rid))
                if ln is None:
                    problems.append(f"(b) {name} record {rid} (hub id {rec.get('hub_id')}) has no live link")
                elif rec.get("hub_id") != ln.lead_id and not refused(name, ln.lead_id, "hub_id") \
                        and not (rec.get("hub_id") is None and self._unstampable(name, rid)):
                    problems.append(f"(b) {name} record {rid} carries hub id {rec.get('hub_id')}, "
                                    f"but is linked to lead {ln.lead_id}")
        for ln in live:
            if ln.connection in held and held[ln.connection].get(ln.remote_id) is None:
                problems.append(f"(b) link {ln.id}: {ln.connection} record {ln.remote_id} (lead {ln.lead_id}) "
                                "is not in the CRM")

        # (e) the store: every lead linked, its status the last one it moved to, the CRMs showing its fields
        for lead_id, row in leads.items():
            if lead_id in book["merged"]:
                continue  # merged into another lead: its survivor holds the links
            if lead_id not in by_lead:
                what = "only tombstoned links" if lead_id in book["any_link"] else "no link"
                problems.append(f"(e) lead {lead_id} ({row.email}) has {what}")
            if book["last_status"].get(lead_id) != row.status:
                problems.append(f"(e) lead {lead_id} has status {row.status}, but its history ends at "
                                f"{book['last_status'].get(lead_id)}")
        held_back = book["held_back"]
        for ln in live:
            rec = held.get(ln.connection, {}).get(ln.remote_id)
            row = leads.get(ln.lead_id)
            if rec is None or row is None:
                continue
            for name in EDITED:
                remote, mine = rec.get(name), getattr(row, name)
                if remote not in (None, "") and remote != mine and not refused(ln.connection, ln.lead_id, name) \
                        and (ln.lead_id, name, str(remote)) not in held_back:
                    problems.append(f"(e) {ln.connection} record {ln.remote_id} has {name} {remote!r}, "
                                    f"its lead {ln.lead_id} {mine!r}")

        # (c) no lost edits: the last edit of each (lead, field) is in the store and in every CRM holding the lead
        last: dict[tuple[str, str], Edit] = {}
        for e in self.edits:
            ln = by_remote.get((e.connection, e.remote_id))
            if ln is None:
                if held.get(e.connection, {}).get(e.remote_id) is not None:
                    problems.append(f"(c) edited {e.connection} record {e.remote_id} (edit {e.seq}, round "
                                    f"{e.round}) has no live link")
                continue
            key = (book["survivor"](ln.lead_id), e.field)
            if key not in last or last[key].seq < e.seq:
                last[key] = e
        carried = {name: self._carried(name) for name in self.boxes}
        for (lead_id, name), e in sorted(last.items(), key=lambda kv: kv[1].seq):
            if (lead_id, name, str(e.value)) in held_back:
                continue  # the hub kept it as a conflict (a documented decision), not lost
            row = leads.get(lead_id)
            mine = None if row is None else getattr(row, name)
            where = f"{e.connection} record {e.remote_id}, edit {e.seq} in round {e.round}"
            self.checked["last edits"] += 1
            if mine != e.value:
                problems.append(f"(c) lost edit: {name} = {e.value!r} ({where}); the store's lead {lead_id} "
                                f"has {mine!r}")
            for ln in by_lead.get(lead_id, []):
                if ln.connection not in held or name not in carried[ln.connection] \
                        or refused(ln.connection, ln.lead_id, name):
                    continue
                rec = held[ln.connection].get(ln.remote_id) or {}
                self.checked["edits seen in another CRM" if ln.connection != e.connection else
                             "edits seen in their own CRM"] += 1
                if rec.get(name) != e.value:
                    problems.append(f"(c) lost edit: {name} = {e.value!r} ({where}); {ln.connection} record "
                                    f"{ln.remote_id} of lead {lead_id} has {rec.get(name)!r}")
        return [f"seed {self.seed}: {p}" for p in problems]

    def _books(self) -> dict[str, Any]:
        """What the store holds, read once for :meth:`check`."""
        with Session(self.store.engine) as s:
            leads = {r.id: r for r in s.exec(sa.select(LeadRow)).scalars()}
            links = list(s.exec(sa.select(Link)).scalars())
            open_rows = list(s.exec(sa.select(OutboxRow).where(OutboxRow.state.in_(("pending", "failed"))))
                             .scalars())
            last_status = dict(s.execute(
                sa.select(StatusChange.lead_id, StatusChange.to_status)
                .where(StatusChange.id.in_(sa.select(sa.func.max(StatusChange.id)).group_by(StatusChange.lead_id)))
            ).all())
            conflicts = s.execute(sa.select(Conflict.lead_id, Conflict.field, Conflict.remote_value)).all()
            merged = dict(s.execute(sa.select(LeadRelation.lead_id, LeadRelation.other_id)
                                    .where(LeadRelation.relation == "merged_into")).all())
        live = [ln for ln in links if ln.deleted_at is None]
        by_lead: dict[str, list[Link]] = {}
        for ln in live:
            by_lead.setdefault(ln.lead_id, []).append(ln)

        def survivor(lead_id: str) -> str:
            seen = set()
            while lead_id in merged and lead_id not in seen:
                seen.add(lead_id)
                lead_id = merged[lead_id]
            return lead_id

        emails = Counter(row.email.lower() for lid, row in leads.items() if row.email and lid not in merged)
        return {"leads": leads, "emails": emails, "live": live,
                "by_remote": {(ln.connection, ln.remote_id): ln for ln in live}, "by_lead": by_lead,
                "any_link": {ln.lead_id for ln in links}, "open": open_rows,
                "last_status": last_status, "merged": merged, "survivor": survivor,
                # a status move the process refused, kept as a conflict: (lead, "status", the CRM's status).
                # A field's lost claim is also kept there, but under the default most_recent rule the last
                # edit must win, so that excuses nothing.
                "held_back": {(survivor(lid), f, v) for lid, f, v in conflicts if f == "status"}}

    def _unstampable(self, name: str, rid: str) -> bool:
        """A record the CRM lets no one stamp: a converted Salesforce lead (linked by its Id instead)."""
        org = getattr(self.boxes[name], "org", None)
        if self.spec[name].connector != "salesforce" or org is None:
            return False
        with self.boxes[name].lock:
            return bool(org.tables["Lead"].get(rid, {}).get("IsConverted"))

    def _carried(self, name: str) -> tuple[str, ...]:
        cls = registry().connectors[self.spec[name].connector]
        return (*cls.field_map, "status")

    def figures(self) -> dict[str, int]:
        """Records per CRM and rows in the store, for reports."""
        out = {f"records:{name}": len(list(box.remote_ids())) for name, box in self.boxes.items()}
        with Session(self.store.engine) as s:
            for label, model in (("leads", LeadRow), ("links", Link), ("outbox", OutboxRow)):
                out[label] = s.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()
        out["edits"] = len(self.edits)
        return out


def soak(folder: Path, *, seed: int, kills: int, verbose: bool = False) -> Iterator[str]:
    """The whole test as a generator of report lines; raises AssertionError with every problem."""
    with CrashLab(folder, seed=seed, verbose=verbose) as lab:
        report = lab.crash_loop(kills)
        yield report.summary()
        lab.settle()
        yield f"after settling: {lab.report.settle_runs}; {lab.figures()}"
        problems = lab.check()
        assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:60])
        yield f"every CRM and the store agree; checked {dict(lab.checked)}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m hub.testing.crash", description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=60)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", type=Path, default=None, help="keep the database and config in this folder")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="leadhub-crash-"))
    for line in soak(folder, seed=seed, kills=args.kills, verbose=args.verbose):
        print(line, flush=True)


if __name__ == "__main__":
    main()

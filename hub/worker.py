"""The long-running worker behind ``leadhub run``: every connection synced at its own interval.

One APScheduler (3.x) interval job per enabled connection, every ``sync_every``
of that connection, each calling ``hub.sync([name], stop=worker.stop_event)``;
plus one rules job (``hub.run_rules()``) every ``rules_every`` (default one
minute). Every job runs once at start, in config order, the rules last.

Choices, and why:

* **One worker thread.** Jobs run in a thread pool of one: SQLite (the default
  store) takes one writer at a time, and a :class:`hub.runtime.Hub` — its
  connectors, HTTP clients and rate budgets — is not shared between threads. A
  busy connection therefore delays the others; it never runs beside them.
* **One run of a job at a time, missed runs coalesced** (``max_instances=1``,
  ``coalesce=True``): a run still going when its next one falls due makes the
  scheduler skip that one, and runs missed while the thread was busy (or the
  machine asleep) collapse into one.
* **Late runs still run** (``misfire_grace_time=None``): a run kept waiting by
  another connection's long sync (an initial back-fill can take an hour) runs as
  soon as the thread is free, once, instead of being dropped and waiting another
  whole interval. Syncing late is always better than not syncing.
* **The rules run on their own interval**, not after each sync: SLA clocks and
  other timers fall due without any sync, so an interval is needed anyway, and a
  run with nothing changed or due costs one query. What the rules decide is
  queued in the outbox and goes out with each connection's next sync.
* **A failing job never stops the worker.** A ``ConnectorError`` (reported in the
  run's :class:`~hub.sync.SyncOutcome`) or any unexpected exception is logged;
  the other jobs go on and the next run retries.
* **A clean stop.** SIGTERM or SIGINT sets :attr:`Worker.stop_event`: the running
  sync ends after its current page or batch, committed (its run row is marked
  ``stopped``), jobs not yet started are skipped, the scheduler shuts down
  waiting for the running job, and :meth:`Worker.run_forever` returns 0. A second
  signal exits at once (``os._exit``); committed pages are safe even then.

Each run logs one line through :mod:`logging` (logger ``hub.worker``): the job,
what it did, its error if any and how long it took. Nothing from the config is
logged, so no secret can be; connector errors carry no credentials.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

if TYPE_CHECKING:
    from hub.runtime import Hub

__all__ = ["JobRun", "JobSpec", "Worker", "RULES_JOB"]

log = logging.getLogger(__name__)

#: the id of the rules job (connection names cannot contain ':', so it never clashes)
RULES_JOB = "rules"
_SYNC_PREFIX = "sync:"


@dataclass(frozen=True)
class JobSpec:
    """One scheduled job: its id (``sync:<connection>`` or ``rules``), connection and interval."""

    id: str
    every: timedelta
    connection: str | None = None  # None: the rules job


@dataclass
class JobRun:
    """What one run of one job did, as logged; :attr:`Worker.history` keeps the latest runs."""

    job: str
    started: float  # time.monotonic() at start
    finished: float
    ok: bool
    error: str | None = None
    stopped: bool = False
    counts: dict[str, int] | None = None

    @property
    def seconds(self) -> float:
        return round(self.finished - self.started, 3)


class Worker:
    """Runs a hub's sync and rules jobs on a schedule until stopped. See the module docstring.

    ``every`` overrides the connections' ``sync_every``: one interval for all of
    them, or a mapping from connection name (tests use seconds, which config
    durations cannot express). ``rules_every=None`` leaves the rules out.
    """

    def __init__(self, hub: Hub, *, rules_every: timedelta | None = timedelta(minutes=1),
                 every: timedelta | Mapping[str, timedelta] | None = None, history: int = 1000):
        self.hub = hub
        self.stop_event = threading.Event()
        self.history: deque[JobRun] = deque(maxlen=history)
        self._specs = self._plan(rules_every, every)
        self._scheduler: BackgroundScheduler | None = None
        self._signal_count = 0
        self._done = threading.Event()  # set: run_forever stops waiting
        self._stopping = threading.Lock()  # one scheduler shutdown at a time

    def _plan(self, rules_every: timedelta | None, every: timedelta | Mapping[str, timedelta] | None
              ) -> list[JobSpec]:
        specs = []
        for name in self.hub.connection_names():  # enabled ones, in config order
            if isinstance(every, timedelta):
                interval = every
            elif every is not None and name in every:
                interval = every[name]
            else:
                interval = self.hub.config.connections[name].sync_every.delta
            specs.append(JobSpec(_SYNC_PREFIX + name, interval, name))
        if rules_every is not None:
            specs.append(JobSpec(RULES_JOB, rules_every))
        for spec in specs:
            if spec.every <= timedelta(0):
                raise ValueError(f"job {spec.id}: the interval must be positive, not {spec.every}")
        return specs

    @property
    def jobs(self) -> list[JobSpec]:
        """Every job, in the order of their first runs."""
        return list(self._specs)

    # -- one run of one job ---------------------------------------------------------------
    def run_job(self, job_id: str) -> JobRun | None:
        """Run one job now (in the calling thread); ``None`` if a stop was requested before it began."""
        if self.stop_event.is_set():
            return None
        spec = next((s for s in self._specs if s.id == job_id), None)
        if spec is None:
            raise KeyError(f"no job {job_id!r}; jobs: {', '.join(s.id for s in self._specs)}")
        t0 = time.monotonic()
        try:
            run = self._sync(spec.connection, t0) if spec.connection else self._rules(t0)
        except Exception as exc:  # a bug or an outage in one job never ends the worker
            run = JobRun(spec.id, t0, time.monotonic(), ok=False, error=f"{type(exc).__name__}: {exc}")
            log.error("%s: failed after %.2f s: %s; the next run retries", spec.id, run.seconds, run.error,
                      exc_info=True)
        self.history.append(run)
        return run

    def _sync(self, name: str, t0: float) -> JobRun:
        (outcome,) = self.hub.sync([name], stop=self.stop_event)
        keys = ("pulled", "created", "updated", "pushed", "rejected", "malformed", "conflicts", "api_calls")
        counts = {k: getattr(outcome, k) for k in keys}
        run = JobRun(_SYNC_PREFIX + name, t0, time.monotonic(), ok=outcome.error is None, error=outcome.error,
                     stopped=outcome.stopped, counts=counts)
        line = (f"sync {name}: pulled={outcome.pulled} pushed={outcome.pushed} rejected={outcome.rejected} "
                f"malformed={outcome.malformed} api_calls={outcome.api_calls} errors={int(bool(outcome.error))} "
                f"seconds={run.seconds}" + (" stopped" if outcome.stopped else ""))
        if outcome.error:
            log.warning("%s error=%r; the next run retries", line, outcome.error)
        else:
            log.info("%s", line)
        return run

    def _rules(self, t0: float) -> JobRun:
        result = self.hub.run_rules()
        counts = {"evaluated": result.evaluated, "applied": result.applied, "refused": result.refused,
                  "errors": len(result.errors)}
        error = f"{len(result.errors)} rule error(s), first: {result.errors[0]}" if result.errors else None
        run = JobRun(RULES_JOB, t0, time.monotonic(), ok=error is None, error=error, counts=counts)
        line = (f"rules: evaluated={result.evaluated} applied={result.applied} refused={result.refused} "
                f"errors={len(result.errors)} seconds={run.seconds}")
        (log.warning if error else log.info)("%s", line + (f" first_error={result.errors[0]!r}" if error else ""))
        return run

    # -- once -------------------------------------------------------------------------------
    def run_once(self, *, handle_signals: bool = True) -> list[JobRun]:
        """Every job once, in order, in this thread (``leadhub run --once``); stops early on a stop request."""
        runs = []
        with self._signals_handled(handle_signals):
            for spec in self._specs:
                run = self.run_job(spec.id)
                if run is None:
                    break
                runs.append(run)
        return runs

    # -- on a schedule --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the scheduler in the background; every job runs once at once, in order, then at its interval."""
        if self._scheduler is not None:
            raise RuntimeError("the worker is already started")
        scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=timezone.utc)
        now = datetime.now(timezone.utc)
        for i, spec in enumerate(self._specs):
            # first runs a millisecond apart: the scheduler hands due jobs to the thread in time order
            scheduler.add_job(self.run_job, "interval", args=[spec.id], id=spec.id, name=spec.id,
                              seconds=spec.every.total_seconds(), next_run_time=now + timedelta(milliseconds=i))
        self._scheduler = scheduler
        scheduler.start()
        log.info("worker started: %s", ", ".join(f"{s.id} every {_human(s.every)}" for s in self._specs))

    def stop(self, wait: bool = True) -> None:
        """Ask the running job to end after its current page or batch, skip the rest, and shut down."""
        self.stop_event.set()
        with self._stopping:
            if self._scheduler is not None and self._scheduler.running:
                self._scheduler.shutdown(wait=wait)
        self._done.set()

    def request_stop(self, signum: int | None = None, _frame: Any = None) -> None:
        """The SIGTERM/SIGINT handler: the first asks for a clean stop, a second exits at once."""
        self._signal_count += 1
        name = signal.Signals(signum).name if signum else "stop request"
        if self._signal_count > 1:
            log.warning("%s again: exiting at once (committed pages are kept)", name)
            logging.shutdown()
            os._exit(128 + (signum or signal.SIGTERM))
        log.info("%s: stopping after the current page or batch (again to exit at once)", name)
        self.stop_event.set()
        self._done.set()

    def run_forever(self, *, handle_signals: bool = True, until: Callable[[], bool] | None = None) -> int:
        """Start, wait for SIGTERM/SIGINT (or ``until()`` to turn true, or :meth:`request_stop`), stop cleanly.

        Returns the exit code: 0 (a clean stop).
        """
        with self._signals_handled(handle_signals):
            self.start()
            try:
                while not self._done.wait(0.2):
                    if until is not None and until():
                        break
            finally:
                self.stop(wait=True)
            log.info("worker stopped")
            return 0

    @contextmanager
    def _signals_handled(self, handle: bool) -> Iterator[None]:
        """SIGTERM and SIGINT call :meth:`request_stop` inside the block (main thread only)."""
        previous = {}
        if handle and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self.request_stop)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _human(every: timedelta) -> str:
    seconds = int(every.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{every.total_seconds():g}s"

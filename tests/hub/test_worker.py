"""The worker (``hub.worker`` and ``leadhub run``) against served HubSpot sandboxes.

In-process: the schedule itself (every job repeatedly, one run at a time, a failing
connection retried while the others go on) and the stop signals. Through the real
entry point, in subprocesses: SIGTERM mid-pull stops cleanly with the books
consistent, and ``--once`` (then ``leadhub status``, in-process through the typer
app: each interpreter start costs seconds on a busy machine).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.hubspot.sandbox import HubSpotSandbox
from hub.cli import app
from hub.runtime import Hub
from hub.worker import RULES_JOB, Worker

REPO = Path(__file__).resolve().parents[2]
LEADHUB = shutil.which("leadhub") or pytest.fail("the leadhub script is not installed: pip install -e '.[test]'")
TOKEN = "sandbox-token"


def env(**extra: str) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO) + (os.pathsep + path if path else ""),
            **extra}


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([LEADHUB, *args], capture_output=True, text=True, env=env(TEST_TOKEN=TOKEN),
                          timeout=timeout, cwd=REPO)


def write_config(folder: Path, db: Path, **connections: tuple[str, str]) -> Path:
    """``name=(url, token variable)`` per connection, all HubSpot."""
    lines = [f"database: sqlite:///{db}", "connections:"]
    for name, (url, var) in connections.items():
        lines += [f"  {name}:", "    connector: hubspot", f"    base_url: {url}", f"    token: ${{{var}}}",
                  "    sync_every: 1m"]
    cfg = folder / "leadhub.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=5) as c:
        return c.execute(sql).fetchall()


@pytest.fixture
def two_boxes():
    slow, fast = HubSpotSandbox(rate=None, search_rate=None), HubSpotSandbox(rate=None, search_rate=None)
    slow.seed(40, seed=1)
    fast.seed(20, seed=2)
    slow.faults.add(None, count=10_000, path_contains="search", delay=0.2)  # a round outlasts a tick
    with slow.serve() as s1, fast.serve() as s2:
        slow.url, fast.url = s1.url, s2.url
        yield slow, fast


def test_every_job_runs_repeatedly_one_at_a_time_and_a_failing_connection_is_retried(
        tmp_path, two_boxes, monkeypatch, caplog):
    slow, fast = two_boxes
    monkeypatch.setenv("TEST_TOKEN", TOKEN)
    monkeypatch.setenv("TEST_BAD_TOKEN", "not-the-token")
    db = tmp_path / "hub.db"
    cfg = write_config(tmp_path, db, marketing=(slow.url, "TEST_TOKEN"), events=(fast.url, "TEST_TOKEN"),
                       broken=(fast.url, "TEST_BAD_TOKEN"))
    caplog.set_level(logging.INFO, logger="hub.worker")
    with Hub.from_file(cfg) as hub:
        worker = Worker(hub, every=timedelta(seconds=1), rules_every=timedelta(seconds=1))
        assert [j.id for j in worker.jobs] == ["sync:marketing", "sync:events", "sync:broken", RULES_JOB]

        def enough() -> bool:
            done = [r.job for r in worker.history]
            return all(done.count(j.id) >= 3 for j in worker.jobs) or time.monotonic() > deadline

        deadline = time.monotonic() + 15
        t0 = time.monotonic()
        assert worker.run_forever(handle_signals=False, until=enough) == 0
        elapsed = time.monotonic() - t0
    history = list(worker.history)
    done = [r.job for r in history]
    assert all(done.count(j.id) >= 3 for j in worker.jobs), done
    assert elapsed < 12, elapsed
    # the first round runs in config order, the rules last
    assert done[:4] == ["sync:marketing", "sync:events", "sync:broken", RULES_JOB]
    # one worker thread: no run starts before the previous one ended (so never two of one job)
    for before, after in zip(history, history[1:]):
        assert after.started >= before.finished, (before, after)
    for name in ("marketing", "events", "broken"):
        runs = rows(db, f"select started_at, finished_at from runs where connection = '{name}' order by id")
        assert len(runs) >= 3 and all(f is not None for _, f in runs)
        spans = [(datetime.fromisoformat(s), datetime.fromisoformat(f)) for s, f in runs]
        assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:])), spans
    # the broken connection failed every time, was retried, and stopped nothing else
    broken = [r for r in history if r.job == "sync:broken"]
    assert all(not r.ok and r.error for r in broken)
    assert all(r.ok for r in history if r.job != "sync:broken"), [r for r in history if not r.ok]
    assert rows(db, "select count(*), count(distinct id) from leads") == [(60, 60)]
    assert {s for (s,) in rows(db, "select status from runs where connection = 'broken'")} == {"error"}
    # one line per run, none carrying a secret
    lines = [r.getMessage() for r in caplog.records if r.name == "hub.worker"]
    assert sum(m.startswith("sync events: pulled=") for m in lines) == done.count("sync:events")
    assert sum(m.startswith("sync broken: ") and "error=" in m for m in lines) == done.count("sync:broken")
    assert sum(m.startswith("rules: evaluated=") for m in lines) == done.count(RULES_JOB)
    assert not any(TOKEN in m or "not-the-token" in m for m in caplog.text.splitlines())


def test_signals_stop_cleanly_then_a_second_exits_at_once(tmp_path, two_boxes, monkeypatch):
    slow, _ = two_boxes
    monkeypatch.setenv("TEST_TOKEN", TOKEN)
    cfg = write_config(tmp_path, tmp_path / "hub.db", marketing=(slow.url, "TEST_TOKEN"))
    exits = []
    monkeypatch.setattr(os, "_exit", exits.append)
    with Hub.from_file(cfg) as hub:
        worker = Worker(hub)
        worker.request_stop(signal.SIGTERM)
        assert worker.stop_event.is_set() and exits == []
        assert worker.run_once() == []  # a stop requested before a job begins skips it
        worker.request_stop(signal.SIGINT)
        assert exits == [128 + signal.SIGINT]


def test_an_unexpected_exception_in_a_job_is_logged_and_the_other_jobs_go_on(tmp_path, two_boxes, monkeypatch,
                                                                             caplog):
    slow, fast = two_boxes
    monkeypatch.setenv("TEST_TOKEN", TOKEN)
    cfg = write_config(tmp_path, tmp_path / "hub.db", marketing=(slow.url, "TEST_TOKEN"),
                       events=(fast.url, "TEST_TOKEN"))
    with Hub.from_file(cfg) as hub:
        real = hub.sync

        def sync(only=None, **kw):
            if list(only or ()) == ["marketing"]:
                raise RuntimeError("the store went away")
            return real(only, **kw)

        monkeypatch.setattr(hub, "sync", sync)
        runs = Worker(hub).run_once()
    assert [(r.job, r.ok) for r in runs] == [("sync:marketing", False), ("sync:events", True), (RULES_JOB, True)]
    assert runs[0].error == "RuntimeError: the store went away"
    assert runs[1].counts["pulled"] == 20 and runs[2].counts["evaluated"] == 20
    (failed,) = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "hub.worker"]
    assert "sync:marketing: failed" in failed.getMessage() and failed.exc_info


def test_sigterm_mid_pull_exits_0_with_the_books_consistent_and_a_rerun_completes(tmp_path, monkeypatch):
    box = HubSpotSandbox(rate=None, search_rate=5)  # the real search pace: about 1,000 contacts/s
    box.seed(2000, seed=5)
    db = tmp_path / "hub.db"
    with box.serve() as served:
        cfg = write_config(tmp_path, db, marketing=(served.url, "TEST_TOKEN"))
        proc = subprocess.Popen([LEADHUB, "run", "-c", str(cfg)], env=env(TEST_TOKEN=TOKEN),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline, taken = time.monotonic() + 60, 0
        while time.monotonic() < deadline and proc.poll() is None and taken < 400:
            time.sleep(0.05)
            try:
                taken = rows(db, "select count(*) from leads")[0][0]
            except sqlite3.Error:
                continue
        assert proc.poll() is None, "the worker ended before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert time.monotonic() - t0 < 6, time.monotonic() - t0
        assert "SIGTERM: stopping after the current page" in err and "worker stopped" in err
        assert TOKEN not in err
        (run_row,) = rows(db, "select status, finished_at from runs")
        assert run_row[0] == "stopped" and run_row[1] is not None
        leads = rows(db, "select count(*) from leads")[0][0]
        assert 400 <= leads < 2000
        assert rows(db, "select count(*), count(distinct remote_id) from links") == [(leads, leads)]
        assert rows(db, "select count(*) from cursors") == [(1,)]
        box.search_rate = None  # the rest at full speed, in-process (a second interpreter start costs seconds)
        monkeypatch.setenv("TEST_TOKEN", TOKEN)
        with Hub.from_file(cfg) as hub:
            (again,) = hub.sync()
        assert again.error is None and not again.stopped and again.pushed == 2000
    assert rows(db, "select count(*) from leads") == [(2000,)]
    assert rows(db, "select count(*), count(distinct remote_id) from links") == [(2000, 2000)]
    assert rows(db, "select count(*) from outbox where state in ('pending', 'failed')") == [(0,)]
    ids = [c.get("leadhub_id") for c in box.contacts.values()]
    assert len(ids) == 2000 and len(set(ids)) == 2000 and all(ids)


def test_once_runs_every_job_once_and_status_shows_each_connection(tmp_path, two_boxes):
    slow, fast = two_boxes
    db = tmp_path / "hub.db"
    cfg = write_config(tmp_path, db, marketing=(slow.url, "TEST_TOKEN"), events=(fast.url, "TEST_TOKEN"))
    res = run("run", "--once", "-c", str(cfg), "--rules-every", "2m")
    assert res.returncode == 0, res.stderr
    lines = [ln.split(": ", 1)[1] for ln in res.stderr.splitlines() if " hub.worker: " in ln]
    assert [ln.split(":")[0] for ln in lines] == ["sync marketing", "sync events", "rules"], lines
    assert "pulled=40 pushed=40" in lines[0] and "pulled=20 pushed=20" in lines[1]
    assert TOKEN not in res.stderr
    assert rows(db, "select connection, status from runs order by id") == [("marketing", "ok"), ("events", "ok")]
    status = CliRunner().invoke(app, ["status", "-c", str(cfg), "--json"], env={"TEST_TOKEN": TOKEN})
    assert status.exit_code == 0, status.output
    conns = {c["connection"]: c for c in json.loads(status.stdout)["connections"]}
    assert set(conns) == {"marketing", "events"}
    for c in conns.values():
        assert c["last_run"] is not None and c["last_status"] == "ok" and c["last_error"] is None
        assert c["lag_seconds"] is not None and c["calls_24h"] > 0 and c["pending"] == 0


def test_a_bad_rules_interval_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(app, ["run", "--once", "-c", str(tmp_path / "none.yaml"), "--rules-every", "10 s"])
    assert res.exit_code == 2 and "--rules-every" in res.output

"""Smoke test of ``benchmarks/rules_engine.py`` at a tiny size: both children run, the engine
evaluates every lead with dedup, routing and SLA, and the dedup figures are the planted truth's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "rules_engine.py"


@pytest.mark.bench  # opt-in (``-m bench``): two child processes, ~10 s
def test_rules_engine_benchmark_runs_every_rule_over_every_lead():
    done = subprocess.run([sys.executable, str(SCRIPT), "--sizes", "1500", "--incremental"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(next(x for x in done.stdout.splitlines() if x.startswith("summary: "))
                         .removeprefix("summary: "))
    [row] = summary
    dedup, engine = row["dedup"], row["engine"]
    assert dedup["n"] == engine["n"] == 1500
    assert dedup["pairs_true"] > 20 and dedup["precision"] >= 0.95 and dedup["recall"] >= 0.95
    assert engine["evaluated"] == 1500 and engine["errors"] == 0
    counts = engine["counts"]
    assert counts["routing.assign_owner"] > 300  # the unowned Lead/MQL leads all get an owner
    assert counts["sla.create_task"] > 0 and counts.get("dedup.merge", 0) > 0
    assert engine["peak_mb"] is None or engine["peak_mb"] > 0

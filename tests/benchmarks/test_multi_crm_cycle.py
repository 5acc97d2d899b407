"""Smoke test of ``benchmarks/multi_crm_cycle.py``: it runs end to end at a tiny size, its figures
parse, and the second cycle (no outside edits) writes nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "multi_crm_cycle.py"
ROW = re.compile(r"^(marketing|sales|delivery)\s+(\d+\.\d)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)"
                 r"\s+(\d+) \(\s*(\d+)\)\s+(\d+) \(\s*(\d+)\)\s+(\S+)\s+(\d+)\s+(\S+)\s+(\S+)\s+([\d,]+)$")


def test_multi_crm_cycle_runs_and_cycle_two_writes_nothing():
    done = subprocess.run([sys.executable, str(SCRIPT), "--n", "300"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()

    rows = [m.groups() for line in lines if (m := ROW.match(line))]
    assert len(rows) == 9, "\n".join(lines)  # three cycles x three connections
    assert [r[0] for r in rows] == ["marketing", "sales", "delivery"] * 3
    cycle1 = {r[0]: r for r in rows[:3]}
    assert int(cycle1["marketing"][2].replace(",", "")) > 0 and int(cycle1["sales"][2].replace(",", "")) > 0

    summary = json.loads(next(line for line in lines if line.startswith("summary: ")).removeprefix("summary: "))
    assert summary["n"] == 300 and len(summary["cycles"]) == 3
    assert summary["errors"] == [], summary["errors"]
    for cycle in summary["cycles"]:
        assert set(cycle["connections"]) == {"marketing", "sales", "delivery"}
        for r in cycle["connections"].values():
            assert all(isinstance(r[k], int) for k in ("pulled", "created", "updated", "pushed", "read_calls",
                                                       "write_calls", "throttled", "crm_requests"))
    second = summary["cycles"][1]["connections"]
    wrote = {k: {"pushed": r["pushed"], "rejected": r["rejected"], "write_calls": r["write_calls"]}
             for k, r in second.items()}
    assert summary["cycle2_writes"] == 0 and summary["cycle2_write_calls"] == 0, f"cycle 2 wrote: {wrote}"
    assert all(r["pushed"] == 0 and (r["write_calls"] == 0 or r["rejected"]) for r in second.values())
    assert "check: cycle 2 (no outside edits) made 0 writes" in lines
    assert any(r["pulled"] for r in summary["cycles"][2]["connections"].values())  # the edit wave was read
    assert summary["store"]["leads"] > 0 and summary["peak_rss_mb"] > 0
    assert re.search(r"^total cycle time: \d+\.\d s", done.stdout, re.M)

"""SLA clocks and scoring over 100k, 300k and 1,000,000 leads: time and peak memory per size.

    python benchmarks/rules_sla.py                      # 100k, 300k, 1M
    python benchmarks/rules_sla.py --sizes 50000 200000

Each size runs in a fresh child process (so its peak resident memory is its own) on a temp SQLite
file: N leads are generated straight into the store (realistic people from
``hub.testing.fakedata``, spread over the nine statuses, owners from the example team with its
Berlin and London business calendars, status entry times over the last three weeks, a third with
intent timestamps), then the engine runs the ``sla`` and ``scoring`` rules of the example process
(business-hours SAL, scoring from the built-in process) three times:

* **first** — every lead is new to the engine: clocks, scores, reminders, escalations, tasks;
* **again** — the same ``now``, nothing changed: the candidate query finds nothing to do;
* **+1 day** — only leads whose timers fell due (decaying scores, SLA steps) are evaluated.

Printed per size: generation time, the first run's wall and CPU seconds and leads/s, actions
taken, the other runs' seconds, and the peak RSS of the child; the last column compares CPU time
per lead with the smallest size (1.00 = linear; CPU rather than wall time because a shared
machine's wall time says more about the neighbours than about the engine).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NOW = datetime(2026, 3, 4, 14, 0, tzinfo=timezone.utc)
_STATUS_WEIGHTS = {"Lead": 30, "MQL": 18, "SAL": 8, "SQL": 7, "Opportunity": 6, "Negotiation": 3,
                   "Closed Won": 5, "Closed Lost": 10, "Nurture": 13}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def generate(store, n: int, owners: list[str], seed: int = 1, chunk: int = 20_000) -> None:
    """``n`` leads inserted in chunks (templates from fakedata, fresh ids, statuses and times)."""
    import sqlalchemy as sa

    from hub.model import new_lead_id
    from hub.store import LeadRow
    from hub.testing.fakedata import people

    rng = random.Random(seed)
    pool = people(5000, seed)
    statuses, weights = list(_STATUS_WEIGHTS), list(_STATUS_WEIGHTS.values())
    table = LeadRow.__table__
    done = 0
    while done < n:
        rows = []
        for status in rng.choices(statuses, weights, k=min(chunk, n - done)):
            p = pool[int(rng.random() * len(pool))]
            since = NOW - timedelta(seconds=int(rng.random() * 21 * 86400))
            custom = {"industry": p["industry"], "company_size": p["company_size"]}
            if rng.random() < 0.33:
                custom["pricing_page_at"] = (NOW - timedelta(days=rng.random() * 90)).isoformat()
            if rng.random() < 0.1:
                custom["demo_request_at"] = (NOW - timedelta(days=rng.random() * 60)).isoformat()
            rows.append(dict(id=new_lead_id(), first_name=p["first_name"], last_name=p["last_name"],
                             email=p["email"], phone=p["phone"], company=p["company"], domain=p["domain"],
                             title=p["title"], country=p["country"], source=p["source"],
                             owner=owners[int(rng.random() * len(owners))], status=status, status_since=since,
                             score=None, value=p["value"], currency="EUR" if p["value"] else None,
                             probability=p["probability"], expected_close=p["expected_close"],
                             next_action=None,
                             loss_reason=p["loss_reason"], rejection_reason=None, custom=custom,
                             created_at=since, updated_at=since))
        with store.session() as s:
            s.execute(sa.insert(table), rows)
        done += len(rows)


def child(n: int) -> dict:
    from hub.engine import Engine, build_rules
    from hub.process import default_process, load_process
    from hub.store import Store
    from rules.scoring import ScoringRule
    from rules.sla import SlaRule

    repo = Path(__file__).resolve().parents[1]
    example = load_process(repo / "examples" / "process.yaml")
    process = example.model_copy(update={"rules": {"scoring": default_process().rules["scoring"]}})
    store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='leadhub-bench-')}/bench.db")
    store.migrate()
    t = time.perf_counter()
    generate(store, n, [p.email for p in example.team])
    result: dict = {"n": n, "generate_s": round(time.perf_counter() - t, 1),
                    "rss_before_mb": round(_rss_mb())}
    engine = Engine(store, process, build_rules(process, {"sla": SlaRule, "scoring": ScoringRule}))
    for label, now in (("first", NOW), ("again", NOW), ("+1 day", NOW + timedelta(days=1))):
        t, cpu = time.perf_counter(), time.process_time()
        out = engine.run(now)
        result[label] = {"s": round(time.perf_counter() - t, 1), "cpu_s": round(time.process_time() - cpu, 1),
                         "evaluated": out.evaluated, "actions": out.applied,
                         "refused": out.refused, "errors": len(out.errors), "counts": out.counts}
    result["peak_rss_mb"] = round(_rss_mb())
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    rows = []
    print(f"{'leads':>9} {'generate':>9} {'first run':>10} {'CPU':>8} {'leads/s':>8} {'actions':>8} "
          f"{'again':>7} {'+1 day':>7} {'due':>7} {'peak RSS':>9} {'CPU/lead vs first size':>23}")
    for n in args.sizes:
        proc = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(proc.stderr)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(r)
        per = r["first"]["cpu_s"] / n
        base = rows[0]["first"]["cpu_s"] / rows[0]["n"]
        print(f"{n:>9,} {r['generate_s']:>8.1f}s {r['first']['s']:>9.1f}s {r['first']['cpu_s']:>7.1f}s "
              f"{n / r['first']['s']:>8,.0f} {r['first']['actions']:>8,} {r['again']['s']:>6.1f}s "
              f"{r['+1 day']['s']:>6.1f}s {r['+1 day']['evaluated']:>7,} {r['peak_rss_mb']:>7,} MB "
              f"{per / base:>23.2f}", flush=True)
    last = rows[-1]
    print("\nactions in the first run at the largest size:", json.dumps(last["first"]["counts"]))
    if any(r[k]["errors"] for r in rows for k in ("first", "again", "+1 day")):
        sys.exit("rule errors occurred")


if __name__ == "__main__":
    main()

"""Dedup, routing and SLA evaluation over 100k, 300k and 1,000,000 generated leads: time and peak memory.

    python benchmarks/rules_engine.py                               # 100k, 300k, 1M
    python benchmarks/rules_engine.py --sizes 20000,60000           # a quick look
    python benchmarks/rules_engine.py --sizes 100000 --incremental  # dedup inside the engine too

Per size, two fresh child processes (each one's peak resident memory is its own):

* **dedup** — ``hub.testing.fakedata`` generates N people with ~3 % planted duplicates (email
  case or plus-addressing, phone format, accents; the generator says which is whose); the batch
  deduplicator (:func:`rules.dedup.dedupe`: normalisation, blocking keys, scoring, clusters) runs
  over all N, as for a first import; precision and recall are pairs within predicted clusters
  against the planted groups.
* **engine** — the same N people go into a SQLite store (Lead and MQL unowned, the rest owned by
  the team; status entry times over the last three weeks), then one engine run evaluates every
  lead with the ``routing`` rule (account match, territory with a CEL condition, weighted round
  robin with caps, fallback owner: the routing of ``benchmarks/rules_routing_dedup.py``) and the
  built-in ``sla`` rule (clocks, reminders, escalations, breach tasks; Berlin business calendar).
  ``--incremental`` adds the ``dedup`` rule, which matches each lead against the ones before it
  through the key index, as new arrivals are matched.

Printed per size: seconds and peak RSS of each child, dedup precision/recall, the engine's leads/s,
actions and CPU seconds, and CPU per lead relative to the first size (1.00 = linear; CPU, not wall,
because this machine's wall clock says more about its neighbours than about the code). The engine
child's peak is measured from after the data was generated and stored (``/proc/self/clear_refs``),
so it is the engine's own; the dedup child's includes the N generated people it works on.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rules_routing_dedup import _bench_process, _peak_mb, _rss_mb, pairs, scores  # noqa: E402

SEED = 11
NOW = datetime(2026, 3, 4, 14, 0, tzinfo=timezone.utc)  # a Wednesday afternoon in Berlin


def _reset_peak() -> bool:
    """Start VmHWM afresh (Linux ≥ 4.0), so a later peak is the work's own, not the set-up's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def dedup_child(n: int) -> dict[str, Any]:
    from hub.testing.fakedata import generate
    from rules.dedup import dedupe

    crowd = generate(n, seed=SEED)
    leads = [{**p, "id": str(i)} for i, p in enumerate(crowd.people)]
    groups: dict[int, list[int]] = {}
    for dup, original in crowd.duplicates.items():
        groups.setdefault(original, [original]).append(dup)
    data_mb = _rss_mb()
    t, cpu = time.perf_counter(), time.process_time()
    result = dedupe(leads)
    seconds, cpu_s = time.perf_counter() - t, time.process_time() - cpu
    quality = scores(pairs(c.lead_ids for c in result.clustering.clusters), pairs(groups.values()))
    return {"n": n, "s": round(seconds, 1), "cpu_s": round(cpu_s, 1), "data_mb": round(data_mb),
            "peak_mb": round(_peak_mb()), "compared": result.compared,
            "review_pairs": len(result.clustering.review), **quality}


def _store_leads(store: Any, n: int, team: list[str], chunk: int = 20_000) -> None:
    import sqlalchemy as sa

    from hub.model import new_lead_id
    from hub.store import LeadRow
    from hub.testing.fakedata import generate

    people = generate(n, seed=SEED).people
    rng = random.Random(SEED)
    table = LeadRow.__table__
    for start in range(0, n, chunk):
        rows = []
        for p in people[start:start + chunk]:
            since = NOW - timedelta(seconds=int(rng.random() * 21 * 86400))
            owner = None if p["status"] in ("Lead", "MQL") else team[int(rng.random() * len(team))]
            rows.append(dict(id=new_lead_id(), first_name=p["first_name"], last_name=p["last_name"],
                             email=p["email"], phone=p["phone"], company=p["company"], domain=p["domain"],
                             title=p["title"], country=p["country"], source=p["source"], owner=owner,
                             status=p["status"], status_since=since, value=p["value"],
                             currency="EUR" if p["value"] else None, probability=p["probability"],
                             expected_close=p["expected_close"], loss_reason=p["loss_reason"],
                             custom={"industry": p["industry"], "company_size": p["company_size"]},
                             created_at=since, updated_at=since))
        with store.session() as s:
            s.execute(sa.insert(table), rows)
    del people


def engine_child(n: int, incremental: bool) -> dict[str, Any]:
    from hub.engine import Engine, build_rules
    from hub.store import Store
    from rules.dedup import Dedup
    from rules.routing import Routing
    from rules.sla import SlaRule

    process, routing = _bench_process()
    routing["pools"]["all"]["member_caps"] = {"day": 200_000}  # caps checked on every lead, never binding
    configured = {"routing": routing, "sla": {}, **({"dedup": {}} if incremental else {})}
    process = process.model_copy(update={"rules": configured})
    classes = {"routing": Routing, "sla": SlaRule, "dedup": Dedup}
    store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='leadhub-bench-')}/hub.db")
    store.migrate()
    t = time.perf_counter()
    _store_leads(store, n, [p.email for p in process.team if p.role == "sales"])
    setup_s = time.perf_counter() - t
    gc.collect()
    fresh = _reset_peak()
    base = _rss_mb()
    engine = Engine(store, process, build_rules(process, {k: classes[k] for k in configured}))
    t, cpu = time.perf_counter(), time.process_time()
    out = engine.run(NOW)
    seconds, cpu_s = time.perf_counter() - t, time.process_time() - cpu
    return {"n": n, "setup_s": round(setup_s, 1), "s": round(seconds, 1), "cpu_s": round(cpu_s, 1),
            "evaluated": out.evaluated, "actions": out.applied, "errors": len(out.errors),
            "counts": dict(out.counts), "rss_before_mb": round(base),
            "peak_mb": round(_peak_mb()) if fresh else None}


def _child(what: str, n: int, incremental: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", what, "--n", str(n)] + (["--incremental"] if incremental else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{what} at {n:,} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,300000,1000000", help="comma-separated numbers of leads")
    ap.add_argument("--incremental", action="store_true", help="run the dedup rule inside the engine as well")
    ap.add_argument("--child", choices=("dedup", "engine"), help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        one = dedup_child(args.n) if args.child == "dedup" else engine_child(args.n, args.incremental)
        print(json.dumps(one))
        return
    rules = "dedup + routing + sla" if args.incremental else "routing + sla"
    print(f"{'':>9}  {'batch dedup':^41}  {'engine: ' + rules:^58}")
    print(f"{'leads':>9}  {'s':>6} {'peak':>8} {'prec':>6} {'recall':>6} {'CPU/lead':>9}  "
          f"{'s':>7} {'leads/s':>8} {'actions':>9} {'CPU s':>7} {'peak':>8} {'CPU/lead':>9} {'errors':>6}")
    rows: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for n in [int(x) for x in args.sizes.split(",")]:
        d, e = _child("dedup", n, False), _child("engine", n, args.incremental)
        rows.append((d, e))
        d0, e0 = rows[0]
        rel_d = (d["cpu_s"] / n) / max(d0["cpu_s"] / d0["n"], 1e-9)
        rel_e = (e["cpu_s"] / n) / max(e0["cpu_s"] / e0["n"], 1e-9)
        peak = f"{e['peak_mb']:,} MB" if e["peak_mb"] is not None else "-"
        print(f"{n:>9,}  {d['s']:>6.1f} {d['peak_mb']:>5,} MB {d['precision']:>6.3f} {d['recall']:>6.3f} "
              f"{rel_d:>9.2f}  {e['s']:>7.1f} {n / max(e['s'], 1e-9):>8,.0f} {e['actions']:>9,} {e['cpu_s']:>7.1f} "
              f"{peak:>8} {rel_e:>9.2f} {e['errors']:>6}", flush=True)
    d, e = rows[-1]
    print(f"\nlargest size: engine actions {json.dumps(e['counts'])}; store set-up {e['setup_s']} s; "
          f"dedup compared {d['compared']:,} pairs, {d['pairs_true']:,} planted pairs, found {d['pairs_found']:,}")
    print("summary: " + json.dumps([{"dedup": d, "engine": e} for d, e in rows]))
    if any(e["errors"] for _, e in rows):
        sys.exit("rule errors occurred")


if __name__ == "__main__":
    main()

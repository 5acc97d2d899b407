"""Benchmark: deduplication quality against splink, and dedup/routing cost as the store grows.

Run it from the repository root::

    python benchmarks/rules_routing_dedup.py                          # quality at 100k, scale 100k/300k/1M
    python benchmarks/rules_routing_dedup.py --quality 20000 --sizes 20000,60000 --no-splink   # quick look

Quality. ``hub.testing.fakedata`` plants ~3 % duplicates and says which (``Crowd.duplicates``):
email case or plus-addressing, phone format, accents. That set ("fakedata") is easy once
normalised, so a second set ("hard") corrupts the planted duplicates further, with a fixed
seed: typos in first or last name, the email swapped for a free-mail address or dropped,
the phone dropped, the website dropped, the legal form dropped from the company name. Truth
is the planted groups; a predicted pair counts when both leads land in one cluster. LeadHub
clusters at its ``link`` threshold (0.99). splink (unsupervised Fellegi–Sunter on DuckDB)
gets the same rows with LeadHub's normalisation already applied (splink's own guidance is
to standardise first) and the same blocking rules; its model is the best of the variants
tried on this data: exact email, phone and domain, name comparisons with term-frequency
adjustments, no company-name comparison (it double-counts with the domain: precision fell
to 0.5 with it), u by random sampling, m and λ by EM on email, phone and name blocks; it
clusters at 0.99 as well.

Scale. For each size a fresh process (so peak RSS is that size's own) times: the batch dedup
of all leads in memory; splink on the same rows; then, with a SQLite store holding that many
leads, their blocking keys and as many past routing decisions, the incremental path per new
lead — matching 2,000 arrivals through the key index, and routing 2,000 leads (account match,
territory, weighted round robin with caps, fallback) in batches of 100 per transaction, as
the engine runs them. Per-lead cost that stays flat as the store grows means total cost
grows linearly with the number of leads. splink runs up to ``--splink-max`` leads (300,000 by
default): at 1,000,000 on this 24 GB machine it passed 20 GB of memory after four minutes.

The machine is shared (2 cores): times are wall-clock and noisy; compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.testing.fakedata import generate
from rules.dedup import DedupSettings, dedupe

SEED = 11
NOW = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)


# -- data -------------------------------------------------------------------------------------
def _typo(rng: random.Random, word: str | None) -> str | None:
    if not word or len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:] if rng.random() < 0.5 else word[:i] + word[i + 1:]


def _harden(rng: random.Random, dup: dict[str, Any], original: int) -> dict[str, Any]:
    dup = dict(dup)
    if rng.random() < 0.3:
        dup["first_name"] = _typo(rng, dup["first_name"])
    if rng.random() < 0.2:
        dup["last_name"] = _typo(rng, dup["last_name"])
    roll = rng.random()
    if roll < 0.25 and dup.get("first_name") and dup.get("last_name"):
        local = "".join(c for c in f"{dup['first_name']}.{dup['last_name']}".lower() if c.isalnum() or c == ".")
        dup["email"] = f"{local}{original % 1000}@gmail.com"  # personal addresses are unique too
    elif roll < 0.45:
        dup["email"] = None
    if rng.random() < 0.25:
        dup["phone"] = None
    if rng.random() < 0.15:
        dup["domain"] = None
    if rng.random() < 0.15 and dup.get("company"):
        dup["company"] = dup["company"].rsplit(" ", 1)[0]
    return dup


def crowd(n: int, *, hard: bool) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """Leads (dicts with an ``id``) and the truth as groups of indices."""
    c = generate(n, seed=SEED)
    rng = random.Random(f"harden:{SEED}")
    leads = []
    for i, p in enumerate(c.people):
        p = _harden(rng, p, c.duplicates[i]) if hard and i in c.duplicates else p
        leads.append({**p, "id": str(i)})
    groups: dict[int, list[int]] = {}
    for dup, original in c.duplicates.items():
        groups.setdefault(original, [original]).append(dup)
    return leads, list(groups.values())


def pairs(groups: Any) -> set[tuple[int, int]]:
    out = set()
    for group in groups:
        ids = sorted(int(x) for x in group)
        out.update((a, b) for k, a in enumerate(ids) for b in ids[k + 1:])
    return out


def scores(predicted: set[tuple[int, int]], truth: set[tuple[int, int]]) -> dict[str, float]:
    tp = len(predicted & truth)
    p = tp / len(predicted) if predicted else 1.0
    r = tp / len(truth) if truth else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0, 4),
            "pairs_true": len(truth), "pairs_found": len(predicted)}


# -- the two deduplicators ----------------------------------------------------------------------
def leadhub_clusters(leads: list[dict[str, Any]]) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
    result = dedupe(leads)
    info = {"compared": result.compared, "skipped_blocks": result.blocking.skipped_blocks,
            "review_pairs": len(result.clustering.review)}
    return [c.lead_ids for c in result.clustering.clusters], info


def splink_clusters(leads: list[dict[str, Any]]) -> list[list[int]]:
    import contextlib
    import io
    import logging

    import pyarrow as pa
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI

    logging.getLogger("splink").setLevel(logging.ERROR)
    settings = DedupSettings()
    ids = [settings.identity(lead) for lead in leads]
    table = pa.table({"unique_id": [int(w.lead_id) for w in ids], "email": [w.email for w in ids],
                      "phone": [w.phone for w in ids], "first_name": [w.first or None for w in ids],
                      "last_name": [w.last or None for w in ids], "domain": [w.domain for w in ids],
                      "company": [w.company or None for w in ids],
                      "initials": [f"{w.first[:1]}{w.last[:1]}" if w.first and w.last else None for w in ids]})
    names = {"term_frequency_adjustments": True}
    model = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[cl.ExactMatch("email"), cl.ExactMatch("phone"), cl.NameComparison("first_name").configure(**names),
                     cl.NameComparison("last_name").configure(**names), cl.ExactMatch("domain")],
        blocking_rules_to_generate_predictions=[block_on("email"), block_on("phone"),
                                                block_on("domain", "last_name"), block_on("domain", "first_name"),
                                                block_on("domain", "initials"), block_on("company", "initials")],
        retain_matching_columns=False, retain_intermediate_calculation_columns=False)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        linker = Linker(DuckDBAPI().register(table), model)
        linker.training.estimate_probability_two_random_records_match([block_on("email"), block_on("phone")],
                                                                      recall=0.9)
        linker.training.estimate_u_using_random_sampling(max_pairs=2e6)
        for rule in (block_on("email"), block_on("phone"), block_on("last_name", "first_name")):
            linker.training.estimate_parameters_using_expectation_maximisation(rule)
        predictions = linker.inference.predict(threshold_match_probability=0.5)
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, 0.99)
    groups: dict[Any, list[int]] = {}
    for row in clusters.as_pyarrow_table().select(["cluster_id", "unique_id"]).to_pylist():
        groups.setdefault(row["cluster_id"], []).append(row["unique_id"])
    return [g for g in groups.values() if len(g) > 1]


# -- one measurement per process ----------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    # VmHWM, not ru_maxrss: the latter is inherited from the parent across fork and exec
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def one_dedup(n: int) -> dict[str, Any]:
    leads, _ = crowd(n, hard=False)
    base = _rss_mb()
    t = time.perf_counter()
    clusters, info = leadhub_clusters(leads)
    return {"seconds": round(time.perf_counter() - t, 2), "rss_data_mb": round(base), "peak_mb": round(_peak_mb()),
            "clusters": len(clusters), **info}


def one_splink(n: int) -> dict[str, Any]:
    leads, _ = crowd(n, hard=False)
    base = _rss_mb()
    t = time.perf_counter()
    clusters = splink_clusters(leads)
    return {"seconds": round(time.perf_counter() - t, 2), "rss_data_mb": round(base), "peak_mb": round(_peak_mb()),
            "clusters": len(clusters)}


def _bench_process():
    from hub.process import Process, default_process

    data = default_process().model_dump(mode="json", by_alias=True)
    countries = ["DE", "DE", "AT", "CH", "FR", "GB", "GB", "US", "US", "NL", "PL", "ES", "IT", "SE"]
    team = [{"email": f"rep{i}@bench.example", "role": "sales", "territories": [c], "calendar": "de",
             "capacity": 100_000} for i, c in enumerate(countries)]
    team += [{"email": "boss@bench.example", "role": "sales_manager", "calendar": "de"},
             {"email": "mk@bench.example", "role": "marketing"},
             {"email": "cs@bench.example", "role": "customer_success"}]
    data.update(team=team, calendars={"de": {"timezone": "Europe/Berlin", "country": "DE"}}, default_calendar="de")
    process = Process.model_validate(data)
    routing = {"pools": {"all": {"members": [{"email": t["email"], "weight": 1 + i % 2}
                                             for i, t in enumerate(team[:14])],
                                 "member_caps": {"day": 400}}},
               "rules": [{"name": "account", "strategy": "account_match"},
                         {"name": "territory", "strategy": "territory", "roles": ["sales"],
                          "when": 'lead.country in ["DE", "AT", "CH", "GB"]'},
                         {"name": "everyone", "strategy": "round_robin", "pool": "all"}],
               "fallback": {"owner": "boss@bench.example"}}
    return process, routing


def one_store(n: int, sample: int = 2000) -> dict[str, Any]:
    import sqlalchemy as sa

    from hub.model import Lead
    from hub.store import LeadRow, Store
    from rules.dedup.incremental import find_matches, index_lead, index_leads
    from rules.routing.config import RoutingSettings
    from rules.routing.router import Router
    from rules.routing.tables import RoutingDecision

    process, routing = _bench_process()
    owners = [p.email for p in process.team if p.role == "sales"]
    leads, _ = crowd(n + sample, hard=False)
    stored, arriving = leads[:n], leads[n:]
    folder = tempfile.mkdtemp(prefix="leadhub-bench-")
    store = Store(f"sqlite:///{folder}/hub.db")
    store.migrate()
    settings = DedupSettings()
    t = time.perf_counter()
    rng = random.Random(SEED)
    fields = set(Lead.model_fields) - {"custom"}
    with store.session() as s:
        for start in range(0, n, 20_000):
            chunk = stored[start:start + 20_000]
            rows = []
            for p in chunk:
                row = {k: p.get(k) for k in fields if k in p}
                row.update(id=p["id"], status=p["status"], owner=rng.choice(owners), created_at=NOW,
                           updated_at=NOW, custom={"industry": p["industry"], "company_size": p["company_size"]})
                rows.append(row)
            s.execute(sa.insert(LeadRow.__table__), rows)
            s.execute(sa.insert(RoutingDecision.__table__), [
                {"lead_id": r["id"], "at": NOW - timedelta(minutes=rng.randrange(60 * 24 * 56)), "kind": "route",
                 "owner": r["owner"], "pool": "all", "reason": "history", "rules": [], "candidates": []}
                for r in rows])
        index_leads(s, (settings.identity(p) for p in stored))
    setup = time.perf_counter() - t
    t = time.perf_counter()
    with store.session() as s:
        for p in arriving:
            lead = Lead.model_validate({k: p.get(k) for k in fields if k in p} | {"id": f"new{p['id']}",
                                                                                  "status": "Lead"})
            who, _ = find_matches(s, lead, settings)
            index_lead(s, lead.id, who)
    match_ms = (time.perf_counter() - t) / sample * 1000
    router = Router(RoutingSettings.model_validate(routing), process)
    with store.session() as s:
        t0 = s.execute(sa.select(LeadRow.owner, sa.func.count()).group_by(LeadRow.owner)).all()
    open_counts = {o: c for o, c in t0}
    new_rows = [{**{k: p.get(k) for k in fields if k in p}, "id": f"r{p['id']}", "status": "MQL", "owner": None,
                 "created_at": NOW, "updated_at": NOW, "custom": {"postcode": "10115"}} for p in arriving]
    with store.session() as s:
        s.execute(sa.insert(LeadRow.__table__), new_rows)
    t = time.perf_counter()
    rules_hit: dict[str, int] = {}
    for start in range(0, sample, 100):
        with store.session() as s:
            for row in new_rows[start:start + 100]:
                lead = Lead.model_validate({k: row[k] for k in row if k not in ("created_at", "updated_at")})
                d = router.route(s, lead, NOW, open_leads=lambda: open_counts)
                if d.owner:
                    open_counts[d.owner] = open_counts.get(d.owner, 0) + 1
                rules_hit[d.rule] = rules_hit.get(d.rule, 0) + 1
    route_ms = (time.perf_counter() - t) / sample * 1000
    size_mb = Path(folder, "hub.db").stat().st_size / 2**20
    store.dispose()
    return {"setup_s": round(setup, 1), "match_ms_per_lead": round(match_ms, 3),
            "route_ms_per_lead": round(route_ms, 3), "rules": rules_hit, "db_mb": round(size_mb),
            "peak_mb": round(_peak_mb())}


def quality(n: int, use_splink: bool) -> None:
    print(f"\n== quality: {n:,} leads, pairs within predicted clusters vs planted duplicates ==")
    print(f"{'data':<10}{'system':<10}{'precision':>10}{'recall':>8}{'F1':>8}{'true':>8}{'found':>8}{'seconds':>9}")
    for hard in (False, True):
        leads, truth = crowd(n, hard=hard)
        true_pairs = pairs(truth)
        t = time.perf_counter()
        clusters, _ = leadhub_clusters(leads)
        rows = [("LeadHub", scores(pairs(clusters), true_pairs), time.perf_counter() - t)]
        if use_splink:
            t = time.perf_counter()
            rows.append(("splink", scores(pairs(splink_clusters(leads)), true_pairs), time.perf_counter() - t))
        for system, sc, seconds in rows:
            print(f"{'hard' if hard else 'fakedata':<10}{system:<10}{sc['precision']:>10.4f}{sc['recall']:>8.4f}"
                  f"{sc['f1']:>8.4f}{sc['pairs_true']:>8}{sc['pairs_found']:>8}{seconds:>9.1f}")


def _child(what: str, n: int) -> dict[str, Any] | None:
    cmd = [sys.executable, __file__, "--one", what, "--n", str(n)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"   {what} at {n:,} failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def scale(sizes: list[int], use_splink: bool, splink_max: int) -> None:
    print("\n== scale: one process per measurement (peak RSS includes the generated data) ==")
    print(f"{'leads':>10}  {'LeadHub dedup':>22}  {'splink':>22}  {'match/lead':>10}  {'route/lead':>10}  "
          f"{'store setup':>11}")
    for n in sizes:
        d = _child("dedup", n)
        sp = _child("splink", n) if use_splink and n <= splink_max else None
        st = _child("store", n)
        cell = lambda r: f"{r['seconds']:>8.1f} s {r['peak_mb']:>6} MB" if r else f"{'-':>22}"
        print(f"{n:>10,}  {cell(d):>22}  {cell(sp):>22}  "
              f"{(str(st['match_ms_per_lead']) + ' ms') if st else '-':>10}  "
              f"{(str(st['route_ms_per_lead']) + ' ms') if st else '-':>10}  "
              f"{(str(st['setup_s']) + ' s') if st else '-':>11}", flush=True)
        for name, r in (("dedup", d), ("splink", sp), ("store", st)):
            if r:
                print(f"{'':>12}{name}: {json.dumps(r)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quality", type=int, default=100_000, help="leads for the quality comparison (0: skip)")
    ap.add_argument("--sizes", default="100000,300000,1000000", help="comma-separated sizes for the scale runs")
    ap.add_argument("--no-splink", action="store_true")
    ap.add_argument("--splink-max", type=int, default=300_000,
                    help="largest size splink runs at (at 1M it passed 20 GB of memory on this machine)")
    ap.add_argument("--one", choices=("dedup", "splink", "store"), help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps({"dedup": one_dedup, "splink": one_splink, "store": one_store}[args.one](args.n)))
        return
    use_splink = not args.no_splink
    if use_splink:
        try:
            import splink  # noqa: F401
        except ImportError:
            print("splink is not installed (pip install splink duckdb): LeadHub only")
            use_splink = False
    if args.quality:
        quality(args.quality, use_splink)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    if sizes:
        scale(sizes, use_splink, args.splink_max)


if __name__ == "__main__":
    main()

"""Pull and push throughput against the HubSpot sandbox with no rate limit, and peak memory.

    python benchmarks/sync_throughput.py --n 100000

The sandbox runs in a child process so the figures are the hub's own: records/s for the pull
(search pages of 200 into SQLite, one transaction per page) and for the push (the hub-id stamp
written back in batches of 100), API calls against the vendor minimum, and the hub process's peak
resident memory.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _serve(n: int, seed: int, q: mp.Queue) -> None:
    from connectors.hubspot.sandbox import HubSpotSandbox

    box = HubSpotSandbox(rate=None, search_rate=None, daily=10**9)
    box.seed(n, seed=seed)
    box.serve_forever(port=0, ready=lambda url: q.put((url, box.token)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--db", default="", help="database URL (default: a temp SQLite file)")
    args = ap.parse_args()

    from connectors.hubspot import HubSpotConnector, HubSpotSettings
    from hub.store import Store
    from hub.sync import Connection, Syncer, SyncOutcome

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    t0 = time.perf_counter()
    child = ctx.Process(target=_serve, args=(args.n, args.seed, q), daemon=True)
    child.start()
    try:
        url, token = q.get(timeout=600)
        print(f"sandbox: {args.n} contacts seeded in {time.perf_counter() - t0:.1f}s at {url}")
        store = Store(args.db or f"sqlite:///{tempfile.mkdtemp()}/bench.db")
        store.migrate()
        conn = Connection("marketing", HubSpotConnector(
            HubSpotSettings(base_url=url, token=token, search_overlap=0, unlimited=True), connection="marketing"))
        syncer = Syncer(store)

        t = time.perf_counter()
        pulled = syncer.run(conn, push=False)
        pull_s = time.perf_counter() - t
        assert pulled.error is None, pulled.error
        out = SyncOutcome("marketing")
        calls0 = conn.connector.meter.calls
        t = time.perf_counter()
        syncer.push(conn, out)
        push_s = time.perf_counter() - t
        push_calls = conn.connector.meter.calls - calls0
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        min_pull = math.ceil(args.n / 200)
        min_push = math.ceil(args.n / 100)
        print(f"pull : {pulled.pulled} records in {pull_s:.1f}s = {pulled.pulled / pull_s:,.0f} records/s; "
              f"{pulled.pull_calls} API calls (vendor minimum {min_pull} search pages + 1 owners page; "
              f"{pulled.pull_calls / pulled.pulled * 1000:.2f} calls per 1,000 records)")
        print(f"push : {out.pushed} records in {push_s:.1f}s = {out.pushed / push_s:,.0f} records/s; "
              f"{push_calls} API calls (vendor minimum {min_push} batches of 100)")
        print(f"peak memory of the hub process: {peak_mb:,.0f} MB for {args.n} contacts "
              f"(store: {store.dialect})")
    finally:
        child.terminate()
        child.join(10)


if __name__ == "__main__":
    main()

"""API calls and throughput per connector, against each sandbox with no rate limit.

    python benchmarks/connectors.py [--n 10000] [--only hubspot,salesforce]

For every installed connector with a sandbox: seed ``n`` leads, pull them, stamp the hub's id on
each (n updates), then create ``n`` new leads through the outbox; print API calls per 10,000
records for each step beside the vendor minimum (records / page size for reads, records / batch
size for writes, or one call per record where the CRM has no batch endpoint), and records/s.
The measuring is the conformance kit's (`hub.testing.conformance.ConformanceSuite.measure_calls`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


#: sandbox options that differ from the kit's defaults (limits the sandbox has beyond ``rate``)
SANDBOX_KWARGS = {"hubspot": {"search_rate": None}}
#: connectors that are not lead sources (write-only targets) are not measured
SKIP = {"monday_delivery"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--only", default="", help="comma-separated connector names")
    args = ap.parse_args()

    from hub.plugins import registry
    from hub.sandboxes import sandbox_class
    from hub.testing.conformance import ConformanceSuite

    names = [n for n in sorted(registry().connectors) if registry().connectors[n].sandbox and n not in SKIP]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    rows = []
    for name in names:
        cls = registry().connectors[name]
        suite = type(f"Bench{name.title()}", (ConformanceSuite,),
                     {"connector": cls, "sandbox": sandbox_class(name),
                      "sandbox_kwargs": SANDBOX_KWARGS.get(name, {})})
        try:
            report = suite.measure_calls(args.n)
        except Exception as exc:  # one connector's failure must not hide the others' figures
            print(f"{name}: failed: {type(exc).__name__}: {exc}", flush=True)
            continue
        lim = cls.limits
        rows.append((name, report, lim.min_reads(args.n), lim.min_writes(args.n)))
        print(report, flush=True)

    print(f"\nper {args.n:,} records    read calls (min)   rec/s   update calls (min)  rec/s   "
          "create calls (min)  rec/s")
    for name, r, rmin, wmin in rows:
        print(f"{name:<20} {r.read_calls:>7} ({rmin:>5}) {r.records / max(r.read_seconds, 1e-9):>7,.0f}   "
              f"{r.update_calls:>9} ({wmin:>6}) {r.records / max(r.update_seconds, 1e-9):>6,.0f}   "
              f"{r.create_calls:>9} ({wmin:>6}) {r.records / max(r.create_seconds, 1e-9):>6,.0f}")


if __name__ == "__main__":
    main()

"""The HubSpot connector stays inside the real limits instead of bouncing off them."""

from __future__ import annotations

import math

import pytest

from connectors.hubspot import HubSpotConnector, HubSpotSettings
from connectors.hubspot.sandbox import HubSpotSandbox
from hub.sync import Connection, Syncer


@pytest.mark.parametrize("n", [pytest.param(12_000, id="12k"), pytest.param(20_000, id="20k", marks=pytest.mark.slow)])
def test_pull_of_20000_at_100_per_10s_costs_the_vendor_minimum_and_at_most_one_429(sqlite_store, n):
    """Past the 10,000-result search cap (a window restart) at the real limits; the 20,000 case is opt-in
    (``-m slow``, ~25 s): the default run keeps the window restart with 12,000."""
    box = HubSpotSandbox(rate=100, search_rate=5)
    box.seed(n, seed=9)
    with box.serve() as served:
        conn = Connection("marketing", HubSpotConnector(
            HubSpotSettings(base_url=served.url, token=box.token, search_overlap=0), connection="marketing"))
        out = Syncer(sqlite_store).run(conn, push=False)
    assert out.error is None
    assert out.pulled == n and out.created == n
    # one owners page and one archived-contacts listing (deletions; empty here, so a single call)
    assert conn.connector.meter.by_kind["list_archived"] == 1
    searches = out.pull_calls - 2
    windows = math.ceil(n / 10_000) - 1
    minimum = math.ceil(n / 200) + windows
    assert searches <= minimum * 1.02, (searches, minimum)
    assert out.throttled <= 1
    print(f"\n{searches} searches for {n:,} contacts (minimum {minimum}), {out.throttled} 429s, {out.seconds}s")


def test_reads_and_writes_together_stay_under_the_ten_second_window(sqlite_store):
    rate = 10  # a tiny window, so 17 calls must wait for a second one
    box = HubSpotSandbox(rate=rate, search_rate=None)
    box.seed(1_000, seed=2)
    with box.serve() as served:
        settings = HubSpotSettings(base_url=served.url, token=box.token, search_overlap=0, rate=(rate, 10))
        conn = Connection("marketing", HubSpotConnector(settings, connection="marketing"))
        conn.connector.named_budgets.clear()  # search limit off in this sandbox: only the 10 s window counts
        out = Syncer(sqlite_store).run(conn)
    assert out.error is None and out.pushed == 1_000
    # 5 searches + 1 owners + 1 archived-contacts listing (deletions) + 10 batch upserts
    assert out.api_calls == 17 and out.throttled == 0
    assert out.seconds >= 10

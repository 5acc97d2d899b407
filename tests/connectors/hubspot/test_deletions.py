"""HubSpot deletions: archived contacts are listed after the search and reported once each."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from connectors.hubspot import HubSpotConnector, HubSpotSettings
from connectors.hubspot.sandbox import HubSpotSandbox
from hub.store import Cursor, Link
from hub.sync import Connection, Syncer


@pytest.fixture
def box():
    sandbox = HubSpotSandbox(rate=None, search_rate=None, lag=0.0)
    with sandbox.serve() as served:
        sandbox.url = served.url
        yield sandbox


def sync(store, box, **settings):
    s = HubSpotSettings(base_url=box.url, token=box.token, search_overlap=0, **settings)
    conn = Connection("marketing", HubSpotConnector(s, connection="marketing"))
    out = Syncer(store).run(conn, push=False)
    assert out.error is None
    return out, conn.connector.meter.by_kind["list_archived"]


def deleted_links(store) -> set[str]:
    with Session(store.engine) as s:
        return set(s.execute(sa.select(Link.remote_id).where(Link.deleted_at.is_not(None))).scalars())


def cursor(store) -> dict:
    with Session(store.engine) as s:
        return dict(s.get(Cursor, ("marketing", "contacts")).value)


def test_an_archived_contact_marks_its_link_deleted_once(sqlite_store, box):
    ids = box.seed(5, seed=3)
    first, listings = sync(sqlite_store, box)
    assert first.created == 5 and first.deleted == 0 and listings == 1
    box.clock.advance(1.0)
    box.archive_contact(ids[2])

    second, listings = sync(sqlite_store, box)
    assert (second.deleted, second.pulled, second.created, listings) == (1, 1, 0, 1)
    assert deleted_links(sqlite_store) == {ids[2]}
    assert cursor(sqlite_store)["archived"]["seen"] == [ids[2]]

    third, listings = sync(sqlite_store, box)
    assert (third.deleted, third.pulled, listings) == (0, 0, 1)  # listed again, not reported again
    assert deleted_links(sqlite_store) == {ids[2]}


def test_a_contact_archived_in_the_same_millisecond_as_the_last_one_seen_is_not_lost(sqlite_store, box):
    box.clock.freeze(datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc))
    ids = [box.add_contact({"email": f"tie{i}@example.com", "firstname": "Tie"}) for i in range(3)]
    sync(sqlite_store, box)
    box.archive_contact(ids[0])
    assert sync(sqlite_store, box)[0].deleted == 1
    box.archive_contact(ids[1])  # same archivedAt as ids[0]: the seen-set tells them apart
    out, _ = sync(sqlite_store, box)
    assert (out.deleted, out.pulled) == (1, 1)
    assert deleted_links(sqlite_store) == {ids[0], ids[1]}


class _Stop(Exception):
    pass


def test_the_whole_archived_list_is_paged_and_the_cursor_moves_only_after_its_last_page(sqlite_store, box):
    ids = box.seed(250, seed=5)
    sync(sqlite_store, box)
    box.clock.advance(1.0)
    for rid in reversed(ids[:150]):
        box.archive_contact(rid)
        box.clock.advance(0.01)  # the list comes in id order, so its first page holds the latest archivedAt
    before = cursor(sqlite_store)["archived"]

    pages = []

    def stop_after_first_archived_page(step, n):
        pages.append(n)
        if len(pages) == 2:  # the (empty) search page, then the first archived page
            raise _Stop

    conn = Connection("marketing", HubSpotConnector(
        HubSpotSettings(base_url=box.url, token=box.token, search_overlap=0), connection="marketing"))
    with pytest.raises(_Stop):
        Syncer(sqlite_store).run(conn, push=False, progress=stop_after_first_archived_page)
    assert pages == [0, 100] and len(deleted_links(sqlite_store)) == 100
    assert cursor(sqlite_store)["archived"] == before  # not advanced past the unread page

    out, listings = sync(sqlite_store, box)
    assert (out.pulled, out.deleted, listings) == (150, 50, 2)  # ceil(150 / 100); repeats change nothing
    assert len(deleted_links(sqlite_store)) == 150
    out, listings = sync(sqlite_store, box)
    assert (out.pulled, listings) == (0, 2)  # the documented cost: the list is paged every run


def test_read_deletions_false_skips_the_listing_and_keeps_the_cursor(sqlite_store, box):
    ids = box.seed(4, seed=6)
    sync(sqlite_store, box)
    box.clock.advance(1.0)
    box.archive_contact(ids[0])
    before = cursor(sqlite_store)["archived"]
    out, listings = sync(sqlite_store, box, read_deletions=False)
    assert (out.deleted, listings) == (0, 0)
    assert not deleted_links(sqlite_store)
    assert cursor(sqlite_store)["archived"] == before  # turning it back on resumes where it was
    out, listings = sync(sqlite_store, box)
    assert (out.deleted, listings) == (1, 1)

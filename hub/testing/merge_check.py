"""The conformance kit's optional merge checks (part of :class:`hub.testing.conformance.ConformanceSuite`).

A merge inside a CRM removes one record in favour of another. A connector reports the removed
record as a deletion whose :attr:`~hub.connector.RemoteRecord.merged_into` names the record it went
into, so the hub can fold the two leads together instead of losing one. Two checks, each skipped when
it does not apply:

* a merge made in the CRM (the sandbox's optional ``remote_merge(survivor_id, loser_id)``, acting as
  a CRM user would and returning the surviving record's id) is read back that way;
* for a connector with ``can_merge``, :meth:`~hub.connector.Connector.merge` asks the CRM to merge,
  and the next read reports it the same way.

Some CRMs (HubSpot) give the merged record a new id: the check then expects both old ids reported
as merged into it. The checks read through ``Connector.read_changes``, not the sync engine, so they
judge what the connector reports, whatever the hub then does with it.
"""

from __future__ import annotations

from typing import Any

import pytest

from hub.connector import Connector
from hub.testing.kit import Kit, expect

__all__ = ["MergeChecks"]


def _read(cn: Connector, cursor: dict[str, Any] | None) -> tuple[dict[str, str | None], dict[str, Any] | None]:
    """{remote id: merged_into} of the deletions read since ``cursor``, and the cursor after them."""
    merged: dict[str, str | None] = {}
    for page in cn.read_changes(cursor):
        merged.update((r.remote_id, r.merged_into) for r in page.records if r.deleted)
        cursor = page.cursor
    return merged, cursor


class MergeChecks:
    """Mixin for :class:`~hub.testing.conformance.ConformanceSuite`: see the module docstring."""

    connector: type[Connector]

    @staticmethod
    def _merged(kit: Kit, merge: Any, what: str, hint: str) -> None:
        box = kit.box
        survivor, loser = (box.remote_create(kit.person(i, "merge")) for i in range(2))
        cn = kit.connect()
        _, cursor = _read(cn, None)
        box.clock.advance(1.0)  # a moment later: a later modified time even at one-second resolution
        before = set(map(str, box.remote_ids()))
        merge(cn, survivor, loser)
        live = set(map(str, box.remote_ids()))
        new = live - before  # a CRM that gives the merged record a new id (HubSpot)
        kept = survivor if survivor in live or len(new) != 1 else new.pop()
        expect(kept in live, what, f"the surviving record {survivor!r} (or one new merged record) there",
               f"live records: {sorted(live)[:10]}")
        merged, _ = _read(cn, cursor)
        expected = {loser: kept, **({survivor: kept} if kept != survivor else {})}
        got = {k: merged.get(k) for k in expected}
        expect(got == expected, what, f"the next read reports {expected} (remote id: merged_into)",
               f"deletions read: {merged}", hint)

    def test_a_merge_made_in_the_crm_is_read_as_the_loser_merged_into_the_survivor(self, kit: Kit) -> None:
        if not hasattr(kit.box, "remote_merge"):
            pytest.skip(f"{type(kit.box).__name__} has no remote_merge(survivor_id, loser_id)")
        self._merged(kit, lambda cn, s, loser: kit.box.remote_merge(s, loser), "a merge made in the CRM",
                     "report the merged-away record as RawRecord(deleted=True, merged_into=<survivor id>), "
                     "from the CRM's own merge marker (e.g. MasterRecordId, masterid, hs_merged_object_ids)")

    def test_connector_merge_is_read_back_as_the_loser_merged_into_the_survivor(self, kit: Kit) -> None:
        if not self.connector.can_merge:
            pytest.skip(f"{self.connector.name}: can_merge = False")
        self._merged(kit, lambda cn, s, loser: cn.merge(s, loser), "Connector.merge(survivor, loser)",
                     "call the CRM's merge with the survivor as the record that stays")

"""``POST /crm/v3/objects/contacts/merge``: two contacts become one, as HubSpot merges them.

The request is ``{"primaryObjectId", "objectIdToMerge"}`` and the answer the merged contact as a
``SimplePublicObject`` (HubSpot's Contacts v3 OpenAPI spec: ``PublicMergeInput``, 200
``SimplePublicObject``). What happens, after HubSpot's developer changelog
"Updated merge functionality for contacts and companies":

* a **new contact with a new id** is created and both records are merged into it ("a new record with
  a new ID will be created for the resulting merged record, with both records merged into the new
  one"); set ``merge_keeps_primary_id = True`` on a sandbox for the older behaviour, where the
  primary keeps its id and only the other record goes;
* its values are the primary's, with the other record's filling the properties the primary lacks
  ("the property values of the resulting merged record will use the latest property values of the
  primary record"); ``createdate`` is the older of the two;
* both old ids "point to the resulting merged record": reading, updating or deleting by an old id
  acts on the merged contact; the old records are gone from search and from the live list, and
  (the sandbox's reading) are not in the archived list either;
* the merged contact's read-only ``hs_merged_object_ids`` lists every id merged into it,
  ``;``-separated, including those of earlier merges of either record.

Refusals (the sandbox's choices of status and wording): a missing id is 400, an unknown or archived
one 404 ``OBJECT_NOT_FOUND``, and two ids naming the same contact 400 ``VALIDATION_ERROR``.
Not emulated: ``hs_additional_emails`` (the other record's e-mail is dropped), associations.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from hub.testing.sandbox import Call, Reject

from .model import _ALWAYS, DEFAULT_PROPERTIES, _Contact, _Failure, _iso

__all__ = ["MERGED_IDS", "_Merge"]

#: the contact property listing the ids merged into a contact
MERGED_IDS = "hs_merged_object_ids"
_SYSTEM = frozenset({*_ALWAYS, MERGED_IDS})


def _ids(rec: _Contact) -> set[int]:
    return {int(i) for i in rec.props.get(MERGED_IDS, "").split(";") if i.strip().isdigit()}


class _Merge:
    """Mixin for :class:`HubSpotSandbox`: the merge endpoint and its test helper."""

    #: False: a merge makes a new contact (HubSpot since the changelog above); True: the primary stays
    merge_keeps_primary_id: bool = False

    def merge_contacts(self, primary_id: str, other_id: str) -> str:
        """Merge two contacts as a HubSpot user would (or the API does); returns the merged contact's id."""
        with self.lock:
            try:
                return str(self._merge_records(primary_id, other_id, self.clock.now_ms()).id)
            except _Failure as f:
                raise ValueError(f.message) from None

    def remote_merge(self, survivor_id: str, loser_id: str) -> str:
        """The conformance kit's handle: merge ``loser_id`` into ``survivor_id``; returns the merged id."""
        return self.merge_contacts(survivor_id, loser_id)

    def _merge(self, call: Call) -> Response:
        body = call.json()
        if not isinstance(body, dict) or not body.get("primaryObjectId") or not body.get("objectIdToMerge"):
            raise Reject(400, "Invalid input JSON on line 1: primaryObjectId and objectIdToMerge are required")
        rec = self._merge_records(body["primaryObjectId"], body["objectIdToMerge"], self.clock.now_ms())
        return self.json(self._render(rec.id, rec.props, DEFAULT_PROPERTIES))

    def _merge_records(self, primary_id: Any, other_id: Any, now: int) -> _Contact:
        primary, other = self._find(primary_id), self._find(other_id)
        missing = [str(i) for i, r in ((primary_id, primary), (other_id, other)) if r is None]
        if missing:
            raise _Failure(404, "OBJECT_NOT_FOUND", f"Could not find contacts with ids {missing}")
        if primary.id == other.id:
            raise _Failure(400, "VALIDATION_ERROR", f"Cannot merge contact {primary.id} with itself")
        merged = {primary.id, other.id, *_ids(primary), *_ids(other)}
        props = {k: v for k, v in other.props.items() if k not in _SYSTEM}
        props.update((k, v) for k, v in primary.props.items() if v and k not in _SYSTEM)
        created = min(primary.created, other.created)
        losers = [other] if self.merge_keeps_primary_id else [primary, other]
        for rec in losers:
            self._archive(rec, now, listed=False)
        survivor = primary if self.merge_keeps_primary_id else None
        if survivor is not None:
            merged.discard(survivor.id)
        clean = {**props, "createdate": _iso(created), MERGED_IDS: ";".join(map(str, sorted(merged)))}
        survivor = self._apply(survivor, clean, now)
        survivor.created = created
        for rec in losers:
            rec.merged_into = survivor.id
        return survivor

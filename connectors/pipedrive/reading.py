"""Incremental reads: four phases, one composite cursor, one canonical record per lead.

The cursor is ``{"leads": …, "archived": …, "deals": …, "persons": …}``, each an inclusive
:class:`hub.connector.TimestampCursor` (``>=`` plus the ids already taken at its timestamp), stored
after every page with the page's records.

1. **leads** — ``GET /v1/leads?updated_since=…&sort=update_time ASC`` (milliseconds). v1 pages by
   offset, and an offset shifts when a record changes mid-read; so each page restarts the query at
   the newest timestamp read so far (the seen-set skips what was taken), and only a run of records
   sharing one timestamp is paged by offset.
2. **archived** — ``GET /v1/leads/archived`` has no ``updated_since``: it is read newest first
   (``sort=update_time DESC``) down to the cursor, then handed on oldest first, so a crash mid-way
   never moves the cursor past a record not yet stored.
3. **deals** — ``GET /api/v2/deals?updated_since=…&include_fields=source_lead_id`` with v2's keyset
   cursor (a record changed mid-read moves behind it, never shifts the pages). Pipedrive deletes a
   lead when it converts it; the deal carries on, and ``source_lead_id`` names the lead, so the deal
   is emitted under the lead's id: the hub's link (and the hub id copied to the deal's custom field
   at conversion) follows it to won or lost. Deleted deals are emitted as deletions.
4. **persons** — a person's edit (name, email, phone) changes the canonical lead without touching the
   lead. Each person changed since the cursor is looked up (``GET /v1/leads?person_id=``, else its
   converted deals; an archived lead's person is not followed), unless this run already read that
   very version. The first run starts this
   cursor at the newest person's ``update_time``, probed before phase 1: phase 1 reads every person
   it needs, so only persons changed after the probe are looked up.

Seen-sets are keyed by record *and version* (a digest of the record), because v2 stamps whole
seconds: an edit in the cursor's own second is a new version, not a record already taken.
Each lead or deal is emitted with its person and organization (fetched by ``ids=``, 100 per call).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from hub.connector import RawPage, RawRecord, TimestampCursor, epoch_ms

from .api import PipedriveApi, version

__all__ = ["PHASES", "Reader", "iso_ms", "iso_s", "ms_of"]

PHASES = ("leads", "archived", "deals", "persons")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_of(stamp: str) -> int:
    """``2020-10-14T11:30:36.551Z`` or ``2021-01-01T00:00:00Z`` → epoch milliseconds (exact)."""
    return epoch_ms(stamp)


def iso_ms(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def iso_s(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _primary(items: list[dict[str, Any]] | None) -> str | None:
    items = items or []
    return next((x.get("value") for x in items if x.get("primary")), items[0].get("value") if items else None)


class Reader:
    """Turns Pipedrive's leads, deals, persons and organizations into pages of flattened records."""

    def __init__(self, api: PipedriveApi, *, page_size: int, hub_key: str, person_hub_key: str, lost_key: str,
                 status_labels: set[str]):
        self.api, self.size = api, page_size
        self.hub_key, self.person_hub_key, self.lost_key = hub_key, person_hub_key, lost_key
        self.status_labels = status_labels

    def pages(self, cursor: dict[str, Any] | None) -> Iterator[RawPage]:
        tcs = {p: TimestampCursor((cursor or {}).get(p)) for p in PHASES}
        self.api.fetched.clear()
        self._fresh: set[str] = set()
        probe = self._newest_person() if tcs["persons"].since is None else None
        yield from self._leads(tcs)
        yield from self._archived(tcs)
        yield from self._deals(tcs)
        yield from self._persons(tcs, probe)

    @staticmethod
    def _cursor(tcs: dict[str, TimestampCursor]) -> dict[str, Any]:
        return {p: tc.to_dict() for p, tc in tcs.items()}

    # -- the phases -------------------------------------------------------------------------------
    def _leads(self, tcs: dict[str, TimestampCursor]) -> Iterator[RawPage]:
        tc = tcs["leads"]
        since, start = tc.since, 0
        while True:
            params = {"limit": self.size, "start": start, "sort": "update_time ASC",
                      "updated_since": None if since is None else iso_ms(since)}
            rows, more = self.api.v1_list("/leads", params)
            taken = []
            for row in rows:
                ms = ms_of(row["update_time"])
                key = version(row)
                if tc.admit(key, ms):
                    tc.advance(key, ms)
                    taken.append(row)
            yield RawPage(self._lead_records(taken), self._cursor(tcs))
            if not more or not rows:
                return
            last = ms_of(rows[-1]["update_time"])
            since, start = (last, 0) if since is None or last > since else (since, start + len(rows))

    def _archived(self, tcs: dict[str, TimestampCursor]) -> Iterator[RawPage]:
        tc = tcs["archived"]
        found: dict[str, tuple[int, dict[str, Any]]] = {}
        start = 0
        while True:
            rows, more = self.api.v1_list("/leads/archived", {"limit": self.size, "start": start,
                                                              "sort": "update_time DESC"})
            older = False
            for row in rows:
                ms = ms_of(row["update_time"])
                if tc.since is not None and ms < tc.since:
                    older = True
                    break
                if tc.admit(version(row), ms) and (row["id"] not in found or found[row["id"]][0] < ms):
                    found[row["id"]] = (ms, row)
            if older or not more or not rows:
                break
            start += len(rows)
        ordered = sorted(found.values(), key=lambda f: (f[0], f[1]["id"]))
        for begin in range(0, max(len(ordered), 1), self.size):
            part = ordered[begin:begin + self.size]
            for ms, row in part:
                tc.advance(version(row), ms)
            yield RawPage(self._lead_records([row for _, row in part]), self._cursor(tcs))

    def _deals(self, tcs: dict[str, TimestampCursor]) -> Iterator[RawPage]:
        tc = tcs["deals"]
        params = {"limit": self.size, "sort_by": "update_time", "sort_direction": "asc",
                  "include_fields": "source_lead_id", "status": "open,won,lost,deleted",
                  "updated_since": None if tc.since is None else iso_s(tc.since)}
        while True:
            rows, nxt = self.api.v2_list("/deals", params)
            taken = []
            for row in rows:
                ms = ms_of(row["update_time"])
                key = version(row)
                if tc.admit(key, ms):
                    tc.advance(key, ms)
                    if row.get("source_lead_id"):
                        taken.append(row)
            yield RawPage(self._deal_records(taken), self._cursor(tcs))
            if not nxt:
                return
            params["cursor"] = nxt

    def _persons(self, tcs: dict[str, TimestampCursor], probe: int | None) -> Iterator[RawPage]:
        tc = tcs["persons"]
        first = tc.since is None
        if first and probe is None:  # no persons at all yet
            yield RawPage([], self._cursor(tcs))
            return
        if first:
            tc.since = probe
        params = {"limit": self.size, "sort_by": "update_time", "sort_direction": "asc",
                  "updated_since": iso_s(tc.since)}
        while True:
            rows, nxt = self.api.v2_list("/persons", params)
            records: list[RawRecord] = []
            for person in rows:
                ms, key = ms_of(person["update_time"]), version(person)
                if not tc.admit(key, ms):
                    continue
                tc.advance(key, ms)
                if self.api.fetched.get(person["id"]) == key or first and ms <= (probe or 0):
                    continue  # read this very version already, or (first run) older than phase 1's reads
                self.api.persons.put(person["id"], person)
                records += self._for_person(person)
            yield RawPage(records, self._cursor(tcs))
            if not nxt:
                return
            params["cursor"] = nxt

    def _newest_person(self) -> int | None:
        rows, _ = self.api.v2_list("/persons", {"limit": 1, "sort_by": "update_time", "sort_direction": "desc"})
        return ms_of(rows[0]["update_time"]) if rows else None

    def _for_person(self, person: dict[str, Any]) -> list[RawRecord]:
        """The records of a person changed on its own: its open leads, else its converted deals."""
        self.api.fetched[person["id"]] = version(person)
        known = {person["id"]: person}
        leads, _ = self.api.v1_list("/leads", {"person_id": person["id"], "limit": 500})
        if leads:
            return self._lead_records(leads, known)
        deals, _ = self.api.v2_list("/deals", {"person_id": person["id"], "include_fields": "source_lead_id",
                                               "limit": 500})
        return self._deal_records([d for d in deals if d.get("source_lead_id")], known)

    # -- records ------------------------------------------------------------------------------------
    def _context(self, rows: list[dict[str, Any]], org_key: str,
                 known: dict[int, Any] | None = None) -> tuple[dict[int, Any], dict[int, Any]]:
        known = known or {}
        persons = {**known, **self.api.persons_by_id(r.get("person_id") for r in rows
                                                      if r.get("person_id") not in known)}
        orgs = self.api.orgs_by_id([r.get(org_key) for r in rows] + [p.get("org_id") for p in persons.values()])
        return persons, orgs

    def _common(self, rec: dict[str, Any], person: dict[str, Any] | None, org: dict[str, Any] | None,
                custom: dict[str, Any]) -> dict[str, Any]:
        props: dict[str, Any] = {k: v for k, v in custom.items() if v is not None}
        props["owner_id"] = None if rec.get("owner_id") is None else str(rec["owner_id"])
        props["expected_close_date"] = rec.get("expected_close_date")
        if person:
            props.update({"person.first_name": person.get("first_name") or None,
                          "person.last_name": person.get("last_name") or None,
                          "person.email": _primary(person.get("emails")),
                          "person.phone": _primary(person.get("phones"))})
            props.update({f"person.{k}": v for k, v in (person.get("custom_fields") or {}).items() if v is not None})
        if org:
            props["org.name"] = org.get("name")
            props.update({f"org.{k}": v for k, v in (org.get("custom_fields") or {}).items() if v is not None})
        return props

    def _lead_records(self, rows: list[dict[str, Any]], known: dict[int, Any] | None = None) -> list[RawRecord]:
        if not rows:
            return []
        if "labels" not in self._fresh:
            self.api.labels(refresh=True)
            self._fresh.add("labels")
        labels = self.api.labels()
        persons, orgs = self._context(rows, "organization_id", known)
        out = []
        for lead in rows:
            person = persons.get(lead.get("person_id"))
            org = orgs.get(lead.get("organization_id") or (person or {}).get("org_id"))
            names = [labels[i] for i in lead.get("label_ids") or [] if i in labels]
            value = lead.get("value") or {}
            custom = {k: v for k, v in lead.items() if len(k) == 40 and all(c in "0123456789abcdef" for c in k)}
            props = self._common(lead, person, org, custom)
            props.update(lead_label=next((n for n in names if n in self.status_labels), names[0] if names else ""),
                         is_archived="true" if lead.get("is_archived") else "", deal_status="", deal_stage="",
                         value=value.get("amount"), currency=value.get("currency"),
                         lost_reason=custom.get(self.lost_key), probability=None)
            self.api.leads.put(lead["id"], {"person_id": lead.get("person_id"), "org_id": lead.get("organization_id"),
                                            "deal_id": None, "hub_id": custom.get(self.hub_key),
                                            "currency": value.get("currency"), "archived": lead.get("is_archived")})
            out.append(RawRecord(lead["id"], datetime.fromtimestamp(ms_of(lead["update_time"]) / 1000, UTC),
                                 props))
        return out

    def _deal_records(self, rows: list[dict[str, Any]], known: dict[int, Any] | None = None) -> list[RawRecord]:
        if not rows:
            return []
        if "stages" not in self._fresh:
            self.api.stages(refresh=True)
            self._fresh.add("stages")
        stages = self.api.stages()
        persons, orgs = self._context([d for d in rows if not d.get("is_deleted")], "org_id", known)
        out = []
        for deal in rows:
            custom = deal.get("custom_fields") or {}
            modified = datetime.fromtimestamp(ms_of(deal["update_time"]) / 1000, UTC)
            if deal.get("is_deleted"):
                out.append(RawRecord(deal["source_lead_id"], modified, {self.hub_key: custom.get(self.hub_key)},
                                     deleted=True))
                continue
            person = persons.get(deal.get("person_id"))
            org = orgs.get(deal.get("org_id") or (person or {}).get("org_id"))
            props = self._common(deal, person, org, custom)
            probability = deal.get("probability")
            props.update(lead_label="", is_archived="", deal_status=deal.get("status") or "",
                         deal_stage=stages.get(deal.get("stage_id"), ""), value=deal.get("value") or None,
                         currency=deal.get("currency"), probability=None if probability is None else probability / 100,
                         lost_reason=deal.get("lost_reason") or custom.get(self.lost_key))
            self.api.leads.put(deal["source_lead_id"], {
                "person_id": deal.get("person_id"), "org_id": deal.get("org_id"), "deal_id": deal["id"],
                "hub_id": custom.get(self.hub_key), "currency": deal.get("currency"), "status": deal.get("status")})
            out.append(RawRecord(deal["source_lead_id"], modified, props))
        return out

"""The connector contract's own machinery: cursors, maps, batching and bad-batch isolation."""

from __future__ import annotations

from hub.connector import (
    Connector,
    ConnectorSettings,
    Limits,
    RemoteWrite,
    StatusMap,
    TimestampCursor,
    ValueMap,
    WriteOp,
    WriteResult,
)
from hub.errors import ConnectorError


def test_cursor_takes_ties_once_and_resumes_at_the_boundary():
    c = TimestampCursor()
    for rid in ("a", "b"):
        assert c.admit(rid, 1000)
        c.advance(rid, 1000)
    resumed = TimestampCursor(c.to_dict())
    assert not resumed.admit("a", 1000) and not resumed.admit("b", 1000)
    assert resumed.admit("c", 1000) and resumed.admit("a", 1001)


def test_cursor_with_versions_sees_an_edit_within_the_same_second():
    c = TimestampCursor()
    c.advance("a", 5000, version="v1")
    again = TimestampCursor(c.to_dict())
    assert not again.admit("a", 5000, version="v1")
    assert again.admit("a", 5000, version="v2")


def test_cursor_admits_an_overlap_re_read_without_moving_back():
    c = TimestampCursor({"since": 9000, "seen": ["x"]})
    assert c.admit("late", 8000)  # a record the search index showed late
    c.advance("late", 8000)
    assert c.since == 9000 and c.seen == {"x"}


def test_value_map_round_trips_and_passes_unknown_values():
    vm = ValueMap({"ORGANIC_SEARCH": "organic", "PAID_SEARCH": "paid"}, write={"partner": "OTHER"})
    assert vm.to_canonical("PAID_SEARCH") == "paid" and vm.to_remote("paid") == "PAID_SEARCH"
    assert vm.to_remote("partner") == "OTHER" and vm.to_canonical("NEW") == "NEW"


def test_status_map_prefers_the_most_specific_entry():
    sm = StatusMap({"SAL": {"stage": "sql", "sub": "OPEN"}, "SQL": {"stage": "sql", "sub": "WORKING"}},
                   read=[({"stage": "sql"}, "SAL")])
    assert sm.to_canonical({"stage": "sql", "sub": "WORKING"}) == "SQL"
    assert sm.to_canonical({"stage": "sql", "sub": "ODD"}) == "SAL"
    assert sm.to_canonical({"stage": "nope"}) is None


class Picky(Connector):
    """Refuses any whole batch containing a record whose e-mail has no '@'."""

    name = "picky"
    hub_id_field = "hid"
    field_map = {"email": "mail", "value": "amount"}
    status_map = StatusMap({"Lead": {"stage": "new"}})
    limits = Limits(page_size=10, batch_size=8)

    calls: list[int]

    def write_batch(self, batch: list[RemoteWrite]) -> list[WriteResult]:
        self.calls.append(len(batch))
        bad = [w for w in batch if "@" not in (w.props.get("mail") or "")]
        if bad:
            raise ConnectorError("HTTP 400", status=400, vendor_message=f"invalid mail {bad[0].props['mail']}")
        return [WriteResult(w.hub_id, True, f"r-{w.hub_id}") for w in batch]


def test_a_refused_batch_is_split_until_the_bad_record_stands_alone():
    c = Picky(ConnectorSettings(base_url="http://x"))
    c.calls = []
    ops = [WriteOp(f"h{i}", {"email": f"p{i}@x.io"}) for i in range(16)]
    ops[5] = WriteOp("h5", {"email": "broken"})
    results = {r.hub_id: r for r in c.write(ops)}
    assert [r.hub_id for r in results.values() if not r.ok] == ["h5"]
    assert results["h5"].error == "invalid mail broken"
    assert sum(r.ok for r in results.values()) == 15
    assert c.calls[:1] == [8] and len(c.calls) <= 2 + 2 * 3  # two batches, log2(8) splits for the bad one


def test_decode_reports_unreadable_values_and_keeps_the_rest():
    c = Picky(ConnectorSettings(base_url="http://x"))
    fields, problems = c.decode({"mail": "a@b.io", "amount": "lots", "stage": "new"})
    assert fields == {"email": "a@b.io", "status": "Lead"}
    assert problems == ["field 'amount': cannot read 'lots' as value"]


def test_epoch_ms_reads_every_vendor_timestamp_form_exactly():
    from datetime import datetime, timezone

    from hub.connector import epoch_ms

    assert epoch_ms("1700000000123") == 1_700_000_000_123  # HubSpot epoch-ms strings
    assert (epoch_ms("2026-11-01T09:00:00.001Z") == epoch_ms("2026-11-01T09:00:00.001+0000")  # Salesforce
            == epoch_ms("2026-11-01T09:00:00.001+00:00") == epoch_ms("2026-11-01T09:00:00.001"))  # naive = UTC
    assert epoch_ms("2026-11-01T10:00:00.001+01:00") == epoch_ms("2026-11-01T09:00:00.001Z")
    assert epoch_ms(datetime(1970, 1, 1, 0, 0, 1, 999000, tzinfo=timezone.utc)) == 1999

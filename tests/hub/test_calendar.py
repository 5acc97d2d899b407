"""Business-time arithmetic at its edges: holidays, weekends, evenings, DST, regions, days off."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from hub.calendar import BusinessClock, WallClock
from hub.process import Calendar, DateRange
from hub.process import parse_duration as d

BERLIN, LONDON, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("Europe/London"), ZoneInfo("America/New_York")
DE = Calendar(timezone="Europe/Berlin", country="DE")
UK = Calendar(timezone="Europe/London", country="GB", subdivision="ENG")


def at(y, m, day, h=0, mi=0, tz=BERLIN):
    return datetime(y, m, day, h, mi, tzinfo=tz)


def test_inside_one_working_day():
    assert BusinessClock(DE).add(at(2026, 3, 4, 10), d("4h")) == at(2026, 3, 4, 14)


def test_deadline_at_closing_is_the_same_day_not_the_next_opening():
    clock = BusinessClock(DE)
    assert clock.add(at(2026, 3, 4, 16), d("1h")) == at(2026, 3, 4, 17)
    assert clock.add(at(2026, 3, 4, 16), d("61m")) == at(2026, 3, 5, 9, 1)


def test_friday_evening_start_counts_from_monday_morning():
    clock = BusinessClock(DE)
    friday_evening = at(2026, 3, 6, 18, 30)
    assert clock.add(friday_evening, d("1h")) == at(2026, 3, 9, 10)
    assert clock.add(friday_evening, d("1d")) == at(2026, 3, 9, 17)  # one full working day: Monday's close
    assert clock.add(friday_evening, d("8h")) == clock.add(friday_evening, d("1d"))


def test_a_weekend_start_and_an_early_morning_start():
    clock = BusinessClock(DE)
    assert clock.add(at(2026, 3, 7, 12), d("2h")) == at(2026, 3, 9, 11)  # Saturday noon
    assert clock.add(at(2026, 3, 9, 6), d("2h")) == at(2026, 3, 9, 11)  # Monday 06:00


def test_easter_holidays_inside_an_sla_window_are_skipped():
    clock = BusinessClock(DE)  # Good Friday 2026-04-03 and Easter Monday 2026-04-06
    assert clock.add(at(2026, 4, 2, 15), d("4h")) == at(2026, 4, 7, 11)
    assert clock.add(at(2026, 3, 30, 9), d("5d")) == at(2026, 4, 7, 17)
    assert clock.elapsed(at(2026, 4, 2, 17), at(2026, 4, 7, 9)) == timedelta(0)


def test_regional_holidays_depend_on_the_subdivision():
    bavaria = BusinessClock(Calendar(timezone="Europe/Berlin", country="DE", subdivision="BY"))
    berlin = BusinessClock(Calendar(timezone="Europe/Berlin", country="DE", subdivision="BE"))
    epiphany_eve = at(2026, 1, 5, 16)  # 6 January is a holiday in Bavaria, not in Berlin
    assert berlin.add(epiphany_eve, d("2h")) == at(2026, 1, 6, 10)
    assert bavaria.add(epiphany_eve, d("2h")) == at(2026, 1, 7, 10)


def test_company_closed_days_and_a_persons_days_off_stop_the_clock():
    closed = BusinessClock(Calendar(timezone="Europe/Berlin", closed=[date(2026, 3, 10)]))
    assert closed.add(at(2026, 3, 9, 16), d("2h")) == at(2026, 3, 11, 10)
    away = BusinessClock(DE, days_off=[DateRange.model_validate({"from": "2026-03-10", "to": "2026-03-12"})])
    assert away.add(at(2026, 3, 9, 16), d("2h")) == at(2026, 3, 13, 10)


def test_dst_change_keeps_local_working_hours():
    clock = BusinessClock(DE)  # clocks go forward on Sunday 2026-03-29
    due = clock.add(at(2026, 3, 27, 16), d("2h"))
    assert due == at(2026, 3, 30, 10)
    assert due.utcoffset() == timedelta(0) and due.hour == 8  # 10:00 CEST is 08:00 UTC (it was 09:00 UTC on Friday)
    assert clock.elapsed(at(2026, 3, 27, 9), at(2026, 3, 30, 9)) == timedelta(hours=8)


def test_a_lead_in_another_region_uses_that_regions_clock():
    uk, de = BusinessClock(UK), BusinessClock(DE)
    start = datetime(2026, 3, 4, 15, 30, tzinfo=timezone.utc)  # 16:30 Berlin, 15:30 London
    assert de.add(start, d("1h")) == at(2026, 3, 5, 9, 30)
    assert uk.add(start, d("1h")) == at(2026, 3, 4, 16, 30, tz=LONDON)
    boxing_day = BusinessClock(UK).add(at(2025, 12, 24, 16, tz=LONDON), d("2h"))
    assert boxing_day == at(2025, 12, 29, 10, tz=LONDON)  # 25 and 26 December, then the weekend


def test_custom_working_days_and_hours():
    gulf = BusinessClock(Calendar(timezone="Asia/Dubai", working_days=["mon", "tue", "wed", "thu", "fri"],
                                  working_hours="08:00-12:00"))
    dubai = ZoneInfo("Asia/Dubai")
    assert gulf.add(datetime(2026, 3, 4, 11, tzinfo=dubai), d("2h")) == datetime(2026, 3, 5, 9, tzinfo=dubai)
    assert gulf.add(datetime(2026, 3, 4, 8, tzinfo=dubai), d("2d")) == datetime(2026, 3, 5, 12, tzinfo=dubai)


def test_elapsed_is_working_time_and_signed():
    clock = BusinessClock(DE)
    assert clock.elapsed(at(2026, 3, 6, 15), at(2026, 3, 9, 11)) == timedelta(hours=4)
    assert clock.elapsed(at(2026, 3, 9, 11), at(2026, 3, 6, 15)) == timedelta(hours=-4)
    assert clock.elapsed(at(2026, 3, 7, 10), at(2026, 3, 8, 10)) == timedelta(0)


def test_far_apart_instants_across_years():
    clock = BusinessClock(DE)
    assert clock.add(at(2026, 12, 30, 10), d("5d")) == at(2027, 1, 7, 10)  # 31 Dec works, 1 Jan does not
    span = clock.elapsed(at(2024, 1, 2, 9), at(2027, 1, 4, 9))
    assert span.total_seconds() / (8 * 3600) == pytest.approx(sum(
        1 for n in range((date(2027, 1, 4) - date(2024, 1, 2)).days)
        if DE.is_working_day(date(2024, 1, 2) + timedelta(days=n))))


def test_is_open_and_next_working_day():
    clock = BusinessClock(DE)
    assert clock.is_open(at(2026, 3, 4, 9)) and not clock.is_open(at(2026, 3, 4, 17))
    assert not clock.is_open(at(2026, 4, 3, 11))  # Good Friday
    assert clock.next_working_day(date(2026, 4, 3)) == date(2026, 4, 7)


def test_wall_clock_counts_every_hour():
    assert WallClock().add(at(2026, 3, 6, 18), d("1d")) == at(2026, 3, 7, 18)
    assert WallClock().elapsed(at(2026, 3, 6, 18), at(2026, 3, 7, 18)) == timedelta(days=1)

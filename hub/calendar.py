"""Business-time arithmetic: add working time to an instant, measure working time between two.

A :class:`BusinessClock` wraps one :class:`hub.process.Calendar` (time zone, working days and
hours, public holidays, closed days) plus, optionally, a person's days off. Working time is
counted on the local clock inside working hours; every working day has the same length, so
``N`` working days are ``N`` times that length (``hub.process``: with ``business_hours: true``,
``d`` counts working days and ``h``/``m`` working time).

Deadlines are the *earliest* instant at which the working time is reached: one working hour
from 16:00 on a Friday (hours 09:00-17:00) is 17:00 that Friday, two are 10:00 on Monday, and
one working day from Friday 18:00 is Monday 17:00, not Tuesday 09:00. Instants are aware
datetimes; results are UTC.

The clock numbers working days once (a dict and a list, extended a year at a time), so
``add`` and ``elapsed`` cost a few dictionary look-ups however far apart the instants are.
:class:`WallClock` is the same interface over plain elapsed time, for statuses without
business hours.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone

from hub.process import Calendar, DateRange, Duration

__all__ = ["BusinessClock", "WallClock", "Clock"]

_DAY = timedelta(days=1)


class WallClock:
    """Elapsed time as the wall clock tells it (no calendar)."""

    business = False

    def add(self, start: datetime, span: Duration | timedelta) -> datetime:
        delta = span.delta if isinstance(span, Duration) else span
        return (start + delta).astimezone(timezone.utc)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        return end - start

    def __repr__(self) -> str:
        return "WallClock()"


class BusinessClock:
    """Working-time arithmetic for one calendar and, optionally, one person's days off."""

    business = True

    def __init__(self, calendar: Calendar, *, days_off: Iterable[DateRange] = ()):
        self.calendar = calendar
        self.tz = calendar.tz
        opens, closes = calendar.hours
        self._open = opens.hour * 3600 + opens.minute * 60
        self.day_seconds = closes.hour * 3600 + closes.minute * 60 - self._open
        self._opens_at = opens
        self._off = tuple(days_off)
        self._first: date | None = None  # first day numbered
        self._last: date | None = None  # last day numbered
        self._before: dict[date, int] = {}  # day → working days strictly before it (since _first)
        self._days: list[date] = []  # working days in order: _days[n] is working day number n

    def __repr__(self) -> str:
        return f"BusinessClock({self.calendar.timezone}, {self.calendar.working_hours})"

    # -- days ---------------------------------------------------------------------------
    def is_working_day(self, day: date) -> bool:
        """A working weekday that is no public holiday, closed day or day off."""
        return self.calendar.is_working_day(day) and not any(day in span for span in self._off)

    def _number(self, first: date, last: date) -> None:
        """(Re)number working days so that ``first`` … ``last`` are covered, a year at a time."""
        if self._first is not None and first >= self._first and last <= self._last:
            return
        if self._first is None or first < self._first:
            start = date(first.year - 1, 1, 1)
            end = max(date(last.year + 1, 12, 31), self._last or start)
            self._before, self._days, count, day = {}, [], 0, start
        else:  # extend forward only: existing numbers stay valid
            start, end, count = self._first, date(last.year + 1, 12, 31), len(self._days)
            day = self._last + _DAY
        while day <= end:
            self._before[day] = count
            if self.is_working_day(day):
                self._days.append(day)
                count += 1
            day += _DAY
        self._first, self._last = start, end

    # -- positions: working seconds since the first numbered day --------------------------
    def _position(self, instant: datetime) -> float:
        local = instant.astimezone(self.tz)
        day = local.date()
        self._number(day, day)
        before = self._before[day]
        if not self.is_working_day(day):
            return float(before * self.day_seconds)
        seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        within = min(max(seconds - self._open, 0.0), float(self.day_seconds))
        return before * self.day_seconds + within

    def _instant(self, position: float) -> datetime:
        number, rest = divmod(position, self.day_seconds)
        number = int(number)
        if rest == 0 and number > 0:  # the earliest instant with this much work done: the close before
            number, rest = number - 1, self.day_seconds
        while number >= len(self._days):
            self._number(self._last, self._last + timedelta(days=366))
        day = self._days[number]
        local = datetime.combine(day, self._opens_at) + timedelta(seconds=rest)
        return local.replace(tzinfo=self.tz).astimezone(timezone.utc)

    # -- the interface --------------------------------------------------------------------
    def to_seconds(self, span: Duration | timedelta) -> float:
        """Working seconds in ``span``: ``d`` counts working days, ``h``/``m`` working time."""
        if isinstance(span, timedelta):
            return span.total_seconds()
        if span.unit == "d":
            return float(span.amount * self.day_seconds)
        return span.delta.total_seconds()

    def add(self, start: datetime, span: Duration | timedelta) -> datetime:
        """The earliest instant at which ``span`` of working time has passed since ``start``."""
        return self._instant(self._position(start) + self.to_seconds(span))

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Working time between two instants (negative when ``end`` is before ``start``)."""
        a, b = self._position(start), self._position(end)
        return timedelta(seconds=b - a)

    def is_open(self, instant: datetime) -> bool:
        """Is ``instant`` inside working hours on a working day?"""
        local = instant.astimezone(self.tz)
        if not self.is_working_day(local.date()):
            return False
        seconds = local.hour * 3600 + local.minute * 60 + local.second
        return self._open <= seconds < self._open + self.day_seconds

    def next_working_day(self, day: date) -> date:
        """``day`` itself if it is a working day, else the next one."""
        self._number(day, day)
        index = bisect_left(self._days, day)
        while index >= len(self._days):
            self._number(self._last, self._last + timedelta(days=366))
        return self._days[index]


Clock = BusinessClock | WallClock

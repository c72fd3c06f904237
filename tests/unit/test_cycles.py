"""Cycle math (portal/billing/cycles.py), property-tested: random anchors (month ends and Feb 29 among
them), units, intervals and timezones.

- Periods are contiguous (period n ends where n + 1 starts) and never overlap.
- Each period starts on the anchor's day, clamped to the month's length (months and years).
- No drift: period n's start depends only on the anchor and n (a short month on the way changes
  nothing), checked against a direct computation that walks the calendar month by month.
- ``index_on`` finds the period of any day: its first day, its last day, anything between.
- ``local_date`` of moments around DST changes (Lisbon, New York, Lord Howe's half hour, Chatham's
  :45 offset) never goes back, never skips a date, and so never moves a period boundary.
- ``share_left`` and ``prorate`` stay in bounds and are exact (one half-up rounding).
"""
from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from portal.billing import cycles
from tests.support.profiles import examples

# Anchors between 1950 and 2150, weighted towards the days that clamp: the 29th, 30th, 31st, Feb 29.
month_ends = st.builds(
    lambda year, month, back: date(year, month, calendar.monthrange(year, month)[1]) - timedelta(days=back),
    st.integers(1950, 2150), st.integers(1, 12), st.integers(0, 3))
leap_days = st.sampled_from([y for y in range(1952, 2150, 4) if calendar.isleap(y)]).map(lambda y: date(y, 2, 29))
anchors = st.one_of(st.dates(date(1950, 1, 1), date(2150, 12, 31)), month_ends, leap_days)
units = st.sampled_from(cycles.UNITS)
# Every interval a plan may have, weighted towards the small ones people use.
cycle_specs = units.flatmap(lambda unit: st.tuples(st.just(unit), st.one_of(
    st.integers(1, 3), st.integers(1, cycles.MAX_INTERVAL[unit]))))
indices = st.integers(-40, 40)

DST_ZONES = ["Europe/Lisbon", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "Europe/London",
             "America/Santiago", "Asia/Tehran", "America/St_Johns", "Africa/Casablanca", "Australia/Sydney"]
OTHER_ZONES = ["UTC", "Asia/Kolkata", "Asia/Kathmandu", "Pacific/Kiritimati", "Pacific/Pago_Pago",
               "Asia/Tokyo", "America/Sao_Paulo"]


def months_later(anchor: date, months: int) -> date:
    """The direct computation: walk the calendar ``months`` months from the anchor's month, one month at
    a time, then put the anchor's day on it, clamped to that month's length."""
    first = date(anchor.year, anchor.month, 1)
    step = 1 if months >= 0 else -1
    for _ in range(abs(months)):
        if step == 1:
            first = (first + timedelta(days=31)).replace(day=1)
        else:
            first = (first - timedelta(days=1)).replace(day=1)
    return first.replace(day=min(anchor.day, calendar.monthrange(first.year, first.month)[1]))


def direct_start(anchor: date, unit: str, interval: int, n: int) -> date:
    if unit == "day":
        return date.fromordinal(anchor.toordinal() + n * interval)
    if unit == "week":
        return date.fromordinal(anchor.toordinal() + 7 * n * interval)
    return months_later(anchor, n * interval * (12 if unit == "year" else 1))


def fits(anchor: date, unit: str, interval: int, n: int) -> bool:
    """Whether periods n - 1 … n + 1 stay inside the dates Python has."""
    days = {"day": 1, "week": 7, "month": 31, "year": 366}[unit] * interval * (abs(n) + 2)
    return date(1, 1, 1) + timedelta(days=days) < anchor < date(9999, 12, 31) - timedelta(days=days)


# Periods -----------------------------------------------------------------------------------------

@given(anchors, cycle_specs, indices)
@example(date(2027, 1, 31), ("month", 1), 1)
@example(date(2028, 2, 29), ("year", 1), 1)
@example(date(2027, 8, 31), ("month", 6), 1)
def test_periods_are_contiguous_and_never_overlap(anchor, spec, n):
    unit, interval = spec
    assume(fits(anchor, unit, interval, n))
    before, this, after = (cycles.period(anchor, unit, interval, k) for k in (n - 1, n, n + 1))
    assert before.end == this.start and this.end == after.start
    assert before.start < this.start < this.end < after.end
    assert this.index == n and this.days == (this.end - this.start).days >= 1
    assert this.last_day == this.end - timedelta(days=1) and this.last_day < after.start
    assert cycles.periods(anchor, unit, interval, n - 1, 3) == [before, this, after]


@given(anchors, cycle_specs, indices)
@example(date(2027, 1, 31), ("month", 1), 1)   # Feb 28
@example(date(2027, 1, 31), ("month", 1), 2)   # back to Mar 31
@example(date(2028, 1, 30), ("month", 1), 1)   # Feb 29 in a leap year
@example(date(2028, 2, 29), ("year", 1), 1)    # Feb 28
@example(date(2028, 2, 29), ("year", 1), 4)    # Feb 29 again
@example(date(2027, 3, 31), ("month", 1), -1)  # before the anchor: Feb 28
def test_each_period_starts_on_the_anchor_day_clamped_and_never_drifts(anchor, spec, n):
    unit, interval = spec
    assume(fits(anchor, unit, interval, n))
    first = cycles.start(anchor, unit, interval, n)
    assert first == direct_start(anchor, unit, interval, n)
    assert cycles.start(anchor, unit, interval, 0) == anchor
    if unit in ("month", "year"):
        assert first.day == min(anchor.day, calendar.monthrange(first.year, first.month)[1])
        step = interval * (12 if unit == "year" else 1)
        assert (first.year * 12 + first.month) - (anchor.year * 12 + anchor.month) == n * step
        if unit == "year":
            assert first.month == anchor.month
    else:
        assert (first - anchor).days == n * interval * (7 if unit == "week" else 1)


@given(st.integers(1950, 2150), st.integers(29, 31), st.integers(1, 12), st.integers(0, 36))
def test_a_month_end_anchor_clamps_in_a_short_month_then_returns(year, day, month, n):
    """Jan 31 → Feb 28 (29) → Mar 31 → Apr 30 → May 31: after a short month the 31st comes back."""
    assume(day <= calendar.monthrange(year, month)[1])
    anchor = date(year, month, day)
    starts = [cycles.start(anchor, "month", 1, k) for k in range(n + 1)]
    for first in starts:
        length = calendar.monthrange(first.year, first.month)[1]
        assert first.day == min(day, length)
        if length >= day:
            assert first.day == day, "drifted after a short month"
    assert starts[-1] == cycles.start(anchor, "month", 1, n), "each start comes from the anchor alone"


@given(anchors, cycle_specs, indices, st.data())
def test_index_on_finds_the_period_of_any_day(anchor, spec, n, data):
    unit, interval = spec
    assume(fits(anchor, unit, interval, n))
    p = cycles.period(anchor, unit, interval, n)
    assert cycles.index_on(anchor, unit, interval, p.start) == n
    assert cycles.index_on(anchor, unit, interval, p.last_day) == n
    assert cycles.index_on(anchor, unit, interval, p.end) == n + 1
    assert cycles.index_on(anchor, unit, interval, p.start - timedelta(days=1)) == n - 1
    inside = p.start + timedelta(days=data.draw(st.integers(0, p.days - 1)))
    assert cycles.index_on(anchor, unit, interval, inside) == n


@given(anchors, cycle_specs, st.integers(0, 40))
def test_the_label_names_the_first_and_last_day(anchor, spec, n):
    unit, interval = spec
    assume(fits(anchor, unit, interval, n))
    p = cycles.period(anchor, unit, interval, n)
    label = p.label()
    assert f"{p.last_day.day} {p.last_day:%b %Y}" in label
    assert label.startswith(f"{p.start.day} {p.start:%b}")
    assert (" – " in label) == (p.days > 1)


def test_labels_read_as_people_write_them():
    assert cycles.period(date(2027, 7, 1), "month", 1, 0).label() == "1 Jul – 31 Jul 2027"
    assert cycles.period(date(2026, 12, 15), "month", 1, 0).label() == "15 Dec 2026 – 14 Jan 2027"
    assert cycles.period(date(2027, 7, 3), "day", 1, 0).label() == "3 Jul 2027"


@pytest.mark.parametrize("unit, interval", [("fortnight", 1), ("month", 0), ("month", -1), ("month", 61),
                                            ("day", 1827), ("year", 6), ("week", True), ("month", 1.0),
                                            ("week", "2")])
def test_an_unknown_unit_or_an_interval_out_of_range_is_refused(unit, interval):
    with pytest.raises(cycles.CycleError):
        cycles.start(date(2027, 1, 1), unit, interval, 1)
    with pytest.raises(cycles.CycleError):
        cycles.index_on(date(2027, 1, 1), unit, interval, date(2027, 3, 1))


def test_the_longest_cycles_are_accepted():
    for unit, longest in cycles.MAX_INTERVAL.items():
        cycles.check(unit, longest)
        assert cycles.describe(unit, 1) == unit
        assert cycles.describe(unit, 3) == f"3 {unit}s"


# Which day it is: the business's timezone, across DST changes ----------------------------------------

def transitions(zone: str, year: int) -> list[datetime]:
    """The UTC moments (to the minute) in ``year`` when ``zone``'s offset changes."""
    tz = ZoneInfo(zone)
    found = []
    moment = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    step = timedelta(hours=6)
    while moment < end:
        later = moment + step
        if moment.astimezone(tz).utcoffset() != later.astimezone(tz).utcoffset():
            low, high = moment, later  # bisect to the minute
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                if middle.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high)
        moment = later
    return found


def test_the_zones_here_do_change_their_clocks():
    assert len(transitions("Europe/Lisbon", 2027)) == 2
    assert len(transitions("Australia/Lord_Howe", 2027)) == 2  # by half an hour
    assert len(transitions("Pacific/Chatham", 2027)) == 2


@settings(max_examples=examples(150), deadline=None)
@given(st.sampled_from(DST_ZONES), st.integers(2020, 2040), st.integers(0, 1), st.integers(-36 * 60, 36 * 60),
       st.sampled_from([7, 15, 30, 60]), anchors, cycle_specs)
def test_local_dates_around_a_dst_change_never_skip_or_repeat_a_day(zone, year, which, shift, step, anchor,
                                                                    spec):
    """Every ``step`` minutes for two days around a DST change: the local date never goes back and moves
    a day at a time, hitting every date; so the period a moment falls in (by its local date) never
    goes back either, and a new period begins exactly when its first day begins locally."""
    found = transitions(zone, year)
    assume(found)
    unit, interval = spec
    centre = found[which % len(found)] + timedelta(minutes=shift)
    tz = ZoneInfo(zone)
    moments = [centre - timedelta(hours=24) + timedelta(minutes=step * k) for k in range(48 * 60 // step)]
    days = [cycles.local_date(m, zone) for m in moments]
    for earlier, later in pairwise(days):
        assert 0 <= (later - earlier).days <= 1, (earlier, later)
    assert {days[0] + timedelta(days=k) for k in range((days[-1] - days[0]).days + 1)} == set(days)
    for moment, day in zip(moments, days):
        local = moment.astimezone(tz)
        assert day == local.date()
        # The same instant written in another offset is the same day here.
        assert cycles.local_date(moment.astimezone(ZoneInfo("Asia/Tokyo")), zone) == day
    periods_seen = [cycles.index_on(anchor, unit, interval, day) for day in days]
    assert periods_seen == sorted(periods_seen)
    for (m0, d0, n0), (m1, d1, n1) in zip(zip(moments, days, periods_seen), zip(moments[1:], days[1:],
                                                                                periods_seen[1:])):
        if n1 != n0:  # a boundary: the local day just turned to the new period's first day
            assert d1 == cycles.start(anchor, unit, interval, n1) and d0 == d1 - timedelta(days=1)


@given(st.sampled_from(DST_ZONES + OTHER_ZONES),
       st.datetimes(datetime(1990, 1, 1), datetime(2060, 1, 1), timezones=st.just(UTC)))
def test_local_date_is_the_zones_calendar_date(zone, moment):
    day = cycles.local_date(moment, zone)
    assert day == moment.astimezone(ZoneInfo(zone)).date()
    assert abs((day - moment.date()).days) <= 1


@given(st.dates(date(2000, 1, 1), date(2060, 12, 31)), st.sampled_from(DST_ZONES + OTHER_ZONES),
       st.integers(0, 23), st.sampled_from([0, 30, 45, 59]))
def test_every_local_wall_clock_time_of_a_day_is_that_day(day, zone, hour, minute):
    """A moment written in the business's wall-clock time on ``day`` is ``day``, even at 00:00 on the
    night the clocks change (zoneinfo resolves a skipped or repeated time; the day stays)."""
    tz = ZoneInfo(zone)
    for fold in (0, 1):
        wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz, fold=fold)
        assert cycles.local_date(wall.astimezone(UTC), zone) in (day, day - timedelta(days=1),
                                                                             day + timedelta(days=1))
        if wall.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall.replace(tzinfo=None):
            assert cycles.local_date(wall.astimezone(UTC), zone) == day  # a time that exists


def test_a_naive_moment_is_refused():
    with pytest.raises(ValueError):
        cycles.local_date(datetime(2027, 3, 28, 1, 30), "Europe/Lisbon")


def test_the_business_day_not_the_utc_day_decides():
    # 23:30 UTC on Jun 30 is already Jul 1 in Chatham (+12:45), still Jun 30 in New York.
    moment = datetime(2027, 6, 30, 23, 30, tzinfo=UTC)
    assert cycles.local_date(moment, "Pacific/Chatham") == date(2027, 7, 1)
    assert cycles.local_date(moment, "America/New_York") == date(2027, 6, 30)
    # Lisbon's spring change (01:00 UTC, Mar 28 2027) does not move the date.
    assert cycles.local_date(datetime(2027, 3, 28, 0, 59, tzinfo=UTC), "Europe/Lisbon") == date(2027, 3, 28)
    assert cycles.local_date(datetime(2027, 3, 27, 23, 59, tzinfo=UTC), "Europe/Lisbon") == date(2027, 3, 27)


# Proration ---------------------------------------------------------------------------------------

@pytest.mark.money_property
@given(anchors, cycle_specs, st.integers(-3, 40), st.integers(-400, 400))
def test_share_left_is_days_left_over_days_in_the_period(anchor, spec, n, offset):
    unit, interval = spec
    assume(fits(anchor, unit, interval, n))
    p = cycles.period(anchor, unit, interval, n)
    day = p.start + timedelta(days=offset % (p.days + 4) - 2)
    share = cycles.share_left(p, day)
    assert isinstance(share, Fraction) and 0 <= share <= 1
    if day <= p.start:
        assert share == 1
    elif day >= p.end:
        assert share == 0
    else:
        assert share == Fraction((p.end - day).days, p.days)
        assert 0 < share < 1
        assert cycles.share_left(p, day + timedelta(days=1)) < share  # one day later, less is left


@given(anchors, cycle_specs, st.integers(0, 40))
def test_the_shares_of_a_periods_days_add_up_to_one_day_each(anchor, spec, n):
    """share(d) − share(d + 1) is one day's share, 1 / days, for every day of the period."""
    unit, interval = spec
    assume(fits(anchor, unit, interval, n))
    p = cycles.period(anchor, unit, interval, n)
    assume(p.days <= 400)
    shares = [cycles.share_left(p, p.start + timedelta(days=k)) for k in range(p.days + 1)]
    assert shares[0] == 1 and shares[-1] == 0
    assert all(a - b == Fraction(1, p.days) for a, b in pairwise(shares))


shares = st.one_of(st.just(Fraction(0)), st.just(Fraction(1)), st.just(Fraction(1, 2)),
                   st.fractions(min_value=0, max_value=1, max_denominator=2000))


@pytest.mark.money_property
@given(st.integers(-10**12, 10**12), shares)
@example(1, Fraction(1, 2))    # a half cent rounds up
@example(-1, Fraction(1, 2))   # and away from zero
@example(3, Fraction(1, 3))
@example(10**12, Fraction(1999, 2000))
def test_prorate_rounds_half_up_once_and_stays_in_bounds(amount, share):
    result = cycles.prorate(amount, share)
    exact = amount * share
    assert isinstance(result, int) and not isinstance(result, bool)
    assert abs(result - exact) <= Fraction(1, 2)
    if abs(result - exact) == Fraction(1, 2):
        assert abs(result) > abs(exact), "a half goes away from zero"
    assert min(0, amount) <= result <= max(0, amount)
    assert cycles.prorate(-amount, share) == -result
    assert cycles.prorate(amount, Fraction(1)) == amount and cycles.prorate(amount, Fraction(0)) == 0


@pytest.mark.money_property
@given(st.integers(0, 10**9), st.fractions(min_value=0, max_value=1, max_denominator=500),
       st.fractions(min_value=0, max_value=1, max_denominator=500))
def test_prorate_never_gives_more_for_a_smaller_share(amount, a, b):
    low, high = sorted((a, b))
    assert cycles.prorate(amount, low) <= cycles.prorate(amount, high)


@pytest.mark.parametrize("amount, share, error", [
    (100, Fraction(-1, 3), ValueError), (100, Fraction(4, 3), ValueError),
    (1.5, Fraction(1, 2), TypeError), (True, Fraction(1, 2), TypeError)])
def test_prorate_refuses_what_is_not_minor_units_or_a_share(amount, share, error):
    with pytest.raises(error):
        cycles.prorate(amount, share)


def test_proration_of_a_monthly_change_on_the_10th_of_july():
    p = cycles.period(date(2027, 7, 1), "month", 1, 0)
    share = cycles.share_left(p, date(2027, 7, 10))
    assert share == Fraction(22, 31)
    assert cycles.prorate(10000, share) == 7097  # 7096.77… → 7097

"""Billing cycles: service periods counted from an anchor. Pure: dates in, dates out.

A subscription's periods are numbered 0, 1, 2, … from its anchor (a date in the business's
timezone). Period ``n`` starts on ``anchor + n × interval units`` and ends where period ``n + 1``
starts (``end`` is exclusive; ``last_day`` is the day before). Every start is computed from the
anchor, never from the previous start, so a month-end anchor clamps and then returns:
Jan 31 → Feb 28 (29 in a leap year) → Mar 31 → Apr 30 → May 31. It never drifts to the 28th.
Years keep the anchor's day the same way (Feb 29 → Feb 28 → … → Feb 29).

The invoice dates of a subscription follow the same rule from their own anchor (the invoice anchor),
so "service from the 1st, invoiced on the 3rd" stays the 1st and the 3rd for ever.

Which day it is comes from ``local_date(moment, timezone)``: the business's calendar date of a UTC
moment (zoneinfo), so a DST change moves no period boundary (periods are whole local days).

Proration is by whole days: the share of a period left from a day is ``days left / days in the
period`` (an exact ``Fraction``), and an amount is prorated by rounding half up once.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

UNITS = ("day", "week", "month", "year")
UNIT_LABELS = {"day": ("day", "days"), "week": ("week", "weeks"), "month": ("month", "months"),
               "year": ("year", "years")}
# The longest cycle of each unit we bill (five years, whatever the unit).
MAX_INTERVAL = {"day": 1826, "week": 260, "month": 60, "year": 5}


class CycleError(ValueError):
    """An unknown unit or an interval out of range."""


def check(unit: str, interval: int) -> None:
    if unit not in UNITS:
        raise CycleError(f"unknown cycle unit {unit!r}")
    if not isinstance(interval, int) or isinstance(interval, bool) or not 1 <= interval <= MAX_INTERVAL[unit]:
        raise CycleError(f"interval must be a whole number from 1 to {MAX_INTERVAL[unit]} {unit}s")


def describe(unit: str, interval: int) -> str:
    """"month", "3 months", "week"."""
    one, many = UNIT_LABELS[unit]
    return one if interval == 1 else f"{interval} {many}"


def _add_months(anchor: date, months: int) -> date:
    total = anchor.month - 1 + months
    year, month = anchor.year + total // 12, total % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return date(year, month, day)


def start(anchor: date, unit: str, interval: int, n: int) -> date:
    """The first day of period ``n`` (``n`` may be negative: periods before the anchor)."""
    check(unit, interval)
    if unit == "day":
        return anchor + timedelta(days=n * interval)
    if unit == "week":
        return anchor + timedelta(days=7 * n * interval)
    if unit == "month":
        return _add_months(anchor, n * interval)
    return _add_months(anchor, 12 * n * interval)


@dataclass(frozen=True)
class Period:
    index: int
    start: date
    end: date  # exclusive: the next period's start

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def label(self) -> str:
        """"1 Jul – 31 Jul 2027"; "15 Dec 2026 – 14 Jan 2027" across a year; "3 Jul 2027" for a day."""
        first, last = self.start, self.last_day
        if first == last:
            return f"{first.day} {first:%b %Y}"
        if first.year == last.year:
            return f"{first.day} {first:%b} – {last.day} {last:%b %Y}"
        return f"{first.day} {first:%b %Y} – {last.day} {last:%b %Y}"


def period(anchor: date, unit: str, interval: int, n: int) -> Period:
    return Period(n, start(anchor, unit, interval, n), start(anchor, unit, interval, n + 1))


def index_on(anchor: date, unit: str, interval: int, day: date) -> int:
    """The period that ``day`` falls in (negative before the anchor)."""
    check(unit, interval)
    if unit in ("day", "week"):
        length = interval * (7 if unit == "week" else 1)
        return (day - anchor).days // length
    months = (day.year - anchor.year) * 12 + day.month - anchor.month
    step = interval * (12 if unit == "year" else 1)
    n = months // step
    while start(anchor, unit, interval, n) > day:
        n -= 1
    while start(anchor, unit, interval, n + 1) <= day:
        n += 1
    return n


def periods(anchor: date, unit: str, interval: int, first: int, count: int) -> list[Period]:
    return [period(anchor, unit, interval, n) for n in range(first, first + count)]


def local_date(moment: datetime, timezone: str) -> date:
    """The business's calendar date at a UTC moment."""
    if moment.tzinfo is None:
        raise ValueError("an aware datetime is needed")
    return moment.astimezone(ZoneInfo(timezone)).date()


def share_left(p: Period, day: date) -> Fraction:
    """The part of period ``p`` from ``day`` (inclusive) to its end: 0 after it, 1 on or before its start."""
    if day <= p.start:
        return Fraction(1)
    if day >= p.end:
        return Fraction(0)
    return Fraction((p.end - day).days, p.days)


def prorate(amount: int, share: Fraction) -> int:
    """``amount × share`` rounded half up (away from zero for halves), in minor units."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError("amount must be an int of minor units")
    if share < 0 or share > 1:
        raise ValueError("a share is between 0 and 1")
    value = Fraction(abs(amount)) * share
    whole = value.numerator // value.denominator
    if value - whole >= Fraction(1, 2):
        whole += 1
    return whole if amount >= 0 else -whole

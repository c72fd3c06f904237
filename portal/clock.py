"""The one source of time.

Everything that asks "what time is it?" asks ``clock.now()``, so tests and
``flask portal tick --at`` can move time for a block of code without touching
the system clock. Times are timezone-aware UTC.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

_frozen: ContextVar[datetime | None] = ContextVar("portal_clock_frozen", default=None)


def now() -> datetime:
    frozen = _frozen.get()
    if frozen is not None:
        return frozen
    return datetime.now(timezone.utc)


def today(tz: str | None = None) -> date:
    """Today's date in the given IANA timezone (the business's), UTC if none."""
    current = now()
    return current.astimezone(ZoneInfo(tz)).date() if tz else current.date()


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken to be UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


@contextmanager
def frozen(at: datetime):
    """Run a block as of ``at``."""
    token = _frozen.set(as_utc(at))
    try:
        yield
    finally:
        _frozen.reset(token)


@contextmanager
def not_before(at: datetime | None):
    """Run a block as of ``at`` while that moment is still ahead (``flask portal tick --at`` a later
    moment), else as of now: a job the tick queued for a moment runs as of that moment or later,
    never earlier, and a retry an hour later records the hour it really ran."""
    if at is None or as_utc(at) <= now():
        yield
        return
    with frozen(at):
        yield

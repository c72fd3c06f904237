"""Column types shared by the models."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import BigInteger, DateTime, Integer
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """Stores UTC as a naive timestamp; always returns timezone-aware UTC.

    SQLite keeps no zone, PostgreSQL's ``timestamp without time zone`` neither:
    storing naive UTC everywhere means both databases hold the same values.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column; use clock.now()")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


# Money in minor units: 8-byte on PostgreSQL (a 4-byte column stops at 21.4 million euros, or about
# 85,000 dollars' worth of dong); SQLite's INTEGER is already 8 bytes.
Money = BigInteger().with_variant(Integer(), "sqlite")

"""Gapless document numbers (invoices, credit notes).

An atomic ``UPDATE business SET <counter> = <counter> + 1 RETURNING <counter>`` holds the business
row's lock until the transaction commits, so concurrent finalizations queue behind it and a rolled
back one gives its number back: no gaps, no duplicates.
"""
from __future__ import annotations

from sqlalchemy import update

from portal import clock
from portal.billing import states
from portal.extensions import db
from portal.models import Business
from portal.services.business import get_business

COUNTERS = {
    "invoice": (Business.invoice_next_number, "invoice_number_format"),
    "credit_note": (Business.credit_note_next_number, "credit_note_number_format"),
}


def take(kind: str) -> tuple[int, str]:
    """The next (sequence, formatted number) for ``kind`` ("invoice" or "credit_note")."""
    counter, format_field = COUNTERS[kind]
    business = get_business()
    new_next = db.session.execute(
        update(Business).where(Business.id == business.id)
        .values({counter: counter + 1})
        .returning(counter)
    ).scalar_one()
    db.session.refresh(business)
    seq = new_next - 1
    today = clock.today(business.timezone)
    return seq, states.format_number(getattr(business, format_field), seq, today.year, today.month)


def take_many(kind: str, count: int) -> list[tuple[int, str]]:
    """``count`` consecutive (sequence, number) pairs in one UPDATE (a billing run's batch): the same
    row lock and the same rule as ``take``."""
    if count <= 0:
        return []
    counter, format_field = COUNTERS[kind]
    business = get_business()
    new_next = db.session.execute(
        update(Business).where(Business.id == business.id)
        .values({counter: counter + count})
        .returning(counter)
    ).scalar_one()
    db.session.refresh(business)
    today = clock.today(business.timezone)
    fmt = getattr(business, format_field)
    first = new_next - count
    return [(seq, states.format_number(fmt, seq, today.year, today.month)) for seq in range(first, new_next)]

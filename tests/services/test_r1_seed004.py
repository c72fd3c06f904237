"""Seed 004's example, exactly: a monthly subscription started Jun 1 whose first invoice is made by
hand on Jun 3; ticking through December makes invoices on Jul 3, Aug 3, … for Jul 1–31, Aug 1–31, …"""
from datetime import date, datetime, timezone

from sqlalchemy import select

from portal import clock
from tests.support.jobs import tick


def _invoices(sub_id):
    from portal.extensions import db
    from portal.models import Invoice

    db.session.rollback()
    db.session.expire_all()
    return list(db.session.scalars(select(Invoice).where(Invoice.subscription_id == sub_id).order_by(Invoice.id)))


def test_service_periods_and_invoice_anchor_differ(app, make, cli):
    make.business(timezone="Europe/Lisbon", currency="EUR")
    acme = make.client(currency="EUR")
    gym = make.plan("Hot desk", "120.00")
    with clock.frozen(datetime(2027, 6, 1, 9, tzinfo=timezone.utc)):
        sub = make.subscription(acme, gym, start=date(2027, 6, 1), first_invoice="manual")
    assert sub.next_invoice_on is None
    # Nothing is billed automatically before the first invoice is made by hand.
    tick(cli, "2027-06-02T10:00:00+00:00")
    assert _invoices(sub.id) == []
    from portal.services import subscriptions
    from tests.support.make import STAFF

    with clock.frozen(datetime(2027, 6, 3, 10, tzinfo=timezone.utc)):
        first = subscriptions.invoice_first_period(sub.id, STAFF)
    assert first.issue_date == date(2027, 6, 3)
    assert first.lines[0].period_start == date(2027, 6, 1) and first.lines[0].period_end == date(2027, 6, 30)

    day = date(2027, 6, 4)
    while day <= date(2027, 12, 31):
        tick(cli, datetime(day.year, day.month, day.day, 10, tzinfo=timezone.utc))
        day = date.fromordinal(day.toordinal() + 1)
    rows = _invoices(sub.id)
    assert [i.issue_date for i in rows] == [date(2027, m, 3) for m in range(6, 13)]
    assert [(i.lines[0].period_start, i.lines[0].period_end) for i in rows[1:]] == [
        (date(2027, 7, 1), date(2027, 7, 31)), (date(2027, 8, 1), date(2027, 8, 31)),
        (date(2027, 9, 1), date(2027, 9, 30)), (date(2027, 10, 1), date(2027, 10, 31)),
        (date(2027, 11, 1), date(2027, 11, 30)), (date(2027, 12, 1), date(2027, 12, 31))]
    assert "(1 Jul – 31 Jul 2027)" in rows[1].lines[0].description
    assert all(i.status in ("open", "overdue") and i.total == 12000 for i in rows)
    assert len({i.number for i in rows}) == 7

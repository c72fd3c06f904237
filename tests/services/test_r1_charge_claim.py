"""A client's open charge goes on one invoice only, even when two paths read it as open at the same
moment (a subscription's cycle and a staff draft): each takes it with a conditional UPDATE."""
from datetime import date, datetime, timezone

from sqlalchemy import select

from portal import clock


def test_a_charge_read_as_open_by_the_cycle_but_taken_meanwhile_stays_on_one_invoice(app, make, monkeypatch):
    from portal.extensions import db
    from portal.models import Charge, Invoice
    from portal.services import charges, invoices, subscriptions
    from portal.services.subscriptions import billing, schedule
    from tests.support.make import STAFF

    make.business(currency="EUR")
    acme = make.client(currency="EUR", charges_billing="next_cycle")
    acme.charges_billing = "next_cycle"
    db.session.commit()
    desk = make.plan("Hot desk", "120.00")
    with clock.frozen(datetime(2027, 3, 1, 8, tzinfo=timezone.utc)):
        sub = make.subscription(acme, desk, start=date(2027, 3, 1))
        charge = charges.create_charge(acme, {"description": "Printing", "quantity": "1", "unit_price": "12.00",
                                              "currency": "EUR"}, STAFF)
        stale = schedule.open_charges(acme.id, "EUR")  # the cycle's read: the charge is open
        invoices.create_draft(acme, STAFF, all_open_charges=True)  # staff take it meanwhile
        monkeypatch.setattr(schedule, "open_charges", lambda client_id, currency: stale)
        assert subscriptions.bill_subscription(sub.id, clock.now()).invoices == 1
    db.session.rollback()
    holding = db.session.scalars(select(Invoice).join(Invoice.lines).where(
        Invoice.lines.any(charge_id=charge.id))).unique().all()
    assert len(holding) == 1 and holding[0].subscription_id is None
    cycle_invoice = db.session.scalar(select(Invoice).where(Invoice.subscription_id == sub.id))
    assert [ln.charge_id for ln in cycle_invoice.lines] == [None]
    assert db.session.get(Charge, charge.id).invoice_id == holding[0].id
    assert billing  # the module under test


def test_claim_open_takes_each_charge_once(app, make):
    from portal.services import charges
    from tests.support.make import STAFF

    acme = make.client(currency="EUR")
    row = charges.create_charge(acme, {"description": "Printing", "quantity": "1", "unit_price": "12.00",
                                       "currency": "EUR"}, STAFF)
    assert [c.id for c in charges.claim_open([row.id])] == [row.id]
    assert charges.claim_open([row.id]) == []

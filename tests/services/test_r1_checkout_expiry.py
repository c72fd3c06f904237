"""A self-checkout left unpaid is dropped two days later by the tick (its first invoice voided, the
subscription cancelled), as Stripe expires an incomplete subscription; a paid one is not touched."""
from __future__ import annotations

from datetime import UTC, datetime

from portal import clock
from portal.extensions import db
from portal.models import Contact, Invoice, Subscription
from portal.services import subscriptions
from tests.support.jobs import tick

JUN_1 = datetime(2027, 6, 1, 12, tzinfo=UTC)


def _fresh(model, row_id):
    db.session.rollback()
    db.session.expire_all()
    return db.session.get(model, row_id)


def test_an_unpaid_checkout_expires_after_two_days(app, make, cli):
    make.business(name="Tidewater Studio", currency="EUR", timezone="UTC")
    ana = make.contact_with_login()
    ben = make.contact_with_login(email="ben@bravo.example", client_name="Bravo Ltd")
    plan = make.plan(name="Studio membership", unit_price="100.00", self_serve=True)
    with clock.frozen(JUN_1):
        left = subscriptions.start_self_checkout(db.session.get(Contact, ana.id), plan.id, "1")
        paid = subscriptions.start_self_checkout(db.session.get(Contact, ben.id), plan.id, "1")
        subscriptions.pay_first_invoice(db.session.get(Contact, ben.id), paid.id, "card", "4242424242424242", "12/34")
    left_invoice = _fresh(Subscription, left.id).held_invoice_id
    tick(cli, "2027-06-02T12:00:00+00:00")
    assert _fresh(Subscription, left.id).status == "incomplete"
    tick(cli, "2027-06-03T13:00:00+00:00")
    sub = _fresh(Subscription, left.id)
    assert sub.status == "cancelled" and sub.next_invoice_on is None
    assert _fresh(Invoice, left_invoice).status == "void"
    assert _fresh(Subscription, paid.id).status == "active"
    # Nothing more is billed for the dropped checkout, ever.
    tick(cli, "2027-07-02T12:00:00+00:00")
    assert db.session.query(Invoice).filter(Invoice.subscription_id == left.id).count() == 1

"""The staff subscription page words a self-checkout's timeline: the client's checkout, and its start
once the first invoice is paid (not "Active again")."""
from __future__ import annotations

from datetime import UTC, datetime

from portal import clock
from portal.extensions import db
from portal.models import Contact
from portal.services import subscriptions

JUN_1 = datetime(2027, 6, 1, 12, tzinfo=UTC)


def test_self_checkout_timeline(app, make, staff_client):
    make.business(name="Tidewater Studio", currency="EUR", timezone="UTC")
    contact = make.contact_with_login()
    plan = make.plan(name="Studio membership", unit_price="100.00", self_serve=True)
    with clock.frozen(JUN_1):
        sub = subscriptions.start_self_checkout(db.session.get(Contact, contact.id), plan.id, "1")
    page = staff_client.get(f"/staff/subscriptions/{sub.id}").get_data(as_text=True)
    assert "Self-checkout by the client: waiting for the first invoice" in page
    with clock.frozen(JUN_1):
        subscriptions.pay_first_invoice(db.session.get(Contact, contact.id), sub.id, "card", "4242424242424242",
                                        "12/34")
    page = staff_client.get(f"/staff/subscriptions/{sub.id}").get_data(as_text=True)
    assert "Started: the first invoice" in page
    assert "Active again" not in page

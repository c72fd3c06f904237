"""The tick's expiring-card step: the ``payment_method_expiring`` email goes out once per saved card,
``card_expiry_notice_days`` before the end of its expiry month, to the client's billing contacts."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Contact, Event, PaymentMethod
from portal.services import payment_methods
from portal.services.events import Actor
from tests.support.jobs import deliveries, tick
from tests.support.web import email_text, links, post_form

STAFF = Actor("staff", None, "staff@portal.example")


def month_after(year: int, month: int) -> datetime:
    return datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def cards(make, client, auth):
    """Ana's client, with a card expiring in about three months (added through the portal), one
    expiring a year later, one expiring with the first but removed, and a bank account."""
    make.business(name="Tidewater Studio", currency="EUR", card_expiry_notice_days=30, timezone="UTC")
    contact = make.contact_with_login()
    db.session.add_all([
        Contact(client_id=contact.client_id, name="Ben Okafor", email="ben@acme.example", receives_invoices=True),
        Contact(client_id=contact.client_id, name="Cy Quiet", email="cy@acme.example", receives_invoices=False),
    ])
    db.session.commit()
    soon = clock.now() + timedelta(days=90)
    expiry = f"{soon.month:02d}/{soon.year % 100:02d}"
    later = f"{soon.month:02d}/{(soon.year + 1) % 100:02d}"
    assert auth.login_contact().status_code == 302
    response = post_form(client, "/portal/payment-methods/add",
                         {"method": "card", "card_number": "4242 4242 4242 4242", "expiry": expiry, "cvc": "123"})
    assert response.status_code == 303
    later_card = payment_methods.add_in_sandbox(contact.client_id, None, "card", "5555555555554444", later, "123")
    removed = payment_methods.add_in_sandbox(contact.client_id, None, "card", "4000056655665556", expiry, "123")
    payment_methods.remove(contact.client_id, removed.id, STAFF)
    payment_methods.add_in_sandbox(contact.client_id, None, "sepa_debit", "DE89370400440532013000", "")
    soon_card = db.session.scalars(select(PaymentMethod).where(PaymentMethod.last4 == "4242")).one()
    return {"soon": soon_card.id, "later": later_card.id, "removed": removed.id,
            "expires_at": month_after(soon.year, soon.month), "label": f"{soon.month:02d}/{soon.year}"}


def notified(method_id: int):
    db.session.expire_all()
    return db.session.get(PaymentMethod, method_id).expiry_notified_at


def test_the_notice_goes_out_once_over_two_ticks_to_billing_contacts(cards, cli, run_worker, smtp_server):
    expires_at = cards["expires_at"]
    deliveries_before = len(deliveries())

    # More than 30 days before the card's month ends: nothing yet.
    assert tick(cli, expires_at - timedelta(days=30, minutes=1))["expiring_cards"] == 0
    assert notified(cards["soon"]) is None

    # Within 30 days: once, and a second tick (even later) finds nothing more to send.
    at = expires_at - timedelta(days=29)
    assert tick(cli, at)["expiring_cards"] == 1
    assert tick(cli, at)["expiring_cards"] == 0
    assert tick(cli, expires_at - timedelta(days=1))["expiring_cards"] == 0
    assert notified(cards["soon"]) == at
    assert notified(cards["later"]) is None and notified(cards["removed"]) is None

    rows = [d for d in deliveries()[deliveries_before:]]
    assert sorted(d.recipient for d in rows) == ["ana@acme.example", "ben@acme.example"]
    assert {(d.template, d.subject_type) for d in rows} == {("templated", "client")}
    assert {d.subject for d in rows} == {"Your payment method for Tidewater Studio is expiring"}

    run_worker()
    assert smtp_server.to("cy@acme.example") == []
    [message] = smtp_server.to("ana@acme.example")
    assert message["Subject"] == "Your payment method for Tidewater Studio is expiring"
    body = email_text(message)
    assert "Hello Ana Ribeiro" in body and f"Visa ending 4242, expires {cards['label']}" in body
    assert "http://portal.test/portal/payment-methods" in links(body)
    assert len(smtp_server.to("ben@acme.example")) == 1
    assert {d.status for d in deliveries()[deliveries_before:]} == {"sent"}
    [event] = db.session.scalars(select(Event).where(Event.type == "payment_method.expiry_notified")).all()
    assert event.data["payment_method_id"] == cards["soon"]

    # A year on, the later card's turn comes; the removed card never gets one.
    assert tick(cli, expires_at + timedelta(days=365 - 29))["expiring_cards"] == 1
    assert notified(cards["later"]) is not None and notified(cards["removed"]) is None
    assert len(deliveries()) == deliveries_before + 4


def test_a_card_removed_before_its_notice_gets_none(cards, cli):
    payment_methods.remove(db.session.get(PaymentMethod, cards["soon"]).client_id, cards["soon"], STAFF)
    before = len(deliveries())
    assert tick(cli, cards["expires_at"] - timedelta(days=10))["expiring_cards"] == 0
    assert len(deliveries()) == before
    assert notified(cards["soon"]) is None

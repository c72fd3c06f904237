"""The client portal's ownership matrix: every /portal route that takes an id, called with another
client's id, answers 404 and changes nothing; two contacts of one client see the same records.

The routes are read from the app's URL map, so a new portal route with an id is covered (or fails
here until this test knows how to make a foreign record for its id)."""
from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from portal import clock
from portal.extensions import db
from portal.models import (
    CreditEntry,
    CreditNote,
    Invoice,
    Payment,
    PaymentMethod,
    Refund,
    Subscription,
    UserSession,
)
from portal.services.events import Actor
from tests.support import make
from tests.support.web import csrf_token

STAFF = Actor("staff", None, "staff@portal.example")


def records_of(client_row) -> dict:
    """One record of each kind a portal route can name, for this client."""
    invoice = make.invoice(client_row, "120.00")
    payment = make.payment(db.session.get(Invoice, invoice.id), "150.00", reference="REF")
    open_invoice = make.invoice(client_row, "80.00")
    method = PaymentMethod(client_id=client_row.id, gateway="sandbox", gateway_method_id=f"pm_sbx_{client_row.id}",
                           type="card", brand="visa", last4="4242", exp_month=12, exp_year=2030, is_default=True,
                           created_at=clock.now())
    db.session.add(method)
    db.session.flush()
    note = CreditNote(number=f"CN-T-{client_row.id}", sequence_number=client_row.id, invoice_id=invoice.id,
                      client_id=client_row.id, currency="EUR", amount=1000, to_balance=1000, reason="other",
                      issue_date=date(2026, 11, 20), created_at=clock.now())
    db.session.add(note)
    signed_in = UserSession(token_hash=f"{client_row.id:064d}", principal_kind="contact",
                            principal_id=client_row.contacts[0].id, created_at=clock.now(), last_seen_at=clock.now())
    db.session.add(signed_in)
    db.session.commit()
    return {"invoice_id": open_invoice.id, "paid_invoice_id": invoice.id, "payment_id": payment.id,
            "method_id": method.id, "payment_method_id": method.id, "credit_note_id": note.id,
            "session_id": signed_in.id}


def fingerprint() -> tuple:
    """Everything a portal POST could change."""
    return (
        tuple(db.session.execute(select(Invoice.id, Invoice.status, Invoice.amount_paid, Invoice.amount_due,
                                        Invoice.credit_applied).order_by(Invoice.id)).all()),
        tuple(db.session.execute(select(Payment.id, Payment.status, Payment.refunded_amount).order_by(Payment.id))
              .all()),
        tuple(db.session.execute(select(PaymentMethod.id, PaymentMethod.is_default, PaymentMethod.removed_at)
                                 .order_by(PaymentMethod.id)).all()),
        db.session.scalar(select(func.count()).select_from(CreditEntry)),
        db.session.scalar(select(func.count()).select_from(Refund)),
        tuple(db.session.execute(select(UserSession.id, UserSession.ended_at).order_by(UserSession.id)).all()),
        tuple(db.session.execute(select(Subscription.id, Subscription.status, Subscription.cancel_at_period_end)
                                 .order_by(Subscription.id)).all()),
    )


def portal_rules(app) -> list:
    return sorted((rule for rule in app.url_map.iter_rules()
                   if rule.endpoint.startswith("client.") and rule.arguments),
                  key=lambda rule: rule.rule)


@pytest.fixture
def world(make, client, auth):
    make.business(name="Tidewater Studio", currency="EUR")
    contact = make.contact_with_login()
    mine = records_of(contact.client)
    other = make.client(name="Other Co", contacts=[{"name": "Olu", "email": "olu@other.example",
                                                    "receives_invoices": True}])
    theirs = records_of(other)
    # R1: a self-serve plan is anyone's to open, a staff-only one is no one's; a subscription is its client's
    # (each a checkout waiting for its first payment, so its payment page exists).
    from portal.services import subscriptions

    offered = make.plan(name="Studio membership", self_serve=True)
    mine["plan_id"] = offered.id
    theirs["plan_id"] = make.plan(name="Staff only").id
    mine["subscription_id"] = subscriptions.start_self_checkout(contact, offered.id, "1").id
    theirs["subscription_id"] = subscriptions.start_self_checkout(other.contacts[0], offered.id, "1").id
    assert auth.login_contact().status_code == 302
    return {"contact": contact, "mine": mine, "theirs": theirs}


def url_for_rule(rule, ids: dict) -> str:
    values = {}
    for name in rule.arguments:
        if name not in ids:
            pytest.fail(f"{rule.rule}: the ownership matrix doesn't know how to make a foreign '{name}'")
        values[name] = ids[name]
    path = rule.rule
    for name, value in values.items():
        path = path.replace(f"<int:{name}>", str(value)).replace(f"<{name}>", str(value))
    return path


def test_every_portal_route_with_an_id_is_404_for_another_clients_records(app, client, world):
    rules = portal_rules(app)
    assert len(rules) >= 5, [rule.rule for rule in rules]
    before = fingerprint()
    checked = []
    for rule in rules:
        url = url_for_rule(rule, world["theirs"])
        for method in sorted(rule.methods & {"GET", "POST"}):
            if method == "GET":
                response = client.get(url)
            else:
                response = client.post(url, data={"csrf_token": csrf_token(client, "/portal/")})
            assert response.status_code == 404, (method, url, response.status_code)
            checked.append((method, rule.rule))
    db.session.expire_all()
    assert fingerprint() == before
    endpoints = {rule for _, rule in checked}
    for expected in ("/portal/invoices/<int:invoice_id>", "/portal/invoices/<int:invoice_id>/pdf",
                     "/portal/invoices/<int:invoice_id>/pay", "/portal/invoices/<int:invoice_id>/paid",
                     "/portal/payments/<int:payment_id>/receipt", "/portal/payments/<int:payment_id>/receipt.pdf",
                     "/portal/payment-methods/<int:method_id>/remove",
                     "/portal/payment-methods/<int:method_id>/default",
                     "/portal/credit-notes/<int:credit_note_id>/pdf",
                     "/portal/subscriptions/<int:subscription_id>/pay", "/portal/subscriptions/<int:subscription_id>/cancel",
                     "/portal/subscriptions/plans/<int:plan_id>"):
        assert expected in endpoints, expected


def test_return_urls_with_another_clients_intent_are_404(app, client, world):
    """Stripe's return URLs carry the intent id in the query: another client's is refused."""
    from portal.services import payments

    theirs = payments.start_payment(world["theirs"]["invoice_id"])
    before = fingerprint()
    mine = world["mine"]["invoice_id"]
    assert client.get(f"/portal/invoices/{mine}/paid?payment_intent={theirs.gateway_intent_id}").status_code == 404
    assert client.get(f"/portal/pay-all/done?payment_intent={theirs.gateway_intent_id}").status_code == 404
    db.session.expire_all()
    assert fingerprint() == before


def test_contacts_of_one_client_see_the_same_records(app, client, auth, world):
    gets = [rule for rule in portal_rules(app) if "GET" in rule.methods]

    def statuses() -> dict:
        return {rule.rule: client.get(url_for_rule(rule, world["mine"])).status_code for rule in gets}

    first = statuses()
    assert all(code < 400 for code in first.values()), first
    auth.logout_contact()
    ben = make.contact(world["contact"].client, password="client password 2")
    assert auth.login_contact(ben.email, "client password 2").status_code == 302
    assert statuses() == first

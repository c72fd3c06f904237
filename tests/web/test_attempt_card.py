"""F4 staff: "Attempt card for payment" charges the client's default saved method off-session."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.gateways import get_gateway
from portal.models import Delivery, Invoice, Payment
from portal.services import payment_methods, payments
from portal.services.events import Actor
from tests.support.web import post_form, text_of

STAFF = Actor("staff", None, "staff@portal.example")


def save_card(client_id: int, number: str = "4242424242424242", expiry: str = "12/34"):
    return payment_methods.add_in_sandbox(client_id, None, "card", number, expiry, "123")


@pytest.fixture
def invoice(make):
    make.business(name="Tidewater Studio", currency="EUR")
    make.owner()
    contact = make.contact_with_login()
    return make.invoice(contact.client)


def attempt(staff_client, invoice_id):
    response = post_form(staff_client, f"/staff/invoices/{invoice_id}/attempt-card")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/staff/invoices/{invoice_id}#card-panel")
    return staff_client.get(f"/staff/invoices/{invoice_id}")


def attempts(invoice_id) -> list[Payment]:
    db.session.expire_all()
    return db.session.scalars(select(Payment).where(Payment.invoice_id == invoice_id).order_by(Payment.id)).all()


def emails_to(address: str, subject_part: str) -> list[Delivery]:
    db.session.expire_all()
    return [d for d in db.session.scalars(select(Delivery).where(Delivery.recipient == address))
            if subject_part in (d.subject or "")]


def test_a_good_saved_card_pays_the_invoice(invoice, staff_client, app, auth):
    method = save_card(invoice.client_id)
    page = staff_client.get(f"/staff/invoices/{invoice.id}")
    text = text_of(page)
    assert "Default: VISA •••• 4242 expires 12/2034" in text
    html = page.get_data(as_text=True)
    assert f'action="/staff/invoices/{invoice.id}/attempt-card"' in html and "Attempt card for payment" in text
    assert 'hx-confirm="Charge €100.00 to VISA •••• 4242 now?"' in html

    after = attempt(staff_client, invoice.id)
    assert "Charged €100.00 to the saved payment method. The invoice is paid." in text_of(after)
    [payment] = attempts(invoice.id)
    assert (payment.status, payment.amount, payment.method, payment.payment_method_id, payment.off_session) == \
        ("succeeded", 10000, "card", method.id, True)
    assert payment.idempotency_key == f"invoice-{invoice.id}-attempt-1"
    assert get_gateway().retrieve_intent(payment.gateway_intent_id).status == "succeeded"
    paid = db.session.get(Invoice, invoice.id)
    assert (paid.status, paid.amount_due) == ("paid", 0)
    assert len(emails_to("ana@acme.example", "Receipt for invoice")) == 1
    assert "Attempt card for payment" not in text_of(after), "nothing left to charge"

    portal = app.test_client()
    post_form(portal, "/portal/login", {"email": "ana@acme.example", "password": "client password 1"})
    receipt = text_of(portal.get(f"/portal/payments/{payment.id}/receipt"))
    assert "Method Card · VISA •••• 4242" in receipt and f"Invoice {paid.number} €100.00" in receipt


@pytest.mark.parametrize("number", ["4000000000000341", "4000000000000002"])
def test_a_declining_card_records_the_reason_and_tells_the_client(invoice, staff_client, number):
    save_card(invoice.client_id, number)
    after = attempt(staff_client, invoice.id)
    text = text_of(after)
    assert "The charge of €100.00 failed: Your card was declined. The client was told." in text
    [payment] = attempts(invoice.id)
    assert (payment.status, payment.failure_code) == ("failed", "card_declined")
    payments_section = text.split("Payments", 1)[1]
    assert "Failed Your card was declined." in payments_section, "the reason shows in the payments list"
    still = db.session.get(Invoice, invoice.id)
    assert (still.status, still.amount_due, still.amount_paid) == ("open", 10000, 0)
    failed = emails_to("ana@acme.example", "didn't go through")
    assert len(failed) == 1 and "Your card was declined." in failed[0].payload["text"]
    assert "Attempt card for payment" in text, "staff may try again"


def test_after_a_decline_a_new_default_card_is_charged(invoice, staff_client):
    save_card(invoice.client_id, "4000000000000341")
    attempt(staff_client, invoice.id)
    good = save_card(invoice.client_id, "5555555555554444")
    payment_methods.set_default(invoice.client_id, good.id, STAFF)
    assert "Charged €100.00" in text_of(attempt(staff_client, invoice.id))
    first, second = attempts(invoice.id)
    assert (first.status, second.status) == ("failed", "succeeded")
    assert second.idempotency_key == f"invoice-{invoice.id}-attempt-2" and second.payment_method_id == good.id


def test_no_saved_method_is_an_error_and_charges_nothing(invoice, staff_client):
    page = text_of(staff_client.get(f"/staff/invoices/{invoice.id}"))
    assert "No saved payment method on file." in page and "Attempt card for payment" not in page
    after = attempt(staff_client, invoice.id)
    assert "No saved payment method on file" in text_of(after)
    assert attempts(invoice.id) == []
    assert db.session.get(Invoice, invoice.id).status == "open"


def test_a_payers_open_browser_attempt_is_cancelled_first(invoice, staff_client):
    browser = payments.start_payment(invoice.id)
    save_card(invoice.client_id)
    attempt(staff_client, invoice.id)
    first, charged = attempts(invoice.id)
    assert (first.id, first.status, charged.status) == (browser.id, "canceled", "succeeded")
    assert get_gateway().retrieve_intent(browser.gateway_intent_id).status == "canceled"
    assert charged.idempotency_key == f"invoice-{invoice.id}-attempt-2"


def test_a_paid_invoice_is_not_charged_again(invoice, staff_client):
    save_card(invoice.client_id)
    attempt(staff_client, invoice.id)
    response = post_form(staff_client, f"/staff/invoices/{invoice.id}/attempt-card")
    assert "This invoice is paid" in text_of(staff_client.get(response.headers["Location"]))
    assert len(attempts(invoice.id)) == 1


def test_attempt_card_needs_staff_and_csrf(invoice, staff_client, client):
    save_card(invoice.client_id)
    assert staff_client.post(f"/staff/invoices/{invoice.id}/attempt-card").status_code == 400
    assert post_form(staff_client, "/staff/invoices/999999/attempt-card").status_code == 404
    assert attempts(invoice.id) == []

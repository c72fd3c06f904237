"""Staff refund all or part of a payment from the invoice page."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Event, Invoice, Payment, Refund
from portal.services import invoices, payments
from portal.services.events import Actor
from tests.support.web import post_form

STAFF = Actor("staff", None, "staff@portal.example")


def text_of(response) -> str:
    html = response.get_data(as_text=True)
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).replace("&amp;", "&").replace("&#39;", "'").split())


@pytest.fixture
def paid(make):
    """An invoice of €100.00 paid by card through the sandbox: (invoice id, payment id)."""
    make.business(name="Tidewater Studio", currency="EUR")
    client = make.client()
    draft = invoices.create_draft(client, STAFF)
    invoices.save_draft(draft, invoices.DraftInput(currency="EUR", lines=[
        {"description": "Work", "quantity": "1", "unit_price": "100.00"}]), STAFF)
    invoice = invoices.finalize(draft, STAFF)
    payment = payments.confirm_in_sandbox(payments.start_payment(invoice.id), "card:4242424242424242")
    return invoice.id, payment.id


def books(invoice_id, payment_id):
    db.session.expire_all()
    invoice = db.session.get(Invoice, invoice_id)
    payment = db.session.get(Payment, payment_id)
    return invoice.status, invoice.amount_paid, invoice.amount_due, payment.refunded_amount


def refund_url(invoice_id, payment_id):
    return f"/staff/invoices/{invoice_id}/payments/{payment_id}/refund"


def test_a_partial_then_a_full_refund(paid, staff_client):
    invoice_id, payment_id = paid
    page = staff_client.get(f"/staff/invoices/{invoice_id}")
    html = page.get_data(as_text=True)
    assert f'action="{refund_url(invoice_id, payment_id)}#refund-{payment_id}"' in html
    assert 'for="refund-amount-' in html and "Succeeded" in text_of(page)

    response = post_form(staff_client, refund_url(invoice_id, payment_id), {"amount": "30.00", "reason": "goodwill"})
    assert response.status_code == 303
    page = staff_client.get(response.headers["Location"])
    assert "Refund recorded" in text_of(page)
    assert "Invoice refunded €30.00 “goodwill”" in text_of(page)
    assert books(invoice_id, payment_id) == ("paid", 7000, 3000, 3000)

    response = post_form(staff_client, refund_url(invoice_id, payment_id), {"amount": "70.00", "reason": ""})
    assert response.status_code == 303
    status, amount_paid, amount_due, refunded = books(invoice_id, payment_id)
    assert (amount_paid, amount_due, refunded) == (0, 10000, 10000)
    rows = db.session.scalars(select(Refund).order_by(Refund.id)).all()
    assert [(r.amount, r.reason, r.status) for r in rows] == [(3000, "goodwill", "succeeded"),
                                                               (7000, None, "succeeded")]
    assert all(r.gateway_refund_id for r in rows), "refunded through the gateway"
    events = db.session.scalars(select(Event).where(Event.type == "invoice.refunded")).all()
    assert [e.data["amount"] for e in events] == [3000, 7000]
    assert {e.actor_kind for e in events} == {"staff"}
    page = staff_client.get(f"/staff/invoices/{invoice_id}")
    assert f'action="{refund_url(invoice_id, payment_id)}' not in page.get_data(as_text=True), "nothing left"


def test_a_refund_beyond_what_was_paid_is_refused(paid, staff_client):
    invoice_id, payment_id = paid
    post_form(staff_client, refund_url(invoice_id, payment_id), {"amount": "60.00"})
    before = books(invoice_id, payment_id)
    response = post_form(staff_client, refund_url(invoice_id, payment_id), {"amount": "40.01", "reason": "too much"})
    assert response.status_code == 422
    page = text_of(response)
    assert "At most €40.00 of this payment can be refunded." in page
    html = response.get_data(as_text=True)
    assert f'id="refund-{payment_id}" open' in html and 'value="40.01"' in html and 'value="too much"' in html
    assert re.search(rf'id="refund-amount-{payment_id}"[^>]*aria-invalid="true"', html)
    assert books(invoice_id, payment_id) == before
    for amount, message in (("abc", "Use an amount like 25.00."), ("0", "Enter an amount above zero.")):
        response = post_form(staff_client, refund_url(invoice_id, payment_id), {"amount": amount})
        assert response.status_code == 422 and message in text_of(response)
    assert books(invoice_id, payment_id) == before
    assert len(db.session.scalars(select(Refund)).all()) == 1


def test_a_manual_payment_is_refunded_as_a_record(make, staff_client):
    make.business(name="Tidewater Studio", currency="EUR")
    draft = invoices.create_draft(make.client(), STAFF)
    invoices.save_draft(draft, invoices.DraftInput(currency="EUR", lines=[
        {"description": "Work", "quantity": "1", "unit_price": "50.00"}]), STAFF)
    invoice = invoices.finalize(draft, STAFF)
    invoices.record_manual_payment(invoice, "50.00", "wire", "", "REF-1", STAFF)
    invoice_id = invoice.id
    payment_id = db.session.scalars(select(Payment.id)).one()
    response = post_form(staff_client, refund_url(invoice_id, payment_id), {"amount": "50.00", "reason": "returned"})
    assert response.status_code == 303
    assert books(invoice_id, payment_id)[1:] == (0, 5000, 5000)
    [row] = db.session.scalars(select(Refund)).all()
    assert row.gateway_refund_id is None and row.status == "succeeded"


def test_refunding_a_payment_of_another_invoice_is_404(paid, make, staff_client):
    invoice_id, payment_id = paid
    draft = invoices.create_draft(make.client(name="Beta"), STAFF)
    response = post_form(staff_client, refund_url(draft.id, payment_id), {"amount": "1.00"})
    assert response.status_code == 404
    assert books(invoice_id, payment_id)[3] == 0


def test_refunds_need_staff_and_csrf(paid, client, staff_client):
    invoice_id, payment_id = paid
    response = staff_client.post(refund_url(invoice_id, payment_id), data={"amount": "1.00"})
    assert response.status_code == 400
    assert books(invoice_id, payment_id)[3] == 0

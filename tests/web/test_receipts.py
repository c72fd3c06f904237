"""F4 client portal: payment receipts (HTML and PDF), linked from the payment history."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Invoice, Payment
from portal.services import invoices, payments
from portal.services.errors import ServiceError
from portal.services.events import Actor
from tests.support import make
from tests.support.web import text_of

STAFF = Actor("staff", None, "staff@portal.example")


@pytest.fixture
def setup(make, client, auth):
    make.business(name="Tidewater Studio", currency="EUR", address="1 Quay Street\nPortsmouth")
    make.owner()
    contact = make.contact_with_login()
    mine = make.invoice(contact.client)
    paid = make.card_payment(mine)
    other = make.client(name="Other Co", contacts=[{"name": "Olu", "email": "olu@other.example",
                                                    "receives_invoices": True}])
    theirs_invoice = make.invoice(other, "70.00")
    theirs = make.card_payment(theirs_invoice)
    assert auth.login_contact().status_code == 302
    return {"contact": contact, "invoice": mine, "payment": paid.id, "theirs": theirs.id,
            "theirs_number": theirs_invoice.number}


def test_the_receipt_shows_who_when_how_much_how_and_what_it_paid(setup, client):
    response = client.get(f"/portal/payments/{setup['payment']}/receipt")
    assert response.status_code == 200
    text = text_of(response)
    payment = db.session.get(Payment, setup["payment"])
    assert f"Receipt R-{payment.id:06d}" in text
    assert "Tidewater Studio" in text and "1 Quay Street" in text, "the business's branding and address"
    assert "Received from Acme Ltd" in text
    assert "Amount €100.00" in text and "Method Card" in text
    assert f"Invoice {setup['invoice'].number} €100.00" in text
    assert "credit balance" not in text
    html = response.get_data(as_text=True)
    assert f'href="/portal/payments/{payment.id}/receipt.pdf"' in html


def test_the_history_links_each_payment_to_its_receipt(setup, client):
    html = client.get("/portal/payments").get_data(as_text=True)
    assert f'href="/portal/payments/{setup["payment"]}/receipt"' in html
    assert f'/portal/payments/{setup["theirs"]}/receipt' not in html


def test_the_receipt_pdf(setup, client):
    response = client.get(f"/portal/payments/{setup['payment']}/receipt.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF")
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"


def test_another_clients_receipt_is_404(setup, client):
    for suffix in ("receipt", "receipt.pdf"):
        assert client.get(f"/portal/payments/{setup['theirs']}/{suffix}").status_code == 404
        assert client.get(f"/portal/payments/999999/{suffix}").status_code == 404


def test_an_attempt_that_moved_no_money_has_no_receipt(setup, client):
    second = make.invoice(setup["contact"].client, "20.00")
    attempt = payments.start_payment(second.id)
    with pytest.raises(ServiceError):
        payments.confirm_in_sandbox(attempt, "card:4000000000000002")
    assert client.get(f"/portal/payments/{attempt.id}/receipt").status_code == 404


def test_a_manual_overpayment_shows_the_credit_on_the_receipt(setup, client):
    invoice = make.invoice(setup["contact"].client, "80.00")
    payment = invoices.record_manual_payment(invoice, "100.00", "wire", "", "REF-77", STAFF)
    text = text_of(client.get(f"/portal/payments/{payment.id}/receipt"))
    assert "Method Bank transfer" in text and "Reference REF-77" in text
    assert f"Invoice {invoice.number} €80.00" in text
    assert "Added to your credit balance €20.00" in text
    assert "Total paid €100.00" in text


def test_refunds_show_on_the_receipt(setup, client):
    payments.refund(setup["payment"], "30.00", "Goodwill", STAFF)
    text = text_of(client.get(f"/portal/payments/{setup['payment']}/receipt"))
    assert re.search(r"Refunded \S+ \d+, \d{4} · Goodwill −€30.00", text), text
    assert "Net received €70.00" in text


def test_a_processing_bank_payment_has_a_receipt_saying_so(setup, client):
    invoice = make.invoice(setup["contact"].client, "45.00")
    payment = payments.start_payment(invoice.id)
    payments.confirm_in_sandbox(payment, "sepa_debit:DE89370400440532013000")
    response = client.get(f"/portal/payments/{payment.id}/receipt")
    assert response.status_code == 200
    text = text_of(response)
    assert "Processing" in text and "still clearing" in text
    assert f"Invoice {invoice.number} when the payment clears" in text
    db.session.expire_all()
    assert db.session.scalars(select(Invoice).where(Invoice.id == invoice.id)).one().status == "open"

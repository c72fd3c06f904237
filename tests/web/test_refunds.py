"""Staff refund all or part of a payment from the invoice page.

Since F4 a refund is a credit note whose refund part is the amount: the invoice stays settled (a paid
invoice stays paid and owes nothing) and the refund has a numbered document."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import CreditNote, Event, Invoice, Payment, Refund
from portal.services import invoices
from portal.services.events import Actor
from tests.support.web import post_form, text_of

STAFF = Actor("staff", None, "staff@portal.example")


@pytest.fixture
def paid(make):
    """An invoice of €100.00 paid by card through the sandbox: (invoice id, payment id)."""
    make.business(name="Tidewater Studio", currency="EUR")
    invoice = make.invoice(make.client())
    payment = make.card_payment(invoice)
    return invoice.id, payment.id


def books(invoice_id, payment_id):
    db.session.expire_all()
    invoice = db.session.get(Invoice, invoice_id)
    payment = db.session.get(Payment, payment_id)
    return invoice.status, invoice.amount_paid, invoice.amount_due, payment.refunded_amount


def credit_noted(invoice_id):
    db.session.expire_all()
    return db.session.get(Invoice, invoice_id).credit_noted


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
    assert "Refund recorded with credit note CN-" in text_of(page)
    assert "Invoice refunded €30.00 “goodwill”" in text_of(page)
    assert books(invoice_id, payment_id) == ("paid", 7000, 0, 3000), "still paid: the client owes nothing"
    assert credit_noted(invoice_id) == 3000

    response = post_form(staff_client, refund_url(invoice_id, payment_id), {"amount": "70.00", "reason": ""})
    assert response.status_code == 303
    assert books(invoice_id, payment_id) == ("paid", 0, 0, 10000)
    assert credit_noted(invoice_id) == 10000
    rows = db.session.scalars(select(Refund).order_by(Refund.id)).all()
    assert [(r.amount, r.reason, r.status) for r in rows] == [(3000, "goodwill", "succeeded"),
                                                               (7000, None, "succeeded")]
    assert all(r.gateway_refund_id for r in rows), "refunded through the gateway"
    events = db.session.scalars(select(Event).where(Event.type == "invoice.refunded")).all()
    assert [e.data["amount"] for e in events] == [3000, 7000]
    assert {e.actor_kind for e in events} == {"staff"}
    notes = db.session.scalars(select(CreditNote).order_by(CreditNote.id)).all()
    year = notes[0].issue_date.year
    assert [(n.number, n.amount, n.to_refund, n.to_due + n.to_balance + n.to_outside, n.reason, n.memo)
            for n in notes] == [(f"CN-{year}-00001", 3000, 3000, 0, "other", "goodwill"),
                                (f"CN-{year}-00002", 7000, 7000, 0, "other", None)]
    assert [n.refund_id for n in notes] == [r.id for r in rows]
    page = staff_client.get(f"/staff/invoices/{invoice_id}")
    assert f'action="{refund_url(invoice_id, payment_id)}' not in page.get_data(as_text=True), "nothing left"
    assert f"CN-{year}-00001" in text_of(page) and f"CN-{year}-00002" in text_of(page)


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
    assert len(db.session.scalars(select(CreditNote)).all()) == 1, "a refused refund issues no credit note"


def test_a_manual_payment_is_refunded_as_a_record(make, staff_client):
    make.business(name="Tidewater Studio", currency="EUR")
    invoice = make.invoice(make.client(), "50.00")
    make.payment(invoice, "50.00", reference="REF-1")
    invoice_id = invoice.id
    payment_id = db.session.scalars(select(Payment.id)).one()
    response = post_form(staff_client, refund_url(invoice_id, payment_id), {"amount": "50.00", "reason": "returned"})
    assert response.status_code == 303
    assert books(invoice_id, payment_id) == ("paid", 0, 0, 5000)
    assert credit_noted(invoice_id) == 5000
    [row] = db.session.scalars(select(Refund)).all()
    assert row.gateway_refund_id is None and row.status == "succeeded"


def test_an_overpayment_is_given_back_from_the_credit_first(make, staff_client):
    """A payment above what was due left credit: a refund gives that back first (no credit note needed);
    only the part taken off the invoice is a credit note."""
    from portal.services import credits

    make.business(name="Tidewater Studio", currency="EUR")
    client = make.client()
    invoice = make.invoice(client)
    make.payment(invoice, "150.00")
    invoice_id, client_id = invoice.id, client.id
    payment_id = db.session.scalars(select(Payment.id)).one()
    assert credits.balance(client_id, "EUR") == 5000

    response = post_form(staff_client, refund_url(invoice_id, payment_id), {"amount": "20.00"})
    assert response.status_code == 303
    page = staff_client.get(f"/staff/invoices/{invoice_id}")
    assert "Refund recorded. The client is emailed about it." in text_of(page)
    assert credits.balance(client_id, "EUR") == 3000 and not db.session.scalars(select(CreditNote)).all()

    response = post_form(staff_client, refund_url(invoice_id, payment_id), {"amount": "60.00", "reason": "closing"})
    assert response.status_code == 303
    assert books(invoice_id, payment_id) == ("paid", 7000, 0, 8000)
    assert credits.balance(client_id, "EUR") == 0 and credit_noted(invoice_id) == 3000
    [note] = db.session.scalars(select(CreditNote)).all()
    last = db.session.scalars(select(Refund).order_by(Refund.id.desc())).first()
    assert (note.to_refund, note.refund_id, note.memo) == (3000, last.id, "closing")
    assert (last.amount, last.from_credit) == (6000, 3000), "one refund: the credit part and the invoice part"

    response = post_form(staff_client, refund_url(invoice_id, payment_id), {"amount": "70.01"})
    assert response.status_code == 422 and "At most €70.00 of this payment can be refunded." in text_of(response)


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

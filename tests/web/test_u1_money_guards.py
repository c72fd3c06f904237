"""Guards found in review of U1's invoice actions: a replacement never voids an invoice with money
on it or in flight, nor replaces one twice; "Mark as paid" and the excess confirmation record only
the amount the page showed, and never while a gateway payment for the invoice is on its way."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Invoice, Payment
from portal.services import invoices, payments
from portal.services.errors import ServiceError
from portal.services.events import Actor
from tests.support import make
from tests.support.web import post_form

STAFF = Actor("staff", None, "staff@portal.example")


@pytest.fixture
def acme(make):
    make.business(name="Tidewater Studio", currency="EUR")
    make.owner()
    return make.client()


def fresh(ident) -> Invoice:
    db.session.expire_all()
    return db.session.get(Invoice, ident)


def payments_on(invoice_id) -> int:
    return db.session.scalar(select(func.count()).select_from(Payment).where(Payment.invoice_id == invoice_id,
                                                                             Payment.status == "succeeded"))


def test_a_replacement_does_not_void_an_invoice_with_money_on_it(acme):
    original = make.invoice(acme)
    invoices.record_manual_payment(original, "40.00", "wire", "", "", STAFF)
    draft = invoices.replace(fresh(original.id), STAFF)
    with pytest.raises(ServiceError, match="€40.00 paid or credited on it"):
        invoices.finalize(draft, STAFF)
    db.session.rollback()
    assert fresh(original.id).status == "open" and fresh(draft.id).status == "draft"


def test_a_replacement_does_not_void_an_invoice_whose_bank_debit_is_clearing(acme):
    original = make.invoice(acme)
    attempt = payments.start_payment(original.id)
    payments.confirm_in_sandbox(attempt, "sepa_debit:DE89370400440532013000")
    draft = invoices.replace(fresh(original.id), STAFF)
    with pytest.raises(ServiceError, match="bank payment of €100.00 for this invoice is on its way"):
        invoices.finalize(draft, STAFF)
    db.session.rollback()
    assert fresh(original.id).status == "open"


def test_an_invoice_is_not_replaced_twice(acme):
    original = make.invoice(acme)
    first = invoices.replace(original, STAFF)
    second = invoices.replace(fresh(original.id), STAFF)
    invoices.finalize(first, STAFF)
    with pytest.raises(ServiceError, match="already replaced by"):
        invoices.finalize(fresh(second.id), STAFF)
    db.session.rollback()
    assert fresh(original.id).replaced_by_invoice_id == first.id


def test_mark_as_paid_records_only_the_amount_the_page_showed(acme, staff_client):
    invoice = make.invoice(acme)
    invoice_id = invoice.id
    invoices.record_manual_payment(invoice, "30.00", "cash", "", "", STAFF)  # meanwhile, elsewhere
    response = post_form(staff_client, f"/staff/invoices/{invoice_id}/mark-paid",
                         {"method": "wire", "expected_due": "10000"})  # the page said €100.00
    assert response.status_code in (302, 303)
    assert fresh(invoice_id).status == "open" and payments_on(invoice_id) == 1
    page = staff_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The amount due changed since this page was opened" in page
    ok = post_form(staff_client, f"/staff/invoices/{invoice_id}/mark-paid", {"method": "wire", "expected_due": "7000"})
    assert ok.status_code in (302, 303) and fresh(invoice_id).status == "paid"


def test_mark_as_paid_is_refused_while_a_bank_debit_clears(acme, staff_client):
    invoice = make.invoice(acme)
    invoice_id = invoice.id
    attempt = payments.start_payment(invoice_id)
    payments.confirm_in_sandbox(attempt, "sepa_debit:DE89370400440532013000")
    response = post_form(staff_client, f"/staff/invoices/{invoice_id}/mark-paid",
                         {"method": "wire", "expected_due": "10000"})
    page = staff_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "is on its way" in page
    assert fresh(invoice_id).status == "open" and payments_on(invoice_id) == 0
    with pytest.raises(ServiceError, match="on its way"):
        invoices.record_manual_payment(fresh(invoice_id), "100.00", "wire", "", "", STAFF)


def test_the_excess_confirmation_asks_again_if_the_amount_due_changed(acme, staff_client):
    invoice = make.invoice(acme, "10.00")
    invoice_id = invoice.id
    url = f"/staff/invoices/{invoice_id}/payments"
    asked = post_form(staff_client, url, {"amount": "100.00", "method": "wire", "received_on": "", "reference": ""})
    assert "€90.00 more than is due will go to" in asked.get_data(as_text=True)
    invoices.record_manual_payment(fresh(invoice_id), "5.00", "cash", "", "", STAFF)  # meanwhile
    again = post_form(staff_client, url, {"amount": "100.00", "method": "wire", "received_on": "", "reference": "",
                                          "confirm_excess": "1", "expected_due": "1000"})
    assert "€95.00 more than is due will go to" in again.get_data(as_text=True), "asked again, with the new excess"
    assert payments_on(invoice_id) == 1
    done = post_form(staff_client, url, {"amount": "100.00", "method": "wire", "received_on": "", "reference": "",
                                         "confirm_excess": "1", "expected_due": "500"})
    assert done.status_code in (302, 303) and fresh(invoice_id).status == "paid" and payments_on(invoice_id) == 2

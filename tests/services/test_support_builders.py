"""The shared builders (tests/support/make.py) make what they say, through the services: many tests
rely on their defaults, so those are pinned here."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from portal import clock
from portal.extensions import db
from portal.models import Event, Invoice, Payment
from tests.support import make


@pytest.fixture
def business(app):
    return make.business(name="Tidewater Studio", currency="EUR", invoice_number_format="INV-{seq:04d}",
                         payment_terms_days=14)


def events(type_: str) -> int:
    return db.session.scalar(select(func.count()).select_from(Event).where(Event.type == type_))


def test_the_make_fixture_is_this_module(request, app):
    assert request.getfixturevalue("make") is make


def test_an_invoice_by_default_is_one_finalized_100_euro_line_for_acme(business):
    invoice = make.invoice()
    assert (invoice.status, invoice.number, invoice.currency, invoice.total, invoice.amount_due) == (
        "open", "INV-0001", "EUR", 10000, 10000)
    assert invoice.client.name == "Acme Ltd" and invoice.client.contacts[0].email == "ana@acme.example"
    [line] = invoice.lines
    assert (line.description, line.quantity, line.unit_price, line.tax_name) == ("Work", 1, 10000, None)
    assert invoice.due_date == invoice.issue_date + timedelta(days=14)  # the business's terms
    assert events("invoice.finalized") == 1 and events("client.created") == 1


def test_lines_take_typed_text_or_minor_units_and_a_tax_rate(business):
    vat = make.tax_rate()
    invoice = make.invoice(lines=[("Design", 12000, vat), ("Printing", "2", "9.99", None),
                                  {"description": "As posted", "quantity": "1", "unit_price": "1.00"}])
    assert [(ln.description, ln.unit_price, ln.tax_percent) for ln in invoice.lines] == [
        ("Design", 12000, 23), ("Printing", 999, None), ("As posted", 100, None)]
    assert invoice.total == 12000 + 2760 + 1998 + 100
    taxed = make.invoice(tax_rate=vat, status="draft")
    assert taxed.lines[0].tax_name == "VAT" and taxed.number is None and taxed.status == "draft"


def test_statuses_and_due_dates(business):
    assert make.invoice(status="void").status == "void"
    assert make.invoice(status="uncollectible").status == "uncollectible"
    paid = make.invoice(status="paid")
    assert (paid.status, paid.amount_due, paid.amount_paid) == ("paid", 0, 10000)
    assert make.invoice(due=date(2030, 1, 31)).due_date == date(2030, 1, 31)
    assert make.invoice(due_in_days=-3).due_date == clock.today() - timedelta(days=3)
    with pytest.raises(ValueError):
        make.invoice(status="overdue")


def test_paid_invoice_and_payments_go_through_the_payment_services(business):
    acme = make.client()
    paid = make.paid_invoice(acme, "40.00")
    [payment] = db.session.scalars(select(Payment).where(Payment.invoice_id == paid.id)).all()
    assert (payment.method, payment.amount, payment.status) == ("wire", 4000, "succeeded")
    part = make.invoice(acme)
    make.payment(part, "30.00")
    card = make.card_payment(part)
    db.session.expire_all()
    assert card.amount == 7000 and db.session.get(Invoice, part.id).status == "paid"


def test_people_and_links(business):
    contact = make.contact_with_login()
    ben = make.contact(contact.client, password="client password 2")
    assert ben.client_id == contact.client_id and ben.portal_access and ben.plain_password == "client password 2"
    assert make.contact(contact.client, name="Cy", email="cy@acme.example").portal_access is False
    assert make.owner().role == "owner" and make.staff(email="sam2@portal.example").plain_password
    link = make.guest_link(make.invoice(contact.client))
    assert link.startswith("/pay/") and len(link) > 40
    service = make.service(tax_rate=make.tax_rate("Reduced", "6", inclusive=True))
    assert (service.name, service.unit_price, service.currency, service.tax_rate.name) == (
        "Brand workshop", 45000, "EUR", "Reduced")

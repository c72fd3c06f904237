"""Hostile numbers in every staff money and quantity field (issue X1, point 3).

Each field is posted through its real page, as the browser sends it, with values a person (or a
script) might type: exponents, huge numbers, signs, NaN, Infinity, too many decimals, non-ASCII
digits. Each answers 422 with a message beside the field, and nothing is written. A fixed
discount of 10^20 never reaches the database; a request body above the limit is refused with 413
before it is read.
"""
from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import (Charge, CreditEntry, CreditNote, Event, Invoice, InvoiceLine, Payment, Refund, Service,
                           TaxRate)
from portal.services import credits, payments
from portal.services.events import Actor
from tests.support import make
from tests.support.web import csrf_token, post_form

STAFF = Actor("staff", None, "staff@portal.example")

# What is typed into a money field, and must be refused.
AMOUNTS = ["1e1000000", "1e20", "9" * 1_000_000, "-1", "NaN", "Infinity", "1.234", "१२३", "12,5", "1e-1000000",
           "0x10", "1_000", "--1", "1.2.3"]
# The same for quantities (3 decimals allowed) and percentages (4 decimals allowed).
QUANTITIES = [v for v in AMOUNTS if v != "1.234"] + ["1.2345", "0"]
PERCENTS = [v for v in AMOUNTS if v != "1.234"] + ["1.23456", "100.01"]

TABLES = (Charge, CreditEntry, CreditNote, Event, InvoiceLine, Payment, Refund, Service, TaxRate)


def written() -> dict[str, int]:
    """Rows in every table a money form could write to."""
    db.session.expire_all()
    return {m.__tablename__: db.session.scalar(select(func.count()).select_from(m)) for m in TABLES}


def field_errors(response) -> list[str]:
    body = response.get_data(as_text=True)
    return [html.unescape(m).strip() for m in re.findall(r'class="field-error"[^>]*>([^<]+)<', body)]


def check_refused(response, value, before, invoice_id=None, invoice_before=None):
    shown = value if len(value) < 40 else value[:20] + "…"
    assert response.status_code == 422, f"{shown!r} answered {response.status_code}"
    errors = field_errors(response)
    assert errors and all(e for e in errors), f"{shown!r}: no field message"
    assert written() == before, f"{shown!r} wrote something"
    if invoice_id is not None:
        assert money_of(invoice_id) == invoice_before, f"{shown!r} changed the invoice"


def money_of(invoice_id) -> tuple:
    db.session.expire_all()
    inv = db.session.get(Invoice, invoice_id)
    return (inv.status, inv.subtotal, inv.discount_total, inv.total, inv.amount_paid, inv.amount_due,
            inv.credit_applied, inv.credit_noted, inv.discount_kind, inv.discount_fixed, inv.discount_percent)


# Fixtures ----------------------------------------------------------------------------------------

@pytest.fixture
def acme(make):
    make.business(name="Tidewater Studio", currency="EUR", timezone="UTC")
    return make.client(name="Acme Ltd")


@pytest.fixture
def draft(acme, staff_client):
    response = post_form(staff_client, "/staff/invoices/new", {"client_id": str(acme.id)})
    assert response.status_code == 303
    return int(response.headers["Location"].rsplit("/", 1)[1])


@pytest.fixture
def open_invoice(acme, staff_client):
    return make.invoice(acme).id


@pytest.fixture
def paid(acme, staff_client):
    """A €100.00 invoice paid by card through the sandbox: (invoice id, payment id)."""
    invoice = make.invoice(acme)
    payment = payments.confirm_in_sandbox(payments.start_payment(invoice.id), "card:4242424242424242")
    return invoice.id, payment.id


def editor_form(line: dict | None = None, **header) -> dict:
    data = {"currency": "EUR", "due_date": "", "memo": "", "footer": "", "discount_kind": "", "discount_value": ""}
    data.update(header)
    line = {"description": "Design", "quantity": "1", "unit_price": "10.00", **(line or {})}
    for key in ("description", "quantity", "unit_price", "discount_kind", "discount_value", "tax_rate_id",
                "service_id", "charge_id"):
        data[f"lines-0-{key}"] = str(line.get(key, ""))
    return data


# The draft editor --------------------------------------------------------------------------------

EDITOR_FIELDS = [
    ("unit price", lambda v: editor_form({"unit_price": v}), AMOUNTS),
    ("quantity", lambda v: editor_form({"quantity": v}), QUANTITIES),
    ("line fixed discount", lambda v: editor_form({"discount_kind": "fixed", "discount_value": v}), AMOUNTS),
    ("line percent discount", lambda v: editor_form({"discount_kind": "percent", "discount_value": v}), PERCENTS),
    ("invoice fixed discount", lambda v: editor_form(discount_kind="fixed", discount_value=v), AMOUNTS),
    ("invoice percent discount", lambda v: editor_form(discount_kind="percent", discount_value=v), PERCENTS),
]


@pytest.mark.parametrize("name, build, values", EDITOR_FIELDS, ids=[f[0] for f in EDITOR_FIELDS])
def test_the_draft_editor_refuses_hostile_numbers(draft, staff_client, name, build, values):
    before, invoice_before = written(), money_of(draft)
    for value in values:
        response = post_form(staff_client, f"/staff/invoices/{draft}", build(value))
        check_refused(response, value, before, draft, invoice_before)
    assert staff_client.get(f"/staff/invoices/{draft}").status_code == 200


@pytest.mark.parametrize("name, build, values", EDITOR_FIELDS, ids=[f[0] for f in EDITOR_FIELDS])
def test_the_live_preview_and_line_buttons_leave_a_hostile_number_out(draft, staff_client, name, build, values):
    """The live totals (htmx) answer 200 so htmx swaps them in, and say what is left out."""
    before, invoice_before = written(), money_of(draft)
    for value in values:
        shown = value if len(value) < 40 else value[:20] + "…"
        preview = post_form(staff_client, f"/staff/invoices/{draft}/preview", build(value), htmx=True)
        assert preview.status_code == 200, f"{shown!r} answered {preview.status_code}"
        body = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", preview.get_data(as_text=True))).split())
        if "line" in name or name in ("unit price", "quantity"):
            assert "1 line has a mistake and is left out of these totals until fixed." in body, shown
        lines = post_form(staff_client, f"/staff/invoices/{draft}/editor", {**build(value), "op": "add"}, htmx=True)
        assert lines.status_code == 200, f"{shown!r} answered {lines.status_code} to a line button"
        assert written() == before and money_of(draft) == invoice_before


def test_a_fixed_discount_of_ten_to_the_twentieth_is_refused_before_the_database(draft, staff_client):
    before, invoice_before = written(), money_of(draft)
    for where in ({"discount_kind": "fixed", "discount_value": "100000000000000000000"},):
        response = post_form(staff_client, f"/staff/invoices/{draft}", editor_form(**where))
        check_refused(response, where["discount_value"], before, draft, invoice_before)
        assert any(e.startswith("At most") for e in field_errors(response)), field_errors(response)
    line = editor_form({"discount_kind": "fixed", "discount_value": "100000000000000000000"})
    check_refused(post_form(staff_client, f"/staff/invoices/{draft}", line), "10^20", before, draft, invoice_before)
    # the next page works: the session was not left broken
    assert staff_client.get(f"/staff/invoices/{draft}").status_code == 200
    ok = post_form(staff_client, f"/staff/invoices/{draft}", editor_form(discount_kind="fixed", discount_value="2.50"))
    assert ok.status_code == 303
    assert money_of(draft)[3] == 750


def test_surrounding_spaces_are_forgiven(draft, staff_client):
    """ " 12.50 " is what a person meant as 12.50: the spaces around it are trimmed, not refused."""
    response = post_form(staff_client, f"/staff/invoices/{draft}",
                         editor_form({"unit_price": " 12.50 ", "quantity": " 2 "}))
    assert response.status_code == 303
    assert money_of(draft)[3] == 2500


# The invoice page: manual payment, refund, credit note, apply credit ---------------------------

def test_a_manual_payment_refuses_hostile_amounts(open_invoice, staff_client):
    before, invoice_before = written(), money_of(open_invoice)
    for value in AMOUNTS:
        response = post_form(staff_client, f"/staff/invoices/{open_invoice}/payments",
                             {"amount": value, "method": "wire", "received_on": "", "reference": ""})
        check_refused(response, value, before, open_invoice, invoice_before)
    ok = post_form(staff_client, f"/staff/invoices/{open_invoice}/payments",
                   {"amount": " 12.50 ", "method": "wire", "received_on": "", "reference": ""})
    assert ok.status_code == 303 and money_of(open_invoice)[4] == 1250


def test_a_refund_refuses_hostile_amounts(paid, staff_client):
    invoice_id, payment_id = paid
    before, invoice_before = written(), money_of(invoice_id)
    for value in AMOUNTS:
        response = post_form(staff_client, f"/staff/invoices/{invoice_id}/payments/{payment_id}/refund",
                             {"amount": value, "reason": "test"})
        check_refused(response, value, before, invoice_id, invoice_before)


@pytest.mark.parametrize("part", ["to_due", "to_balance", "to_refund", "to_outside"])
def test_a_credit_note_refuses_hostile_amounts(paid, staff_client, part):
    invoice_id, payment_id = paid
    before, invoice_before = written(), money_of(invoice_id)
    for value in AMOUNTS:
        response = post_form(staff_client, f"/staff/invoices/{invoice_id}/credit-notes",
                             {part: value, "payment_id": str(payment_id), "reason": "other", "memo": ""})
        check_refused(response, value, before, invoice_id, invoice_before)


def test_applying_credit_refuses_hostile_amounts(acme, open_invoice, staff_client):
    credits.add_credit(acme.id, "50.00", "EUR", "Goodwill", STAFF)
    before, invoice_before = written(), money_of(open_invoice)
    for value in AMOUNTS:
        response = post_form(staff_client, f"/staff/invoices/{open_invoice}/apply-credit", {"amount": value})
        check_refused(response, value, before, open_invoice, invoice_before)


# The client page: credit, one-time charge, charges ----------------------------------------------

@pytest.mark.parametrize("path", ["credits", "one-time-charges"])
def test_credit_and_one_time_charges_refuse_hostile_amounts(acme, staff_client, path):
    before = written()
    for value in AMOUNTS:
        response = post_form(staff_client, f"/staff/clients/{acme.id}/{path}",
                             {"amount": value, "currency": "EUR", "description": "Test"})
        check_refused(response, value, before)


@pytest.mark.parametrize("field, values", [("unit_price", AMOUNTS), ("quantity", QUANTITIES)])
def test_a_charge_refuses_hostile_numbers(acme, staff_client, field, values):
    before = written()
    for value in values:
        data = {"description": "Rush fee", "quantity": "1", "unit_price": "10.00", "currency": "EUR",
                "tax_rate_id": "", "service_id": "", field: value}
        response = post_form(staff_client, f"/staff/clients/{acme.id}/charges/new", data)
        check_refused(response, value, before)


# The catalogue ---------------------------------------------------------------------------------

def test_a_service_price_refuses_hostile_amounts(acme, staff_client):
    before = written()
    for value in AMOUNTS:
        response = post_form(staff_client, "/staff/catalogue/services/new",
                             {"name": "Hosting", "description": "", "unit_price": value, "currency": "EUR",
                              "tax_rate_id": "", "active": "y"})
        check_refused(response, value, before)


def test_a_tax_rate_refuses_hostile_percentages(acme, staff_client):
    before = written()
    for value in PERCENTS:
        response = post_form(staff_client, "/staff/catalogue/tax-rates/new",
                             {"name": "VAT", "percent": value, "inclusive": "exclusive", "active": "y"})
        check_refused(response, value, before)


# Sizes ---------------------------------------------------------------------------------------------

def test_a_million_digits_gets_a_field_message(draft, staff_client):
    """The length is checked before any conversion (see tests/unit/test_money_parse.py)."""
    before, invoice_before = written(), money_of(draft)
    response = post_form(staff_client, f"/staff/invoices/{draft}", editor_form({"unit_price": "9" * 1_000_000}))
    check_refused(response, "9" * 1_000_000, before, draft, invoice_before)
    assert "That amount is too large." in field_errors(response)


def test_a_ten_megabyte_upload_is_refused_with_413(acme, owner_client):
    token = csrf_token(owner_client, "/staff/settings")
    before = written()
    boundary = "hostile-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="logo"; filename="logo.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode() + b"\x89PNG\r\n\x1a\n" + b"0" * (10 * 1024 * 1024) \
        + f"\r\n--{boundary}--\r\n".encode()
    response = owner_client.post("/staff/settings", data=body,
                                 content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 413
    body = response.get_data(as_text=True)
    assert "2 MB" in body and "512 KB" in body
    assert written() == before
    assert owner_client.get("/staff/settings").status_code == 200


def test_a_ten_megabyte_webhook_is_refused_with_413_in_json(app, client):
    response = client.post("/webhooks/stripe", data=b"{" + b" " * (10 * 1024 * 1024) + b"}",
                           content_type="application/json", headers={"Stripe-Signature": "t=1,v1=x"})
    assert response.status_code == 413
    assert response.is_json and response.get_json()["error"]

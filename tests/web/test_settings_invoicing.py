"""The owner sets invoicing defaults on /staff/settings: next number, memo, terms, notifications."""
from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import Business, Event
from portal.services import invoices
from portal.services.events import Actor
from tests.support import make
from tests.support.web import post_form

STAFF = Actor("staff", None, "staff@portal.example")
XSS = '<script>alert("x")</script>'

FORM = {
    "name": "Tidewater Studio", "brand_color": "#3355cc", "currency": "EUR", "timezone": "UTC",
    "locale": "en_IE", "invoice_number_format": "INV-{seq:04d}", "payment_terms": "net",
    "payment_terms_days": "30", "invoice_next_number": "1", "invoice_next_number_was": "1",
    "invoice_memo": "", "invoice_footer": "", "notify_invoice_ready": "y", "notify_payment_receipt": "y",
    "notify_staff_on_payment": "y", "accept_card": "y", "accept_sepa_debit": "y", "accept_us_bank_account": "y",
}


@pytest.fixture
def business(make):
    return make.business(name="Tidewater Studio", currency="EUR", locale="en_IE", timezone="UTC",
                         invoice_number_format="INV-{seq:04d}", payment_terms_days=30)


def stored() -> Business:
    with Session(db.engine) as s:
        row = s.scalars(select(Business)).one()
        s.expunge(row)
        return row


def settings_events() -> list[Event]:
    with Session(db.engine) as s:
        rows = s.scalars(select(Event).where(Event.type == "settings.updated").order_by(Event.id)).all()
        s.expunge_all()
        return rows


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error"[^>]*>([^<]*)<', page)
    return html.unescape(match.group(1)).strip() if match else ""


def text(response) -> str:
    return response.get_data(as_text=True)


def finalize_invoices(client, n: int) -> list:
    done = []
    for _ in range(n):
        done.append(make.invoice(client, "10"))
    return done


def test_owner_sets_invoicing_defaults(owner_client, business):
    page = text(owner_client.get("/staff/settings"))
    assert 'name="invoice_next_number"' in page and 'name="invoice_memo"' in page
    assert "Net N days" in page and "Due on receipt" in page

    response = post_form(owner_client, "/staff/settings", {
        **FORM, "invoice_next_number": "1000", "invoice_memo": "Thank you for your business.\nPay by wire.",
        "payment_terms": "receipt", "payment_terms_days": "",
        "notify_invoice_ready": "", "notify_payment_receipt": "y", "notify_staff_on_payment": ""})
    assert response.status_code == 302
    saved = stored()
    assert saved.invoice_next_number == 1000
    assert saved.invoice_memo == "Thank you for your business.\nPay by wire."
    assert saved.payment_terms_days == 0
    assert (saved.notify_invoice_ready, saved.notify_payment_receipt, saved.notify_staff_on_payment) == (
        False, True, False)

    [event] = settings_events()
    assert event.before["invoice_next_number"] == 1 and event.after["invoice_next_number"] == 1000
    assert event.before["payment_terms_days"] == 30 and event.after["payment_terms_days"] == 0
    assert event.after["notify_invoice_ready"] is False and "notify_payment_receipt" not in event.after

    page = text(owner_client.get("/staff/settings"))
    assert "Settings saved." in page
    assert '<option selected value="receipt">Due on receipt</option>' in page
    assert 'value="1000"' in page
    assert "Thank you for your business." in page
    assert re.search(r'<input[^>]*id="notify_invoice_ready"[^>]*>', page).group(0).count("checked") == 0
    assert "checked" in re.search(r'<input[^>]*id="notify_payment_receipt"[^>]*>', page).group(0)


def test_defaults_apply_to_new_invoices(owner_client, business, make):
    post_form(owner_client, "/staff/settings", {**FORM, "invoice_next_number": "1000",
                                                "invoice_memo": "Default memo here", "payment_terms": "receipt"})
    client = make.client()
    assert invoices.create_draft(client, STAFF).memo == "Default memo here"
    [invoice] = finalize_invoices(client, 1)
    assert invoice.number == "INV-1000"
    assert invoice.due_date == invoice.issue_date  # due on receipt
    assert stored().invoice_next_number == 1001


def test_net_terms(owner_client, business):
    response = post_form(owner_client, "/staff/settings", {**FORM, "payment_terms": "net",
                                                           "payment_terms_days": "21"})
    assert response.status_code == 302
    assert stored().payment_terms_days == 21
    page = text(owner_client.get("/staff/settings"))
    assert '<option selected value="net">' in page and 'value="21"' in page


def test_net_terms_need_a_number_of_days(owner_client, business):
    response = post_form(owner_client, "/staff/settings", {**FORM, "payment_terms": "net",
                                                           "payment_terms_days": "", "invoice_memo": "Kept"})
    assert response.status_code == 422
    page = text(response)
    assert field_error(page, "payment_terms_days") == "Enter a number of days."
    assert "Kept" in page  # nothing typed is lost
    assert stored().payment_terms_days == 30 and stored().invoice_memo is None


def test_next_number_must_be_above_the_numbers_used(owner_client, business, make):
    finalize_invoices(make.client(), 3)
    assert stored().invoice_next_number == 4
    page = text(owner_client.get("/staff/settings"))
    assert "Numbers up to 3 are already used" in page

    for number in ("2", "3"):
        response = post_form(owner_client, "/staff/settings", {
            **FORM, "invoice_next_number": number, "invoice_next_number_was": "4", "invoice_memo": "New memo"})
        assert response.status_code == 422
        page = text(response)
        assert field_error(page, "invoice_next_number") == (
            "Invoice numbers up to 3 are already used: the next number must be 4 or higher.")
        assert "Nothing was saved." in page
        assert f'value="{number}"' in page and "New memo" in page
        assert stored().invoice_next_number == 4 and stored().invoice_memo is None
    assert settings_events() == []

    response = post_form(owner_client, "/staff/settings", {**FORM, "invoice_next_number": "50",
                                                           "invoice_next_number_was": "4"})
    assert response.status_code == 302
    assert stored().invoice_next_number == 50
    [invoice] = finalize_invoices(make.client(name="Next Co"), 1)
    assert invoice.number == "INV-0050"


@pytest.mark.parametrize("value, message", [
    ("0", "Use a whole number, 1 or more."),
    ("-5", "Use a whole number, 1 or more."),
    ("abc", "Use a whole number, 1 or more."),
    ("12.5", "Use a whole number, 1 or more."),
])
def test_bad_next_number(owner_client, business, value, message):
    response = post_form(owner_client, "/staff/settings", {**FORM, "invoice_next_number": value})
    assert response.status_code == 422
    assert field_error(text(response), "invoice_next_number") == message
    assert stored().invoice_next_number == 1


def test_a_page_left_open_while_invoices_are_numbered_still_saves(owner_client, business, make):
    page = text(owner_client.get("/staff/settings"))
    assert 'name="invoice_next_number_was" type="hidden" value="1"' in page
    finalize_invoices(make.client(), 2)  # meanwhile, staff finalize two invoices: next is 3
    response = post_form(owner_client, "/staff/settings", {**FORM, "invoice_memo": "Changed memo"})
    assert response.status_code == 302
    saved = stored()
    assert saved.invoice_memo == "Changed memo"
    assert saved.invoice_next_number == 3  # not put back to the 1 the page showed


def test_memo_is_limited_and_escaped(owner_client, business):
    response = post_form(owner_client, "/staff/settings", {**FORM, "invoice_memo": "x" * 5001})
    assert response.status_code == 422
    assert field_error(text(response), "invoice_memo") == "Field cannot be longer than 5000 characters."
    assert stored().invoice_memo is None

    post_form(owner_client, "/staff/settings", {**FORM, "invoice_memo": XSS})
    assert stored().invoice_memo == XSS
    page = text(owner_client.get("/staff/settings"))
    assert "<script>alert" not in page and "&lt;script&gt;alert(" in page


def test_staff_cannot_change_invoicing_settings(staff_client, business):
    page = text(staff_client.get("/staff/settings"))
    assert "Only the owner can change these settings." in page
    response = post_form(staff_client, "/staff/settings", {**FORM, "invoice_next_number": "500"})
    assert response.status_code == 403
    assert stored().invoice_next_number == 1
    assert settings_events() == []


def test_settings_link_to_email_templates(owner_client, business):
    page = text(owner_client.get("/staff/settings"))
    assert 'href="/staff/email-templates"' in page

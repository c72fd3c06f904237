"""Paying from the emailed link in a real Chromium, with the sandbox gateway (the default).

Staff send an invoice through the services; the worker emails it over SMTP; the guest opens the
email's Pay link, sees the invoice with the "Test mode" banner, and pays with a test card. A
declined card says so on the page and leaves the invoice open; a retry on the same page pays it.
No page logs a console error or a CSP violation along the way.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from portal.extensions import db
from portal.models import Invoice
from portal.services import invoices
from portal.services.events import Actor
from tests.support.browser import BRAND
from tests.support.web import email_text, links

pytestmark = pytest.mark.browser

STAFF = Actor("staff", None, "staff@portal.example")
CONTACT = "ana@acme.example"
VISA = "4242 4242 4242 4242"
DECLINED = "4000 0000 0000 0002"


def send_invoice(make) -> tuple[int, str]:
    """A €100.00 invoice built and sent through the services, as staff would: (id, number)."""
    make.business(name="Tidewater Studio", brand_color=BRAND, currency="EUR", invoice_number_format="INV-{seq:04d}")
    make.owner()
    client = make.client()
    draft = invoices.create_draft(client, STAFF)
    invoices.save_draft(draft, invoices.DraftInput(currency="EUR", lines=[
        {"description": "Brand workshop", "quantity": "1", "unit_price": "100.00"}]), STAFF)
    assert invoices.send(draft, STAFF) == [CONTACT]
    invoice_id = draft.id
    number = invoice_row(invoice_id).number
    return invoice_id, number


def invoice_row(invoice_id: int) -> Invoice:
    """The invoice as the database has it now (what the browser's requests committed)."""
    db.session.rollback()  # end any read transaction: see the live server's commits, block no writer
    invoice = db.session.get(Invoice, invoice_id)
    db.session.expunge(invoice)
    db.session.rollback()
    return invoice


def emailed_pay_path(smtp_server, live_server: str) -> str:
    """The Pay link of the invoice email, as a path on the live server."""
    [message] = smtp_server.to(CONTACT)
    assert message["Subject"] == "Tidewater Studio sent you an invoice"
    pay_link = next(link for link in links(email_text(message)) if "/pay/" in link)
    # The email was rendered after live_server set PORTAL_BASE_URL, so the link points at it.
    assert pay_link.startswith(f"{live_server}/pay/"), pay_link
    path = urlsplit(pay_link).path
    assert re.fullmatch(r"/pay/[^/]+", path), path
    return path


def fill_card(page: Page, number: str) -> None:
    page.get_by_label("Card", exact=True).check()
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry (MM/YY)").fill("12/34")
    page.get_by_label("CVC").fill("123")


def expect_open_guest_page(page: Page, number: str) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Invoice {number} from Tidewater Studio")
    banner = page.get_by_role("note")
    expect(banner).to_contain_text("Test mode.")
    expect(banner).to_contain_text("No real money moves.")
    expect(page.locator(".invoice-doc")).to_contain_text(f"Invoice {number}")
    expect(page.locator(".invoice-doc")).to_contain_text("Brand workshop")
    payment = page.locator("#payment")
    expect(payment.locator(".pay-amount")).to_contain_text("€100.00 due")
    expect(payment.get_by_role("button", name="Pay €100.00", exact=True)).to_be_visible()
    expect(payment.get_by_label("Card", exact=True)).to_be_checked()


def expect_paid_guest_page(page: Page, number: str) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Invoice {number} from Tidewater Studio")
    expect(page.get_by_role("status")).to_contain_text("Paid. This invoice is paid in full.")
    payment = page.locator("#payment")
    expect(payment).to_contain_text("This invoice is paid. Nothing is due. Thank you!")
    expect(payment.locator("form")).to_have_count(0)
    expect(page.get_by_label("Card number")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile(r"^Pay "))).to_have_count(0)


def expect_thank_you(page: Page, pay_path: str, number: str) -> None:
    expect(page).to_have_url(re.compile(re.escape(f"{pay_path}/done") + "$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you!")
    expect(page.locator(".pay-done")).to_contain_text(f"Your payment of €100.00 for invoice {number} was received.")
    expect(page.get_by_role("note")).to_contain_text("Test mode.")


def test_guest_pays_the_emailed_invoice_with_a_test_card(
        page, problems, make, run_worker, smtp_server, live_server):
    invoice_id, number = send_invoice(make)
    assert invoice_row(invoice_id).status == "open"
    assert run_worker() >= 1
    pay_path = emailed_pay_path(smtp_server, live_server)

    page.goto(pay_path)
    expect_open_guest_page(page, number)
    fill_card(page, VISA)
    page.get_by_role("button", name="Pay €100.00", exact=True).click()
    expect_thank_you(page, pay_path, number)

    invoice = invoice_row(invoice_id)
    assert invoice.status == "paid" and invoice.amount_due == 0 and invoice.amount_paid == invoice.total

    # The receipt reaches the contact through SMTP once the worker runs.
    run_worker()
    [receipt] = [m for m in smtp_server.to(CONTACT) if m["Subject"].startswith("Receipt")]
    assert receipt["Subject"] == f"Receipt for invoice {number} from Tidewater Studio"
    body = email_text(receipt)
    assert "Amount paid: €100.00" in body and "Method: Card" in body and f"Invoice: {number}" in body

    # The emailed link now shows a paid invoice and no way to pay it again ...
    page.goto(pay_path)
    expect_paid_guest_page(page, number)
    # ... and so does the receipt's own link.
    receipt_link = next(link for link in links(body) if "/pay/" in link)
    assert receipt_link.startswith(f"{live_server}/pay/")
    page.goto(urlsplit(receipt_link).path)
    expect_paid_guest_page(page, number)


def test_a_declined_card_says_so_and_a_retry_on_the_same_page_pays(
        page, problems, make, run_worker, smtp_server, live_server):
    invoice_id, number = send_invoice(make)
    run_worker()
    pay_path = emailed_pay_path(smtp_server, live_server)

    page.goto(pay_path)
    expect_open_guest_page(page, number)
    # The declined attempt answers 422, which Chromium reports as a failed load: that one is expected.
    problems.expect_error_status(422, f"{pay_path}/pay")
    fill_card(page, DECLINED)
    page.get_by_role("button", name="Pay €100.00", exact=True).click()

    alert = page.locator("#payment").get_by_role("alert")
    expect(alert).to_have_text("Your card was declined.")
    card_number = page.get_by_label("Card number")
    expect(card_number).to_have_value(DECLINED)  # what was typed stays
    expect(card_number).to_have_attribute("aria-invalid", "true")
    expect(card_number).to_have_attribute("aria-describedby", "pay-error")
    expect(page.get_by_label("Expiry (MM/YY)")).to_have_value("12/34")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Invoice {number} from Tidewater Studio")
    expect(page.get_by_role("note")).to_contain_text("Test mode.")
    expect(page.get_by_role("button", name="Pay €100.00", exact=True)).to_be_visible()

    invoice = invoice_row(invoice_id)
    assert invoice.status == "open" and invoice.status_label == "Sent"
    assert invoice.amount_paid == 0 and invoice.amount_due == invoice.total

    # Retry on the very same page with a good card.
    card_number.fill(VISA)
    page.get_by_role("button", name="Pay €100.00", exact=True).click()
    expect_thank_you(page, pay_path, number)
    assert invoice_row(invoice_id).status == "paid"

    run_worker()
    subjects = [m["Subject"] for m in smtp_server.to(CONTACT)]
    assert f"Your payment for invoice {number} didn't go through" in subjects
    assert f"Receipt for invoice {number} from Tidewater Studio" in subjects

    page.goto(pay_path)
    expect_paid_guest_page(page, number)

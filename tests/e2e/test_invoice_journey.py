"""The invoicing journey in a real Chromium: staff add a client, build an invoice from a catalogue
service and a one-off line with tax and discounts, watch the server recompute the total as they
type, and send it; the email arrives with the PDF, and its Pay link opens the guest page showing
the same total as the staff page.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from portal.billing.money import format_money
from portal.services import invoices
from tests.support.browser import BRAND, sign_in
from tests.support.web import email_text, links

pytestmark = pytest.mark.browser


def expected_total(lines: list[dict], **header) -> str:
    """What the server computes for these fields (the test does no money math of its own)."""
    totals, errors = invoices.preview(invoices.DraftInput(
        currency="EUR", discount_kind=header.get("discount_kind", ""),
        discount_value=header.get("discount_value", ""), lines=lines))
    assert errors == {}
    return format_money(totals.total, "EUR")


def test_staff_build_and_send_an_invoice_and_the_guest_sees_the_same_total(
        page, problems, make, run_worker, smtp_server, live_server):
    make.business(name="Tidewater Studio", brand_color=BRAND, currency="EUR", invoice_number_format="INV-{seq:04d}")
    vat = make.tax_rate()
    make.service("Brand workshop", 45000, "EUR", vat)
    vat_id = str(vat.id)
    user = make.staff()
    sign_in(page, "staff", user.email, user.plain_password)
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")

    # A new client with a billing contact.
    page.goto("/staff/clients/new")
    page.get_by_label("Name", exact=True).fill("Harbour Lights Ltd")
    page.get_by_label("Contact name").fill("Nia Lewis")
    page.get_by_label("Contact email").fill("nia@harbour.example")
    page.get_by_role("button", name="Add client").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Harbour Lights Ltd")

    # Invoices → New invoice → pick the client.
    page.locator("header nav").get_by_role("link", name="Invoices", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Invoices")
    page.get_by_role("button", name="New invoice").click()
    page.get_by_label("Find the client").press_sequentially("harbour", delay=20)
    page.get_by_role("button", name="Start an invoice for Harbour Lights Ltd").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Draft invoice")
    expect(page.get_by_text("Bill to Harbour Lights Ltd")).to_be_visible()
    page.evaluate("window.__noReload = 'still here'")
    total = page.locator('#invoice-totals [data-total="total"]')
    expect(total).to_have_text("€0.00")

    # A line from the catalogue: description, price and tax fill in; the total follows.
    page.get_by_label("Add from the catalogue").select_option(label="Brand workshop · €450.00")
    page.get_by_role("button", name="Add service").click()
    expect(page.get_by_label("Line 1 description")).to_have_value("Brand workshop")
    expect(page.get_by_label("Line 1 unit price")).to_have_value("450.00")
    expect(page.get_by_label("Line 1 tax")).to_have_value(vat_id)
    service_line = {"description": "Brand workshop", "quantity": "1", "unit_price": "450.00", "tax_rate_id": vat_id}
    expect(total).to_have_text(expected_total([service_line]))

    # A one-off line with tax and its own discount, typed: the server recomputes as we go.
    page.get_by_role("button", name="Add line").click()
    page.get_by_label("Line 2 description").fill("Printing, one-off")
    page.get_by_label("Line 2 quantity").fill("3")
    page.get_by_label("Line 2 unit price").press_sequentially("19.99", delay=20)
    one_off = {"description": "Printing, one-off", "quantity": "3", "unit_price": "19.99"}
    expect(total).to_have_text(expected_total([service_line, one_off]))
    page.get_by_label("Line 2 tax").select_option(label="VAT 23%")
    one_off["tax_rate_id"] = vat_id
    expect(total).to_have_text(expected_total([service_line, one_off]))
    page.get_by_label("Line 2 discount type").select_option(label="%")
    page.get_by_label("Line 2 discount", exact=True).fill("10")
    one_off |= {"discount_kind": "percent", "discount_value": "10"}
    expect(total).to_have_text(expected_total([service_line, one_off]))

    # And a discount on the whole invoice.
    page.get_by_label("Invoice discount").select_option(label="Fixed amount")
    page.get_by_label("Discount value").fill("25.00")
    final = expected_total([service_line, one_off], discount_kind="fixed", discount_value="25.00")
    expect(total).to_have_text(final)
    expect(page.locator("#invoice-totals")).to_contain_text("Discounts")
    assert page.evaluate("window.__noReload") == "still here"  # all of it without leaving the page

    # Send: the portal's confirm dialog names who is emailed; Cancel changes nothing, Send goes.
    page.get_by_role("button", name="Save & send").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Finalize, lock and email this invoice to nia@harbour.example")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("heading", level=1)).to_have_text("Draft invoice")
    page.get_by_role("button", name="Save & send").click()
    dialog.get_by_role("button", name="Send", exact=True).click()
    # Finalized, numbered, emailed.
    expect(page.get_by_text("Invoice INV-0001 sent to nia@harbour.example.")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Invoice INV-0001")
    expect(page.locator("h1 .badge")).to_have_text("Sent")
    staff_total = page.locator(".invoice-doc .total-row td")
    expect(staff_total).to_have_text(final)
    expect(page.locator(".invoice-timeline")).to_contain_text("Invoice sent to nia@harbour.example")

    assert run_worker() >= 1
    [message] = smtp_server.to("nia@harbour.example")
    assert message["Subject"] == "Tidewater Studio sent you an invoice"
    pdfs = [part for part in message.walk() if part.get_content_type() == "application/pdf"]
    assert [part.get_filename() for part in pdfs] == ["INV-0001.pdf"]
    pay_link = next(link for link in links(email_text(message)) if "/pay/" in link)
    assert pay_link.startswith(f"{live_server}/pay/")

    # The Pay link opens the guest page, showing the same total.
    guest = page.context.browser.new_context(base_url=live_server)
    try:
        visitor = problems.watch(guest.new_page())
        visitor.set_default_timeout(10_000)
        visitor.goto(pay_link)
        expect(visitor.locator(".invoice-doc .total-row td")).to_have_text(final)
        expect(visitor.locator(".invoice-doc")).to_contain_text("Invoice INV-0001")
        expect(visitor.locator(".invoice-doc")).to_contain_text("Printing, one-off")
        expect(visitor.locator(".invoice-doc")).to_contain_text("Brand workshop")
    finally:
        guest.close()
    assert re.fullmatch(r"€[\d,]+\.\d\d", final)

"""The portal's confirm dialog in a real Chromium (U1 12): "Mark as paid" and "Void" ask in one styled
<dialog> (not window.confirm), Cancel changes nothing, Confirm posts; a refused refund (422) comes
back as the page with its error, as a plain form post would.
"""
from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import Payment
from tests.support.browser import BRAND, sign_in

pytestmark = pytest.mark.browser


def test_mark_as_paid_void_and_refund_ask_in_the_dialog(page, problems, make, live_server):
    make.business(name="Tidewater Studio", brand_color=BRAND, currency="EUR", invoice_number_format="INV-{seq:04d}")
    acme = make.client(name="Acme Ltd")
    paid_id = make.invoice(acme, "40.00").id
    void_id = make.invoice(acme, "15.00").id
    user = make.staff()
    sign_in(page, "staff", user.email, user.plain_password)
    page.on("dialog", lambda d: pytest.fail(f"window.{d.type}() was used: {d.message}"))

    page.goto(f"/staff/invoices/{paid_id}")
    page.get_by_label("Paid by").select_option(label="Cash")
    page.get_by_role("button", name="Mark as paid").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Mark invoice INV-0001 as paid? This records €40.00 received today from Acme Ltd.")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("h1 .badge")).to_have_text("Sent")
    page.get_by_role("button", name="Mark as paid").click()
    dialog.get_by_role("button", name="Mark as paid").click()
    expect(page.get_by_text("Invoice INV-0001 marked as paid: €40.00 (Cash, received today).")).to_be_visible()
    expect(page.locator("h1 .badge")).to_have_text("Paid")

    # A refund over the payment: the dialog asks, the server refuses (422), the page shows why.
    with Session(db.engine) as s:
        payment_id = s.scalar(select(Payment.id).where(Payment.invoice_id == paid_id))
    problems.expect_error_status(422, f"/staff/invoices/{paid_id}/payments/{payment_id}/refund#refund-{payment_id}")
    page.locator("summary", has_text="Refund").click()
    page.get_by_label("Amount (EUR)").fill("99.00")
    page.get_by_role("button", name="Refund", exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="Refund").click()
    expect(page.locator(".field-error")).to_be_visible()
    expect(page.locator("h1 .badge")).to_have_text("Paid")

    page.goto(f"/staff/invoices/{void_id}")
    page.locator("summary", has_text="Void (cancel) this invoice").click()
    page.get_by_role("button", name="Void invoice").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Void invoice INV-0002?")
    dialog.get_by_role("button", name="Void invoice").click()
    expect(page.get_by_text("Invoice INV-0002 voided (cancelled).")).to_be_visible()
    expect(page.locator("h1 .badge")).to_have_text("Cancelled")

"""A client's contact pays through the portal in a real Chromium, with the sandbox gateway (issue 5).

Staff finalize three invoices through the services. The contact signs in, saves a test card on the
"Payment methods" tab, pays one invoice in place from the Invoices tab, then pays the other two in
one go with "Pay all open invoices" and the saved card. The database has every invoice paid and the
"pay all" money spread oldest first, exact to the cent; the Payments tab lists both payments and
their receipts show which invoices each one paid. No page logs a console error or a CSP violation.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Invoice, Payment, PaymentAllocation
from tests.support import make
from tests.support.browser import BRAND

pytestmark = pytest.mark.browser

VISA = "4242 4242 4242 4242"


def invoice_for(client_row, amount: str, due_in_days: int) -> tuple[int, str]:
    """A finalized EUR invoice for ``amount``, due in ``due_in_days``: (id, number)."""
    invoice = make.invoice(client_row, amount, description="Studio work", due_in_days=due_in_days)
    return invoice.id, invoice.number


def fresh(query):
    """Run ``query`` against what the database has now (the live server's commits), holding no
    read transaction afterwards; returns plain rows."""
    db.session.rollback()
    try:
        return [tuple(row) for row in db.session.execute(query)]
    finally:
        db.session.rollback()


def invoice_states(ids: list[int]) -> list[tuple[str, int, int, int]]:
    found = dict((row[0], row[1:]) for row in fresh(
        select(Invoice.id, Invoice.status, Invoice.total, Invoice.amount_paid, Invoice.amount_due)
        .where(Invoice.id.in_(ids))))
    return [found[i] for i in ids]


def payments_of(client_id: int) -> list[tuple]:
    return fresh(select(Payment.id, Payment.invoice_id, Payment.invoice_ids, Payment.amount, Payment.status,
                        Payment.payment_method_id, Payment.credited_amount)
                 .where(Payment.client_id == client_id).order_by(Payment.id))


def allocations_of(payment_id: int) -> list[tuple[int, int]]:
    return fresh(select(PaymentAllocation.invoice_id, PaymentAllocation.amount)
                 .where(PaymentAllocation.payment_id == payment_id).order_by(PaymentAllocation.id))


def nav(page: Page, name: str):
    return page.locator("header nav").get_by_role("link", name=name, exact=True)


def invoice_row(page: Page, number: str):
    """The row of invoice ``number`` in the portal's invoice table."""
    return page.locator("table.client-invoices tbody tr").filter(
        has=page.get_by_role("link", name=number, exact=True))


@pytest.fixture
def studio(make):
    """Tidewater Studio (EUR), a contact with a portal login, and three finalized invoices created
    so that id order is not oldest-first order: 250.01 due in 40 days, 120.00 in 20, 33.33 in 5."""
    make.business(name="Tidewater Studio", brand_color=BRAND, currency="EUR", invoice_number_format="INV-{seq:04d}")
    make.owner()
    contact = make.contact_with_login(client_name="Acme Robotics Ltd")
    late_id, late = invoice_for(contact.client, "250.01", 40)
    middle_id, middle = invoice_for(contact.client, "120.00", 20)
    soon_id, soon = invoice_for(contact.client, "33.33", 5)
    db.session.commit()
    return {"email": contact.email, "password": contact.plain_password, "client_id": contact.client_id,
            "late": (late_id, late), "middle": (middle_id, middle), "soon": (soon_id, soon)}


def test_contact_adds_a_card_pays_one_invoice_then_pays_all_and_sees_receipts_and_history(
        page, problems, studio):
    late_id, late = studio["late"]
    middle_id, middle = studio["middle"]
    soon_id, soon = studio["soon"]
    expiry_year = clock.today().year + 3
    expiry = f"12/{expiry_year % 100:02d}"

    # Sign in: the Billing tab offers to pay all three invoices.
    page.goto("/portal/login")
    page.get_by_label("Email").fill(studio["email"])
    page.get_by_label("Password").fill(studio["password"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/portal/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Ana Ribeiro")
    expect(page.locator("#pay-all")).to_contain_text("Pay all open invoices (3, €403.34)")

    # Payment methods: save a test card; it is listed as the default.
    nav(page, "Payment methods").click()
    expect(page).to_have_url(re.compile(r"/portal/payment-methods$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Payment methods")
    expect(page.locator("#saved-methods")).to_contain_text("No saved payment methods yet.")
    add = page.locator("#add-method")
    expect(add.get_by_label("Card", exact=True)).to_be_checked()
    add.get_by_label("Card number").fill(VISA)
    add.get_by_label("Expiry (MM/YY)").fill(expiry)
    add.get_by_label("CVC").fill("123")
    add.get_by_role("button", name="Save payment method").click()
    expect(page).to_have_url(re.compile(r"/portal/payment-methods$"))
    expect(page.locator(".flashes")).to_contain_text(f"Saved: Visa ending 4242, expires 12/{expiry_year}.")
    saved = page.locator("table.saved-methods tbody tr")
    expect(saved).to_have_count(1)
    expect(saved.get_by_role("rowheader")).to_contain_text("Visa")
    expect(saved.get_by_role("rowheader")).to_contain_text("Default")
    expect(saved).to_contain_text("ending 4242")
    expect(saved).to_contain_text(f"12/{expiry_year}")

    # Invoices: open the €120.00 one and pay it in place with the test card.
    nav(page, "Invoices").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Invoices")
    expect(page.locator("table.client-invoices tbody tr")).to_have_count(3)
    page.get_by_role("link", name=middle, exact=True).click()
    expect(page).to_have_url(re.compile(rf"/portal/invoices/{middle_id}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Invoice {middle}")
    expect(page.get_by_role("note")).to_contain_text("Test mode.")
    payment_panel = page.locator("#payment")
    expect(payment_panel.locator(".pay-amount")).to_contain_text("€120.00 due")
    payment_panel.get_by_label("Card", exact=True).check()
    payment_panel.get_by_label("Card number").fill(VISA)
    payment_panel.get_by_label("Expiry (MM/YY)").fill(expiry)
    payment_panel.get_by_label("CVC").fill("123")
    payment_panel.get_by_role("button", name="Pay €120.00", exact=True).click()

    expect(page).to_have_url(re.compile(rf"/portal/invoices/{middle_id}$"))
    expect(page.locator(".flashes")).to_contain_text("Payment received. Thank you!")
    expect(page.locator(".invoice-notice")).to_contain_text("Paid. This invoice is paid in full.")
    expect(payment_panel).to_contain_text("This invoice is paid. Nothing is due. Thank you!")
    expect(payment_panel.get_by_role("button", name=re.compile(r"^Pay "))).to_have_count(0)
    assert invoice_states([middle_id]) == [("paid", 12000, 12000, 0)]

    nav(page, "Invoices").click()
    expect(invoice_row(page, middle).locator(".badge")).to_have_text("Paid")
    expect(invoice_row(page, soon).locator(".badge")).not_to_have_text("Paid")
    expect(invoice_row(page, late).locator(".badge")).not_to_have_text("Paid")

    # Billing: "Pay all open invoices" now covers the other two, oldest first.
    nav(page, "Billing").click()
    offer = page.locator("#pay-all").get_by_role("button", name=re.compile(r"^Pay all open invoices"))
    expect(offer).to_have_text("Pay all open invoices (2, €283.34)")
    offer.click()
    expect(page).to_have_url(re.compile(r"/portal/pay-all\?currency=EUR$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Pay all open invoices in EUR")
    listed = page.locator("table.pay-all-invoices tbody tr")
    expect(listed).to_have_count(2)
    expect(listed.nth(0)).to_contain_text(soon)
    expect(listed.nth(0)).to_contain_text("€33.33")
    expect(listed.nth(1)).to_contain_text(late)
    expect(listed.nth(1)).to_contain_text("€250.01")
    expect(page.locator("table.pay-all-invoices tfoot")).to_contain_text("€283.34")
    expect(page.locator("#payment")).to_contain_text("Your default payment method: VISA •••• 4242")
    page.get_by_role("button", name="Pay €283.34 with VISA •••• 4242", exact=True).click()

    expect(page).to_have_url(re.compile(r"/portal/payments/\d+/receipt$"))
    expect(page.locator(".flashes")).to_contain_text("Payment received. Thank you!")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Receipt R-")

    # The database: everything is paid, and the "pay all" money went oldest first, exact.
    assert invoice_states([late_id, middle_id, soon_id]) == [
        ("paid", 25001, 25001, 0), ("paid", 12000, 12000, 0), ("paid", 3333, 3333, 0)]
    single, together = payments_of(studio["client_id"])
    assert single[1:5] == (middle_id, None, 12000, "succeeded") and single[6] == 0
    assert together[1] is None and together[2] == [soon_id, late_id]
    assert together[3:5] == (28334, "succeeded") and together[5] is not None and together[6] == 0
    assert allocations_of(single[0]) == [(middle_id, 12000)]
    assert allocations_of(together[0]) == [(soon_id, 3333), (late_id, 25001)]
    expect(page).to_have_url(re.compile(rf"/portal/payments/{together[0]}/receipt$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Receipt R-{together[0]:06d}")

    # Nothing is left to pay: the Billing tab no longer offers "pay all".
    nav(page, "Billing").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Ana Ribeiro")
    expect(page.locator("#pay-all")).to_have_count(0)

    # Payments: both payments, newest first, each with its receipt.
    nav(page, "Payments").click()
    expect(page).to_have_url(re.compile(r"/portal/payments$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Payments")
    history = page.locator("table.client-payments tbody tr")
    expect(history).to_have_count(2)
    expect(history.nth(0)).to_contain_text("2 invoices (pay all)")
    expect(history.nth(0)).to_contain_text("€283.34")
    expect(history.nth(0)).to_contain_text("Received")
    expect(history.nth(1).get_by_role("link", name=middle, exact=True)).to_be_visible()
    expect(history.nth(1)).to_contain_text("€120.00")
    expect(history.nth(1)).to_contain_text("Received")

    # The single payment's receipt: the one invoice and its amount.
    history.nth(1).get_by_role("link", name=re.compile(r"^Receipt for the payment of €120\.00")).click()
    expect(page).to_have_url(re.compile(rf"/portal/payments/{single[0]}/receipt$"))
    receipt = page.locator("article.receipt-doc")
    expect(receipt.locator(".receipt-amount")).to_have_text("€120.00")
    expect(receipt.locator(".invoice-buyer-name")).to_have_text("Acme Robotics Ltd")
    lines = receipt.locator("tr.receipt-line")
    expect(lines).to_have_count(1)
    expect(lines.nth(0)).to_contain_text(f"Invoice {middle}")
    expect(lines.nth(0)).to_contain_text("€120.00")
    expect(receipt.locator(".total-row")).to_contain_text("€120.00")

    # The "pay all" receipt: both invoices, oldest first, with what each got, and the saved card.
    page.get_by_role("link", name="← All payments").click()
    expect(page).to_have_url(re.compile(r"/portal/payments$"))
    page.get_by_role("link", name=re.compile(r"^Receipt for the payment of €283\.34")).click()
    expect(page).to_have_url(re.compile(rf"/portal/payments/{together[0]}/receipt$"))
    receipt = page.locator("article.receipt-doc")
    expect(receipt.locator(".receipt-amount")).to_have_text("€283.34")
    expect(receipt.locator(".receipt-method")).to_contain_text("VISA •••• 4242")
    lines = receipt.locator("tr.receipt-line")
    expect(lines).to_have_count(2)
    expect(lines.nth(0)).to_contain_text(f"Invoice {soon}")
    expect(lines.nth(0)).to_contain_text("€33.33")
    expect(lines.nth(1)).to_contain_text(f"Invoice {late}")
    expect(lines.nth(1)).to_contain_text("€250.01")
    expect(receipt.locator(".receipt-credit")).to_have_count(0)
    expect(receipt.locator(".total-row")).to_contain_text("€283.34")

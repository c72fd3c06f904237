"""H1 6 in a real Chromium: a button that pays, charges a card or renders a PDF shows that it is working and
is disabled while it runs, so pressing it twice sends one request; without JavaScript the forms still work.

The server is slowed inside the test only (the view is wrapped in a delay), so the second press lands while
the first request is still on its way; the server's own locks are not what these tests count on: they
count the requests the browser sent.
"""
from __future__ import annotations

import functools
import json
import re
import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import Delivery, Invoice, Payment
from tests.support.browser import BRAND, Problems, sign_in

pytestmark = pytest.mark.browser

CONTACT = "ana@acme.example"
VISA = "4242 4242 4242 4242"


@pytest.fixture
def slow(app, monkeypatch):
    """``slow(endpoint, seconds)``: that view answers ``seconds`` later (for this test only)."""
    def slow_down(endpoint: str, seconds: float = 1.0) -> None:
        view = app.view_functions[endpoint]

        @functools.wraps(view)
        def slowed(*args, **kwargs):
            time.sleep(seconds)
            return view(*args, **kwargs)

        monkeypatch.setitem(app.view_functions, endpoint, slowed)

    return slow_down


def requests_to(page: Page, method: str, path: str) -> list[str]:
    """The URLs of the ``method`` requests the page sends to ``path`` from now on (a live list)."""
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url)
            if request.method == method and urlsplit(request.url).path == path else None)
    return seen


def guest_invoice(make) -> tuple[int, str, str]:
    """A €100.00 open invoice of Acme and a guest link to it: (id, number, "/pay/<token>")."""
    make.business(name="Tidewater Studio", brand_color=BRAND, currency="EUR", invoice_number_format="INV-{seq:04d}")
    invoice = make.invoice(make.client(), "100.00")
    return invoice.id, invoice.number, make.guest_link(invoice)


def fill_card(page: Page, number: str) -> None:
    page.get_by_label("Card", exact=True).check()
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry (MM/YY)").fill("12/34")
    page.get_by_label("CVC").fill("123")


def payments_of(invoice_id: int) -> list[Payment]:
    with Session(db.engine) as session:
        return list(session.scalars(select(Payment).where(Payment.invoice_id == invoice_id)))


def receipts_to(address: str) -> list[Delivery]:
    with Session(db.engine) as session:
        return [d for d in session.scalars(select(Delivery).where(Delivery.recipient == address))
                if (d.subject or "").startswith("Receipt for invoice")]


def invoice_row(invoice_id: int) -> Invoice:
    with Session(db.engine) as session:
        return session.get(Invoice, invoice_id)


def expect_thank_you(page: Page, link: str) -> None:
    expect(page).to_have_url(re.compile(re.escape(f"{link}/done") + "$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you!")


def assert_paid_once(invoice_id: int) -> None:
    [payment] = payments_of(invoice_id)
    assert (payment.status, payment.amount) == ("succeeded", 10000)
    invoice = invoice_row(invoice_id)
    assert (invoice.status, invoice.amount_paid, invoice.amount_due) == ("paid", 10000, 0)
    assert len(receipts_to(CONTACT)) == 1


@pytest.mark.parametrize("twice", ["double click", "two clicks", "Enter twice"])
def test_a_guest_who_presses_pay_twice_pays_once(twice, page, problems, make, slow):
    invoice_id, _, link = guest_invoice(make)
    slow("pay.pay")
    page.goto(link)
    fill_card(page, VISA)
    posts = requests_to(page, "POST", f"{link}/pay")
    pay = page.get_by_role("button", name="Pay €100.00", exact=True)

    # The mouse and the keyboard themselves (a locator would wait for the first post's page to load), with
    # a person's pause between the two presses: Chromium itself merges two submits in the same instant.
    pay.scroll_into_view_if_needed()
    box = pay.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    if twice == "double click":
        page.mouse.down()
        page.mouse.up()
        page.wait_for_timeout(120)
        page.mouse.down(click_count=2)
        page.mouse.up(click_count=2)
    elif twice == "two clicks":
        page.mouse.down()
        page.mouse.up()
        page.wait_for_timeout(400)
        page.mouse.down()
        page.mouse.up()
    else:
        page.get_by_label("CVC").focus()
        page.keyboard.press("Enter")
        page.wait_for_timeout(120)
        page.keyboard.press("Enter")

    expect_thank_you(page, link)
    assert len(posts) == 1, posts
    assert_paid_once(invoice_id)


def test_while_the_payment_runs_pay_is_disabled_and_busy(page, problems, make, slow):
    invoice_id, _, link = guest_invoice(make)
    slow("pay.pay", 2.0)
    page.goto(link)
    fill_card(page, VISA)
    pay = page.get_by_role("button", name="Pay €100.00", exact=True)
    expect(pay).to_be_enabled()
    expect(pay).not_to_have_attribute("aria-busy", "true")

    # The page being left can't be read while its post is on its way (Playwright waits for the next
    # one), so it notes what the button became, in sessionStorage, which the next page still has.
    page.evaluate("""() => {
        const pay = [...document.querySelectorAll("button")].find(b => b.textContent.trim() === "Pay €100.00");
        new MutationObserver(() => sessionStorage.setItem("pay-button", JSON.stringify(
            {disabled: pay.disabled, busy: pay.getAttribute("aria-busy")}))).observe(pay, {attributes: true});
    }""")
    pay.click(no_wait_after=True)
    expect_thank_you(page, link)
    assert json.loads(page.evaluate("sessionStorage.getItem('pay-button')") or "{}") == {"disabled": True, "busy": "true"}
    assert_paid_once(invoice_id)


def test_staff_double_clicking_attempt_card_charges_the_card_once(page, problems, make, slow):
    from portal.services import payment_methods

    make.business(name="Tidewater Studio", brand_color=BRAND, currency="EUR", invoice_number_format="INV-{seq:04d}")
    acme = make.client()  # autopay off
    invoice = make.invoice(acme, "100.00")
    payment_methods.add_in_sandbox(acme.id, None, "card", "4242424242424242", "12/34", "123")
    user = make.staff()
    sign_in(page, "staff", user.email, user.plain_password)
    expect(page).to_have_url(re.compile(r"/staff/$"))
    page.on("dialog", lambda d: pytest.fail(f"window.{d.type}() was used: {d.message}"))

    page.goto(f"/staff/invoices/{invoice.id}")
    posts = requests_to(page, "POST", f"/staff/invoices/{invoice.id}/attempt-card")
    slow("staff.invoice_attempt_card", 2.0)
    attempt = page.get_by_role("button", name="Attempt card for payment")
    attempt.dblclick()
    # The second click of the double click neither answers nor dismisses the question.
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Charge €100.00 to VISA •••• 4242 now?")
    dialog.get_by_role("button", name="Charge card").click()
    expect(dialog).to_be_hidden()

    # While the card is charged the button is disabled and busy; pressing it again does nothing.
    expect(attempt).to_be_disabled()
    expect(attempt).to_have_attribute("aria-busy", "true")
    attempt.dblclick(force=True)
    expect(dialog).to_be_hidden()

    expect(page.get_by_text("Charged €100.00 to the saved payment method. The invoice is paid.")).to_be_visible()
    expect(page.locator("h1 .badge")).to_have_text("Paid")
    assert len(posts) == 1, posts
    assert_paid_once(invoice.id)


def test_a_pdf_download_is_busy_until_the_file_arrives_and_is_made_once(page, problems, make, slow):
    _, number, link = guest_invoice(make)
    slow("pay.invoice_pdf_download", 1.5)
    page.goto(link)
    gets = requests_to(page, "GET", f"{link}/pdf")
    pdf = page.get_by_role("button", name="Download PDF")

    with page.expect_download() as download:
        pdf.dblclick()
        expect(pdf).to_have_attribute("aria-busy", "true")
        expect(pdf).to_have_attribute("aria-disabled", "true")
    assert download.value.suggested_filename == f"{number}.pdf"
    with open(download.value.path(), "rb") as saved:
        assert saved.read(5) == b"%PDF-"
    expect(pdf).not_to_have_attribute("aria-busy", "true")
    expect(pdf).not_to_have_attribute("aria-disabled", "true")
    assert len(gets) == 1, gets


def test_without_javascript_the_guest_pay_form_still_pays(browser, live_server, make):
    invoice_id, number, link = guest_invoice(make)
    context = browser.new_context(base_url=live_server, java_script_enabled=False)
    problems = Problems()
    try:
        page = problems.watch(context.new_page())
        page.set_default_timeout(10_000)
        page.goto(link)
        pay = page.get_by_role("button", name="Pay €100.00", exact=True)
        fill_card(page, VISA)
        pay.click()
        expect_thank_you(page, link)
        expect(page.locator(".pay-done")).to_contain_text(f"Your payment of €100.00 for invoice {number} was received.")

        # The PDF link is a plain download too.
        page.goto(link)
        with page.expect_download() as download:
            page.get_by_role("button", name="Download PDF").click()
        assert download.value.suggested_filename == f"{number}.pdf"
    finally:
        context.close()
    problems.assert_none()
    assert_paid_once(invoice_id)

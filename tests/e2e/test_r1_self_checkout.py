"""R1's browser journey (issue 11): a client self-checks-out a plan with 4242 → a Paid invoice and a
receipt. A tick a month later → a second Paid invoice, charged off-session to the saved card.

In a real Chromium with the sandbox gateway: the visitor opens the plan's public checkout link, signs
in and comes back to the plan's page in the portal, subscribes, pays the first invoice on the payment
form, and lands on the Subscriptions tab (active, "Charged to VISA •••• 4242"). The tick runs in
process (``flask portal tick --at`` a month later, then the jobs it handed over). The new pages fit a
phone (375 px) and a desktop (1280 px) without sideways scrolling."""
from __future__ import annotations

import re
from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal import clock
from portal.billing import cycles
from portal.extensions import db
from portal.models import (
    Contact,
    Delivery,
    Invoice,
    Payment,
    PaymentMethod,
    Subscription,
)
from portal.services import subscriptions
from portal.services.settings import get_business
from tests.support import make
from tests.support.browser import BRAND, sign_in
from tests.support.jobs import tick

pytestmark = pytest.mark.browser

VISA = "4242 4242 4242 4242"

# What sticks out past the right edge (as tests/e2e/test_u1_widths.py measures it).
OVERFLOW = """() => {
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if ((box.width || box.height) && box.right > window.innerWidth + 0.5) out.push(el.tagName + '.' + el.className);
  }
  return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth, out: out.slice(0, 8)};
}"""


def fits(page: Page, what: str) -> None:
    page.wait_for_load_state("load")
    found = page.evaluate(OVERFLOW)
    assert found["scroll"] <= found["inner"], f"{what}: {found}"


def fresh(query):
    """What the database has now (the live server's and the jobs' commits), holding no transaction."""
    db.session.rollback()
    try:
        return [tuple(row) for row in db.session.execute(query)]
    finally:
        db.session.rollback()


@pytest.fixture
def studio(make):
    make.business(name="Tidewater Studio", brand_color=BRAND, currency="EUR", invoice_number_format="INV-{seq:04d}")
    make.owner()
    contact = make.contact_with_login(client_name="Acme Robotics and Industrial Automation Ltd")
    plan = make.plan(name="Studio membership, hot desk and meeting-room hours", unit_price="49.00",
                     tax_rate=make.tax_rate(), self_serve=True,
                     description="A desk in the studio every weekday, ten meeting-room hours a month.")
    db.session.commit()
    return {"email": contact.email, "password": contact.plain_password, "client_id": contact.client_id,
            "contact_id": contact.id, "plan_id": plan.id, "key": plan.checkout_key}


def test_a_client_self_checks_out_with_4242_and_a_tick_a_month_later_charges_the_saved_card(
        page, problems, studio, cli):
    page.set_viewport_size({"width": 1280, "height": 900})
    plan_path = f"/portal/subscriptions/plans/{studio['plan_id']}"

    # The public checkout link: the plan with the business's branding; signing in leads back to it.
    page.goto(f"/subscribe/{studio['key']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Studio membership, hot desk and meeting-room hours")
    expect(page.locator(".plan-price")).to_contain_text("€49.00 every month")
    fits(page, "the public checkout page")
    page.get_by_role("button", name="Sign in to subscribe").click()
    page.get_by_label("Email").fill(studio["email"])
    page.get_by_label("Password").fill(studio["password"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(rf"{plan_path}$"))
    expect(page.locator("#plan-first-amount")).to_have_text("€60.27")  # €49.00 + VAT 23 %
    fits(page, "the plan's page")

    # Subscribe and pay: the first invoice on the usual payment form, with the sandbox's 4242.
    page.get_by_role("button", name="Subscribe and pay").click()
    expect(page).to_have_url(re.compile(r"/portal/subscriptions/\d+/pay$"))
    expect(page.get_by_role("note")).to_contain_text("Test mode.")
    fits(page, "the first invoice's payment page")
    expiry = f"12/{(clock.today().year + 3) % 100:02d}"
    form = page.locator("#payment")
    form.get_by_label("Card number").fill(VISA)
    form.get_by_label("Expiry (MM/YY)").fill(expiry)
    form.get_by_label("CVC").fill("123")
    form.get_by_role("button", name="Pay €60.27", exact=True).click()

    expect(page).to_have_url(re.compile(r"/portal/subscriptions$"))
    expect(page.locator(".flashes")).to_contain_text("Payment received. Your subscription is active")
    card = page.locator("article.subscription-card")
    expect(card).to_have_count(1)
    expect(card.locator(".badge")).to_have_text("Active")
    expect(card).to_contain_text("Charged to VISA •••• 4242")
    fits(page, "the Subscriptions tab")

    [(sub_id, status, autopay)] = fresh(select(Subscription.id, Subscription.status, Subscription.autopay))
    assert (status, autopay) == ("active", True)
    [(_, first_number, first_status)] = fresh(select(Invoice.id, Invoice.number, Invoice.status))
    assert first_status == "paid"
    [(method_id, last4, default)] = fresh(select(PaymentMethod.id, PaymentMethod.last4, PaymentMethod.is_default))
    assert (last4, default) == ("4242", True)
    receipts = fresh(select(Delivery.subject).where(Delivery.subject.startswith("Receipt for invoice")))
    assert receipts == [(f"Receipt for invoice {first_number} from Tidewater Studio",)]

    # The Invoices tab: the first invoice, Paid.
    page.locator("header nav").get_by_role("link", name="Invoices", exact=True).click()
    expect(page.locator("table.client-invoices tbody tr")).to_have_count(1)
    expect(page.locator("table.client-invoices tbody tr .badge")).to_have_text("Paid")

    # A month later the tick bills the next period and autopay charges the saved card off-session.
    business = get_business()
    start = fresh(select(Subscription.anchor).where(Subscription.id == sub_id))[0][0]
    next_day = cycles.start(start, "month", 1, 1)
    tick(cli, datetime.combine(next_day, time(12), tzinfo=ZoneInfo(business.timezone)))
    rows = fresh(select(Invoice.id, Invoice.number, Invoice.status, Invoice.subscription_id).order_by(Invoice.id))
    assert len(rows) == 2 and rows[0][2] == "paid"
    second_id, second_number, second_status, second_sub = rows[1]
    assert (second_status, second_sub) == ("paid", sub_id)
    [(off_session, charged_with, paid_status)] = fresh(
        select(Payment.off_session, Payment.payment_method_id, Payment.status).where(Payment.invoice_id == second_id))
    assert (off_session, charged_with, paid_status) == (True, method_id, "succeeded")
    receipts = fresh(select(Delivery.subject).where(Delivery.subject.startswith("Receipt for invoice"))
                     .order_by(Delivery.id))
    assert receipts[-1] == (f"Receipt for invoice {second_number} from Tidewater Studio",)

    page.reload()
    expect(page.locator("table.client-invoices tbody tr")).to_have_count(2)
    expect(page.locator("table.client-invoices tbody tr .badge")).to_have_text(["Paid", "Paid"])


@pytest.mark.parametrize("width", (375, 1280))
def test_the_new_portal_pages_fit_the_window(page, studio, width):
    """On a phone and a desktop: the Subscriptions tab (an active subscription and a checkout waiting
    for payment), the plans, a plan's page, the first invoice's payment page, the public checkout page."""
    contact = db.session.get(Contact, studio["contact_id"])
    active = subscriptions.start_self_checkout(contact, studio["plan_id"], "2")
    subscriptions.pay_first_invoice(contact, active.id, "card", "4242424242424242", "12/39")
    other = make.plan(name="Meeting-room bundle of twenty hours, any studio location", unit_price="1200.00",
                      self_serve=True, setup_fee="150.00", trial_days=0)
    waiting = subscriptions.start_self_checkout(contact, other.id, "1")
    db.session.commit()

    page.set_viewport_size({"width": width, "height": 800})
    page.goto(f"/subscribe/{studio['key']}")
    fits(page, "the public checkout page")
    sign_in(page, "portal", studio["email"], studio["password"])
    page.wait_for_url(re.compile(r"/portal/(\?.*)?$"))
    for path in ("/portal/subscriptions", "/portal/subscriptions/plans", f"/portal/subscriptions/plans/{other.id}",
                 f"/portal/subscriptions/{waiting.id}/pay"):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        fits(page, path)
    expect(page.locator("#payment")).to_contain_text("Pay €1,350.00")  # €1,200.00 and the €150.00 setup fee
    page.goto("/portal/subscriptions")
    expect(page.locator("article.subscription-card")).to_have_count(2)
    expect(page.get_by_role("button", name=re.compile(r"^Pay .* to start$"))).to_be_visible()

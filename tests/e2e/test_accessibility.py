"""axe-core in Chromium, at 1280 px and 375 px: no serious or critical accessibility violation on the
guest pay page (open and paid), every client portal page, and the staff invoice list, an invoice
page with a payment, a refund and a credit note, and that client's page.

axe-core is vendored, pinned, under tests/support/vendor/ (see its README); the app never serves it.
"""
from __future__ import annotations

import pytest
from playwright.sync_api import Page

from portal.extensions import db
from portal.services import credit_notes, invoices, payment_methods
from portal.services.events import Actor
from tests.support import make
from tests.support.axe import violations

pytestmark = pytest.mark.browser

STAFF = Actor("staff", None, "staff@portal.example")


def finalized(client, amount: str, due_in_days: int = 30):
    return make.invoice(client, due_in_days=due_in_days,
                        lines=[("Design sprint", "2", amount, None), ("Hosting", "1", "15.00", None)])


def build(make) -> dict:
    """A client with a portal login, a saved card and three invoices: one paid by card then partly
    refunded and credited, one with a credit note against what is due, one open."""
    owner = make.owner()
    contact = make.contact_with_login()
    client = contact.client
    client_id, contact_email = client.id, contact.email

    settled = finalized(client, "50.00")
    payment = make.card_payment(settled)
    settled_id, payment_id = settled.id, payment.id
    credit_notes.refund_payment(settled_id, payment_id, "30.00", "Goodwill", STAFF)
    credit_notes.issue(settled_id, {"to_balance": "10.00", "reason": "other", "memo": "Late delivery"}, STAFF)

    credited = finalized(client, "80.00")
    credit_notes.issue(credited.id, {"to_due": "20.00", "reason": "order_change"}, STAFF)
    open_one = finalized(client, "120.00", due_in_days=14)

    payment_methods.add_in_sandbox(client_id, None, "card", "4242 4242 4242 4242", "12/34", "123")
    open_link = f"/pay/{invoices.issue_guest_token(open_one)}"
    paid_link = f"/pay/{invoices.issue_guest_token(settled)}"
    db.session.commit()
    return {"owner": owner, "contact_email": contact_email, "client_id": client_id, "settled_id": settled_id,
            "payment_id": payment_id, "open_id": open_one.id, "open_link": open_link, "paid_link": paid_link}


def sign_in(page: Page, area: str, email: str, password: str) -> None:
    page.goto(f"/{area}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/{area}/**")


@pytest.mark.parametrize("width", [1280, 375])
# The demo's dark teal, and a pale yellow that only reads as text once the portal darkens it.
@pytest.mark.parametrize("brand", ["#0f766e", "#fde047"])
def test_no_serious_or_critical_violations(axe_page, make, width, brand):
    page = axe_page
    make.business(name="Tidewater Studio", currency="EUR", brand_color=brand)
    data = build(make)
    found: list[str] = []

    page.set_viewport_size({"width": width, "height": 800})
    for link in (data["open_link"], data["paid_link"]):
        found += violations(page, link)

    sign_in(page, "portal", data["contact_email"], "client password 1")
    for path in ("/portal/", "/portal/invoices", f"/portal/invoices/{data['open_id']}",
                 f"/portal/invoices/{data['settled_id']}", "/portal/pay-all?currency=EUR", "/portal/payments",
                 f"/portal/payments/{data['payment_id']}/receipt", "/portal/payment-methods", "/portal/credit",
                 "/portal/profile"):
        found += violations(page, path)
    page.context.clear_cookies()

    sign_in(page, "staff", data["owner"].email, data["owner"].plain_password)
    for path in ("/staff/invoices", f"/staff/invoices/{data['settled_id']}",
                 f"/staff/clients/{data['client_id']}"):
        found += violations(page, path)

    assert not found, (f"{len(found)} serious or critical accessibility violations at {width} px, brand {brand}:\n"
                       + "\n".join(found))

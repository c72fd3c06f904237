"""axe-core in Chromium, at 1280 px and 375 px: no serious or critical accessibility violation on the
recurring-billing pages: staff plans (list, form), the subscriptions list, a subscription's page (with
its schedule, invoices and timeline), the new-subscription and change forms, billing runs; the portal's
subscriptions tab, its plans and a plan's page; the public checkout link."""
from __future__ import annotations

from datetime import date

import pytest
from playwright.sync_api import Page

from portal.extensions import db
from tests.support.axe import violations

pytestmark = pytest.mark.browser


def sign_in(page: Page, area: str, email: str, password: str) -> None:
    page.goto(f"/{area}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/{area}/**")


@pytest.mark.parametrize("width", [1280, 375])
def test_no_serious_or_critical_violations_on_the_recurring_billing_pages(axe_page, make, width):
    from portal.services import subscriptions

    page = axe_page
    make.business(name="Tidewater Studio", currency="EUR", brand_color="#0f766e")
    owner = make.owner()
    contact = make.contact_with_login()
    client_id, email = contact.client_id, contact.email
    vat = make.tax_rate()
    desk = make.plan("Hot desk", "120.00", tax_rate=vat, self_serve=True, setup_fee="25.00")
    make.plan("Locker", "9.00", unit="week", interval=2)
    sub = make.subscription(contact.client, desk, start=date.today())
    subscriptions.bill_subscription(sub.id)
    sub_id, plan_id, key = sub.id, desk.id, desk.checkout_key
    db.session.commit()
    found: list[str] = []
    page.set_viewport_size({"width": width, "height": 800})

    found += violations(page, f"/subscribe/{key}")
    sign_in(page, "portal", email, "client password 1")
    for path in ("/portal/subscriptions", "/portal/subscriptions/plans", f"/portal/subscriptions/plans/{plan_id}"):
        found += violations(page, path)
    page.context.clear_cookies()

    sign_in(page, "staff", owner.email, owner.plain_password)
    for path in ("/staff/catalogue/plans", "/staff/catalogue/plans/new", f"/staff/catalogue/plans/{plan_id}/edit",
                 "/staff/subscriptions", f"/staff/subscriptions/{sub_id}", f"/staff/subscriptions/{sub_id}/change",
                 f"/staff/clients/{client_id}/subscriptions/new", "/staff/billing-runs"):
        found += violations(page, path)

    assert not found, (f"{len(found)} serious or critical accessibility violations at {width} px:\n"
                       + "\n".join(found))

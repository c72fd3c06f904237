"""The pages X1 added or changed, in Chromium at 1280 px and 375 px: no sideways scrolling.
(Staff profile with its sessions, staff users, portal profile, settings with the late-payment
switch, and the guest page's answer to a garbage card number.)"""
from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from portal.extensions import db

pytestmark = pytest.mark.browser


def sign_in(page: Page, area: str, email: str, password: str) -> None:
    page.goto(f"/{area}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/{area}/**")


def assert_fits(page: Page, width: int, path: str) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(path)
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{path} is {scroll} px wide at {width} px"


@pytest.mark.parametrize("width", [1280, 375])
def test_x1_pages_fit_the_window(page, make, width):
    make.business(name="Tidewater Studio")
    owner = make.owner()
    contact = make.contact_with_login()
    invoice = make.invoice(contact.client, "120.00", description="A long line of work " * 4)
    link = make.guest_link(invoice)
    db.session.commit()

    sign_in(page, "staff", owner.email, owner.plain_password)
    for path in ("/staff/profile", "/staff/users", "/staff/settings"):
        assert_fits(page, width, path)
    expect(page.get_by_label("Refund a payment that arrives for an invoice already settled")).to_be_checked()

    guest = page.context.browser.new_context(base_url=page.url.split("/staff")[0])
    try:
        guest_page = guest.new_page()
        assert_fits(guest_page, width, link)
        guest_page.get_by_label("Card number").fill("1234 5678 9012 3456")
        guest_page.get_by_role("button", name="Pay €120.00").click()
        expect(guest_page.get_by_text("That card number is not valid.").first).to_be_visible()
        scroll = guest_page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"the refused payment page is {scroll} px wide at {width} px"

        portal = guest.new_page()
        sign_in(portal, "portal", contact.email, "client password 1")
        assert_fits(portal, width, "/portal/profile")
    finally:
        guest.close()

"""U1: every page a guest, a client or staff reaches fits the window, on a phone (375 px) and on a
desktop (1280 px): no sideways scrolling (``document.documentElement.scrollWidth <= innerWidth``).

The books hold what makes pages wide: a long line description, a card payment with a partial
refund and a credit note, a saved card, a second open invoice. The guest pay page is walked
through its three states (waiting, a refused card, paid). On a phone the client portal's links
collapse into a "Menu" that opens, and is followed, from the keyboard."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from portal import clock
from portal.extensions import db
from portal.services import credit_notes, invoices, payment_methods, payments
from portal.services.events import Actor
from tests.support import make

pytestmark = pytest.mark.browser

STAFF = Actor("staff", None, "staff@portal.example")
WIDTHS = (375, 1280)

# Lists what sticks out past the right edge, so a failure says which element to fix.
OVERFLOW = """() => {
  const width = window.innerWidth;
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (box.right > width + 0.5) {
      const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
        (typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
      out.push(name + ' right=' + Math.round(box.right));
    }
  }
  return {scroll: document.documentElement.scrollWidth, inner: width, out: out.slice(0, 12)};
}"""


class Widths:
    """What each page measured; every page is measured before the test fails, so a failure lists
    all the pages that scroll sideways and what sticks out of each."""

    def __init__(self):
        self.measured: list[tuple[str, int, int]] = []
        self.too_wide: list[str] = []

    def fits(self, page: Page, what: str) -> int:
        # After a form post the new page can be measured before its stylesheets apply: wait for them.
        page.wait_for_load_state("load")
        page.wait_for_function("[...document.styleSheets].length > 0 && getComputedStyle(document.body).margin !== ''")
        found = page.evaluate(OVERFLOW)
        self.measured.append((what, found["inner"], found["scroll"]))
        if found["scroll"] > found["inner"]:
            self.too_wide.append(f"{what} is {found['scroll']} px wide in a {found['inner']} px window; "
                                 f"sticking out: {found['out']}")
        return found["scroll"]

    def visit(self, page: Page, path: str) -> int:
        """Open ``path`` and measure it, then again with every folded panel (``<details>``) open."""
        response = page.goto(path)
        assert response is not None and response.status == 200, f"{path} answered {response and response.status}"
        scroll = self.fits(page, path)
        if page.evaluate("[...document.querySelectorAll('main details:not([open])')].map(d => d.open = true).length"):
            self.fits(page, f"{path} (every panel open)")
        return scroll

    def assert_all_fit(self) -> None:
        print("\n".join(f"{inner:>5} {scroll:>5}  {what}" for what, inner, scroll in self.measured))
        assert not self.too_wide, "\n".join(self.too_wide)


def sign_in(page: Page, area: str, email: str, password: str) -> None:
    page.goto(f"/{area}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(rf"/{area}/(\?.*)?$"))


def finalized(client_row, description: str, price: str):
    return make.invoice(client_row, lines=[(description, "3", price, None),
                                           ("Hosting and maintenance, monthly", "1", "45.00", None)])


@pytest.fixture
def books(make):
    """A studio with an owner and a client whose contact signs in; the client has a paid invoice
    (card, part refunded, a credit note), an open one (the guest link's), another open one and a
    saved card."""
    make.business(name="Tidewater Studio", currency="EUR", legal_name="Tidewater Studio Limited Liability Co.")
    owner = make.owner()
    contact = make.contact_with_login(client_name="Acme Robotics and Industrial Automation Ltd")
    client_row = contact.client
    long_words = "Brand identity workshop, discovery interviews and stakeholder alignment sessions "
    paid = finalized(client_row, long_words * 2, "1250.00")
    guest = finalized(client_row, long_words + "(phase two)", "980.00")
    other = finalized(client_row, "Retainer", "300.00")
    payment = payments.confirm_in_sandbox(payments.start_payment(paid.id), "card:4242424242424242")
    credit_notes.refund_payment(paid.id, payment.id, "120.00", "Goodwill for the late delivery", STAFF)
    credit_notes.issue(paid.id, {"to_outside": "35.50", "reason": "other",
                                 "memo": "Travel costs billed twice, returned by bank transfer"}, STAFF)
    expiry = f"12/{(clock.today().year + 3) % 100:02d}"
    payment_methods.add_in_sandbox(client_row.id, None, "card", "4242424242424242", expiry, "123")
    token = invoices.issue_guest_token(guest)
    db.session.commit()
    return {"owner": owner, "contact": contact, "client_id": client_row.id, "paid": paid.id, "guest": guest.id,
            "other": other.id, "payment": payment.id, "link": f"/pay/{token}",
            "guest_due": guest.amount_due}


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_fits_the_window(page, live_server, books, width):
    page.set_viewport_size({"width": width, "height": 800})
    widths = Widths()
    visit, fits = widths.visit, widths.fits
    browser = page.context.browser

    # The guest: the pay page, a refused card, then paid.
    guest = browser.new_context(base_url=live_server, viewport={"width": width, "height": 800})
    try:
        payer = guest.new_page()
        visit(payer, books["link"])
        pay = payer.locator("#payment")
        pay.get_by_label("Card number").fill("4000 0000 0000 0002")
        pay.get_by_label("Expiry (MM/YY)").fill("12/39")
        pay.get_by_label("CVC").fill("123")
        pay.get_by_role("button", name=re.compile(r"^Pay ")).click()
        expect(payer.locator(".pay-error")).to_be_visible()
        fits(payer, "the guest page with a refused card")
        pay.get_by_label("Card number").fill("4242 4242 4242 4242")
        pay.get_by_label("Expiry (MM/YY)").fill("12/39")
        pay.get_by_label("CVC").fill("123")
        pay.get_by_role("button", name=re.compile(r"^Pay ")).click()
        payer.wait_for_url(re.compile(r"/done"))
        fits(payer, "the guest page once paid")
        visit(payer, books["link"])
    finally:
        guest.close()

    # The client portal, every page.
    portal = browser.new_context(base_url=live_server, viewport={"width": width, "height": 800})
    try:
        client_page = portal.new_page()
        sign_in(client_page, "portal", books["contact"].email, "client password 1")
        for path in ("/portal/", "/portal/invoices", f"/portal/invoices/{books['paid']}",
                     f"/portal/invoices/{books['other']}", "/portal/pay-all?currency=EUR", "/portal/payments",
                     f"/portal/payments/{books['payment']}/receipt", "/portal/payment-methods",
                     "/portal/credit", "/portal/profile"):
            visit(client_page, path)
    finally:
        portal.close()

    # Staff: the invoice with a payment, a refund and a credit note; the refund form refusing an
    # amount (the refund view); the invoice list; the client.
    owner = books["owner"]
    sign_in(page, "staff", owner.email, owner.plain_password)
    for path in ("/staff/", "/staff/invoices", f"/staff/invoices/{books['paid']}",
                 f"/staff/invoices/{books['guest']}", f"/staff/clients/{books['client_id']}", "/staff/clients"):
        visit(page, path)
    page.goto(f"/staff/invoices/{books['paid']}")
    refund = page.locator(f"#refund-{books['payment']}")
    refund.locator("summary").click()
    fits(page, "the staff invoice page with the refund form open")
    refund.get_by_label(re.compile(r"^Amount")).fill("99999.00")
    # Posted as a plain form (whatever confirmation the button asks for): the page comes back
    # with the refund form open and its error, the "refund view".
    refund.locator("form").evaluate("form => HTMLFormElement.prototype.submit.call(form)")
    expect(page.locator(f"#refund-{books['payment']} .field-error")).to_be_visible()
    fits(page, "the refund view (a refused amount)")
    widths.assert_all_fit()


@pytest.mark.parametrize("width", (640, 768, 900, 1024))
def test_the_headers_fit_between_phone_and_desktop(page, live_server, books, width):
    """The header shows its links or its Menu at every width in between, never wider than the window."""
    page.set_viewport_size({"width": width, "height": 800})
    widths = Widths()
    owner = books["owner"]
    sign_in(page, "staff", owner.email, owner.plain_password)
    widths.visit(page, "/staff/invoices")
    portal = page.context.browser.new_context(base_url=live_server, viewport={"width": width, "height": 800})
    try:
        client_page = portal.new_page()
        sign_in(client_page, "portal", books["contact"].email, "client password 1")
        widths.visit(client_page, "/portal/invoices")
        menu = client_page.locator("header .nav-menu")
        if width < 768:
            expect(menu).to_be_visible()
        else:
            expect(menu).to_be_hidden()
            expect(client_page.locator("header nav").get_by_role("link", name="Payment methods")).to_be_visible()
    finally:
        portal.close()
    widths.assert_all_fit()


def contrast(one: str, two: str) -> float:
    """WCAG contrast ratio of two ``rgb(...)`` colours."""
    def luminance(colour: str) -> float:
        channels = [int(float(c)) / 255 for c in re.findall(r"[\d.]+", colour)[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    high, low = sorted((luminance(one), luminance(two)), reverse=True)
    return (high + 0.05) / (low + 0.05)


FOCUSED = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  return {tag: el.tagName.toLowerCase(), text: el.textContent.trim(), width: parseFloat(style.outlineWidth),
          style: style.outlineStyle, colour: style.outlineColor,
          open: !!document.querySelector('header .nav-menu[open]')};
}"""


def test_the_portal_menu_on_a_phone_works_from_the_keyboard(page, books):
    """At 375 px the portal's links are folded into "Menu": Tab reaches it, Enter opens it, Tab
    goes to a link and Enter follows it. Every stop shows a focus ring of 2 px or more with AA
    contrast (3:1 against the white page)."""
    page.set_viewport_size({"width": 375, "height": 800})
    sign_in(page, "portal", books["contact"].email, "client password 1")
    header = page.locator("header nav")
    expect(header.get_by_role("link", name="Invoices", exact=True)).to_be_hidden()
    expect(page.locator("header summary", has_text="Menu")).to_be_visible()

    def ring(focused: dict) -> None:
        assert focused["style"] != "none" and focused["width"] >= 2, f"no 2 px focus ring on {focused}"
        assert contrast(focused["colour"], "rgb(255, 255, 255)") >= 3, f"a faint focus ring on {focused}"

    focused = {}
    for _ in range(6):  # the skip link, the brand, then the Menu
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        ring(focused)
        if focused["tag"] == "summary":
            break
    assert focused["tag"] == "summary" and focused["text"] == "Menu", f"Tab never reached the Menu: {focused}"
    assert not focused["open"]

    page.keyboard.press("Enter")
    expect(page.locator("header .nav-menu")).to_have_attribute("open", "")
    expect(header.get_by_role("link", name="Invoices", exact=True)).to_be_visible()
    found = page.evaluate(OVERFLOW)
    assert found["scroll"] <= 375, f"the open menu is {found['scroll']} px wide: {found['out']}"

    page.keyboard.press("Tab")
    focused = page.evaluate(FOCUSED)
    assert (focused["tag"], focused["text"]) == ("a", "Billing"), focused
    ring(focused)
    page.keyboard.press("Tab")
    focused = page.evaluate(FOCUSED)
    assert (focused["tag"], focused["text"]) == ("a", "Invoices"), focused
    ring(focused)
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(r"/portal/invoices$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Invoices")
    expect(page.locator("header .nav-menu")).not_to_have_attribute("open", "")
    page.locator("header summary").click()
    expect(header.get_by_role("link", name="Invoices", exact=True)).to_have_attribute("aria-current", "page")

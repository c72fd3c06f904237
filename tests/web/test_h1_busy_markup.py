"""H1 6, fast: every button that calls the gateway, renders a PDF or sends email carries the markup that
makes it show work under way and refuse a second submit (tests/e2e/test_h1_busy.py drives it in Chromium).

- an htmx form (hx-boost, or hx-post on submit) names its submit button in ``hx-disabled-elt`` and
  ``hx-indicator``; a button with its own hx-post names itself (or its form's buttons);
- a plain form (a full-page post) is marked ``data-busy`` (static/js/busy.js);
- a PDF link is marked ``data-busy`` and ``download``;
- every page loads busy.js, deferred.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from tests.support.web import post_form

BUSY_JS = '<script src="/static/js/busy.js" defer></script>'
FIRST_SUBMIT = "find button[type=submit]"


class Controls(HTMLParser):
    """A page's forms, buttons and links, with their attributes and text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self.buttons: list[dict] = []
        self.links: list[dict] = []
        self._form: dict | None = None
        self._reading: dict | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = {name: (value if value is not None else "") for name, value in attrs}
        if tag == "form":
            self._form = {"attrs": attrs, "buttons": []}
            self.forms.append(self._form)
        elif tag in ("button", "a"):
            self._reading = {"tag": tag, "attrs": attrs, "text": "", "form": self._form}
            if tag == "button":
                self.buttons.append(self._reading)
                if self._form is not None:
                    self._form["buttons"].append(self._reading)
            else:
                self.links.append(self._reading)

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag in ("button", "a"):
            if self._reading is not None:
                self._reading["text"] = " ".join(self._reading["text"].split())
            self._reading = None

    def handle_data(self, data):
        if self._reading is not None:
            self._reading["text"] += data

    def named(self, text: str) -> list[dict]:
        found = [b for b in self.buttons if b["text"] == text]
        assert found, f"no button named {text!r}: {[b['text'] for b in self.buttons]}"
        return found

    def button(self, text: str) -> dict:
        [found] = self.named(text)
        return found

    def link(self, text: str) -> dict:
        found = [a for a in self.links if a["text"] == text]
        assert len(found) == 1, f"{len(found)} links named {text!r}"
        return found[0]


def _htmx_on_submit(form: dict) -> bool:
    """htmx takes over the form's submit (else it posts as a plain form)."""
    attrs = form["attrs"]
    if attrs.get("hx-boost") == "true":
        return True
    return "hx-post" in attrs and "submit" in attrs.get("hx-trigger", "submit")


def _dropped_twice(attrs: dict) -> bool:
    """htmx itself drops a second request while one runs (hx-sync "...:drop")."""
    return attrs.get("hx-sync", "").strip().endswith(":drop")


def busy_problem(button: dict) -> str | None:
    """Why this submit button would not show busy and refuse a second submit, or None."""
    attrs, form = button["attrs"], button["form"]
    name = button["text"] or attrs.get("aria-label", "?")
    if "hx-post" in attrs:
        if _dropped_twice(attrs):
            return None
        if not attrs.get("hx-disabled-elt") or not attrs.get("hx-indicator"):
            return f"{name!r}: hx-post without hx-disabled-elt and hx-indicator"
        return None
    if form is None or form["attrs"].get("method", "get").lower() != "post":
        return None
    if _htmx_on_submit(form):
        fa = form["attrs"]
        if fa.get("hx-disabled-elt") != FIRST_SUBMIT or fa.get("hx-indicator") != FIRST_SUBMIT:
            return f"{name!r}: htmx form without hx-disabled-elt/hx-indicator={FIRST_SUBMIT!r}"
        first = next(b for b in form["buttons"] if b["attrs"].get("type", "submit") == "submit")
        if first is not button or attrs.get("type") != "submit":
            return f"{name!r}: is not the form's first button[type=submit], so htmx would not disable it"
        return None
    if "data-busy" not in form["attrs"]:
        return f"{name!r}: plain form without data-busy"
    return None


def assert_busy(html: str, buttons=(), links=()) -> Controls:
    """The named buttons and links carry the busy markup, and so does every htmx post on the page."""
    assert BUSY_JS in html
    page = Controls(html)
    problems = [busy_problem(button) for text in buttons for button in page.named(text)]
    for link in links:
        a = page.link(link)
        if "data-busy" not in a["attrs"] or "download" not in a["attrs"]:
            problems.append(f"link {link!r}: without data-busy and download")
    for button in page.buttons:
        htmx = "hx-post" in button["attrs"] or (button["form"] is not None and _htmx_on_submit(button["form"]))
        if htmx and button["attrs"].get("type", "submit") == "submit":
            problems.append(busy_problem(button))
    problems = [p for p in problems if p]
    assert problems == [], "\n".join(problems)
    return page


# The world: a client with a login, a saved card, credit, an open, a paid and a draft invoice ---------------

VISA = "4242 4242 4242 4242"
MASTERCARD = "5555 5555 5555 4444"


@pytest.fixture
def world(make, app, staff_client):
    make.business(name="Tidewater Studio", currency="EUR", clients_manage_autopay=True)
    contact = make.contact_with_login()
    acme = contact.client
    open_invoice = make.invoice(acme, "100.00")
    paid = make.invoice(acme, "40.00")
    payment_id = make.payment(paid).id  # paid in full by wire
    draft = make.invoice(acme, "75.00", status="draft")

    portal = app.test_client()
    assert post_form(portal, "/portal/login", {"email": contact.email, "password": contact.plain_password}).status_code == 302
    for number in (VISA, MASTERCARD):
        added = post_form(portal, "/portal/payment-methods/add",
                          {"method": "card", "card_number": number, "expiry": "12/34", "cvc": "123"})
        assert added.status_code == 303, added.get_data(as_text=True)
    credit = post_form(staff_client, f"/staff/clients/{acme.id}/credits",
                       {"amount": "10.00", "currency": "EUR", "description": "Goodwill"})
    assert credit.status_code == 303, credit.get_data(as_text=True)
    refund = post_form(staff_client, f"/staff/invoices/{paid.id}/payments/{payment_id}/refund",
                       {"amount": "5.00", "reason": "Discount"})
    assert refund.status_code == 303, refund.get_data(as_text=True)
    return {"client": acme, "open": open_invoice, "paid": paid, "draft": draft, "payment_id": payment_id,
            "portal": portal, "staff": staff_client, "guest_link": make.guest_link(open_invoice)}


def html_of(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data(as_text=True)


def test_the_staff_invoice_page_charges_records_voids_and_sends_busy(world):
    html = html_of(world["staff"], f"/staff/invoices/{world['open'].id}")
    assert_busy(html, buttons=["Attempt card for payment", "Mark as paid", "Record payment", "Void invoice",
                               "Send", "Issue a replacement", "Apply credit", "Issue credit note"],
                links=["Download PDF"])
    # Attempt card: a boosted form that asks first, then disables its button while it charges.
    form = re.search(r'<form[^>]*action="/staff/invoices/\d+/attempt-card"[^>]*>', html).group(0)
    assert 'hx-boost="true"' in form and 'hx-disabled-elt="find button[type=submit]"' in form
    assert 'hx-indicator="find button[type=submit]"' in form


def test_the_paid_invoice_page_refunds_and_downloads_credit_notes_busy(world):
    html = html_of(world["staff"], f"/staff/invoices/{world['paid'].id}")
    page = assert_busy(html, buttons=["Refund", "Issue credit note"], links=["Download PDF"])
    [note] = [a for a in page.links if a["text"].startswith("Download CN") or "/credit-notes/" in a["attrs"].get("href", "")]
    assert "data-busy" in note["attrs"] and "download" in note["attrs"]


def test_the_draft_editor_finalizes_and_sends_busy(world):
    html = html_of(world["staff"], f"/staff/invoices/{world['draft'].id}")
    page = assert_busy(html, buttons=["Save & send by email", "Save draft"], links=["Draft PDF"])
    send = page.button("Save & send by email")["attrs"]
    # Every submit button of the editor waits while it saves and sends.
    assert send["hx-disabled-elt"] == "#invoice-editor button[type=submit]" and send["hx-indicator"] == "this"
    finalize = next(b for b in page.buttons if b["attrs"].get("value") == "finalize")
    assert busy_problem(finalize) is None


def test_the_client_page_invites_links_and_credits_busy(world):
    html = html_of(world["staff"], f"/staff/clients/{world['client'].id}")
    assert_busy(html, buttons=["Re-send invite", "Portal link", "Revoke access", "Add credit", "Charge the credit balance"])


def test_the_guest_page_pays_and_downloads_busy(world, app):
    html = html_of(app.test_client(), world["guest_link"])
    page = assert_busy(html, buttons=["Pay €100.00"], links=["Download PDF"])
    form = page.button("Pay €100.00")["form"]["attrs"]
    assert form["action"] == f"{world['guest_link']}/pay" and "hx-boost" not in form, "a plain form: it works without JavaScript"


def test_the_client_portal_pays_saves_methods_and_downloads_busy(world):
    portal = world["portal"]
    assert_busy(html_of(portal, f"/portal/invoices/{world['open'].id}"), buttons=["Pay €100.00"],
                links=["Download PDF"])
    assert_busy(html_of(portal, "/portal/pay-all?currency=EUR"),
                buttons=["Pay €100.00 with VISA •••• 4242", "Pay €100.00"])
    page = assert_busy(html_of(portal, "/portal/payment-methods"),
                       buttons=["Make default", "Remove", "Turn autopay on", "Save payment method"])
    assert len(page.named("Remove")) == 2
    invoices = Controls(html_of(portal, "/portal/invoices"))
    pdfs = [a for a in invoices.links if a["text"].startswith("PDF")]
    assert pdfs and all("data-busy" in a["attrs"] and "download" in a["attrs"] for a in pdfs)
    assert_busy(html_of(portal, f"/portal/payments/{world['payment_id']}/receipt"), links=["Download PDF"])


@pytest.mark.parametrize("url, button", [
    ("/staff/login", "Sign in"), ("/portal/login", "Sign in"),
    ("/staff/password/forgot", "Send reset link"), ("/portal/password/forgot", "Send reset link"),
])
def test_sign_in_and_reset_forms_are_busy(app, url, button):
    assert_busy(html_of(app.test_client(), url), buttons=[button])


def test_without_markup_the_check_fails():
    """The checker itself: a bare htmx form and a bare plain form are reported."""
    bare = (BUSY_JS + '<form method="post" hx-boost="true"><button type="submit">Pay</button></form>'
            '<form method="post"><button type="submit">Send</button></form>')
    page = Controls(bare)
    assert "htmx form without" in busy_problem(page.button("Pay"))
    assert "plain form without data-busy" in busy_problem(page.button("Send"))

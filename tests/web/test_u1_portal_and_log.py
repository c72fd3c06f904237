"""U1 through the pages: a cancelled invoice owes nothing in the portal list (4); a restricted client
is not offered what would be refused, and is told why (9); leftovers hidden until their issue (10);
the Emails log: search, PDF column, template editor links, the sender (11); empty Discount and Tax
columns hidden, the email's line summary, the demo's catalogue (12)."""
from __future__ import annotations

import io
import re
from email.header import decode_header, make_header
from html import unescape
from datetime import timedelta
from decimal import Decimal

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from portal import clock
from portal.extensions import db
from portal.models import Client, PaymentMethod, TaxRate
from portal.services import invoices, payment_methods
from portal.services.events import Actor
from portal.services.scheduler import run_tick
from tests.support import make
from tests.support.web import email_text, post_form

STAFF = Actor("staff", None, "staff@portal.example")
RESTRICTED = "Please pay your overdue invoices to add or remove payment methods again."


def text_of(html: str) -> str:
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def issue(client_row, lines=None, due=None):
    return make.invoice(client_row, lines=lines, due=due, due_in_days=14)


@pytest.fixture
def studio(make):
    make.business(name="Tidewater Studio", currency="EUR", email="billing@tidewater.example")
    return make.contact_with_login()


def staff_login(app, make, role="owner"):
    user = make.owner() if role == "owner" else make.staff()
    browser = app.test_client()
    assert post_form(browser, "/staff/login", {"email": user.email, "password": user.plain_password}).status_code == 302
    return browser


# 4. A cancelled invoice in the portal list ----------------------------------------------------------

def test_a_cancelled_invoice_shows_no_amount_due_in_the_portal_list(studio, client, auth):
    void = issue(studio.client, lines=[{"description": "Mistake", "quantity": "1", "unit_price": "321.00"}])
    invoices.void(void, STAFF, "wrong client")
    issue(studio.client, lines=[{"description": "Work", "quantity": "1", "unit_price": "100.00"}])
    number = void.number
    assert auth.login_contact().status_code == 302

    html = client.get("/portal/invoices").get_data(as_text=True)
    row = next(r for r in html.split("<tr>") if f">{number}</a>" in r)
    total, due = re.findall(r'<td class="num">(.*?)</td>', row, flags=re.S)
    assert "€321.00" in total and "Cancelled" in row
    assert "€321.00" not in due and "—" in due
    # The open one still shows what it owes.
    assert text_of(html).count("€100.00") == 2


# 9. A restricted client is not offered what would be refused ---------------------------------------

@pytest.fixture
def restricted(make, studio):
    make.business(restrict_overdue_days=10, restrict_actions=["payment_methods", "profile", "autopay"],
                  clients_manage_autopay=True)
    payment_methods.add_in_sandbox(studio.client_id, None, "card", "4242424242424242", "12/34", "123")
    issue(studio.client, due=clock.today("UTC") - timedelta(days=11))
    run_tick(clock.now())
    db.session.expire_all()
    assert db.session.get(Client, studio.client_id).access_restricted
    return studio


def saved_methods(client_id: int) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(PaymentMethod).where(
        PaymentMethod.client_id == client_id, PaymentMethod.removed_at.is_(None)))


def test_an_unrestricted_client_gets_the_form_and_remove_buttons(studio, client, auth):
    payment_methods.add_in_sandbox(studio.client_id, None, "card", "4242424242424242", "12/34", "123")
    assert auth.login_contact().status_code == 302
    html = client.get("/portal/payment-methods").get_data(as_text=True)
    assert 'name="card_number"' in html and ">Remove</button>" in html
    assert RESTRICTED not in text_of(html)


def test_a_restricted_client_sees_why_instead_of_the_blocked_controls(restricted, client, auth):
    assert auth.login_contact().status_code == 302
    html = client.get("/portal/payment-methods").get_data(as_text=True)
    assert 'name="card_number"' not in html and "Save payment method" not in html
    assert ">Remove</button>" not in html and "/remove" not in html
    assert RESTRICTED in text_of(html)
    assert "Please pay your overdue invoices to turn autopay on or off again." in text_of(html)
    autopay = html.split('id="autopay"')[1].split("</section>")[0]
    assert re.search(r"<button[^>]*disabled[^>]*>Turn autopay on</button>", autopay)

    # The profile form is disabled, with the reason.
    profile = client.get("/portal/profile").get_data(as_text=True)
    assert "Please pay your overdue invoices to change your profile again." in text_of(profile)
    assert re.search(r"<fieldset disabled", profile)

    # A direct POST is still refused, and nothing changes.
    [method_id] = db.session.scalars(select(PaymentMethod.id).where(PaymentMethod.client_id == restricted.client_id))
    refused = post_form(client, "/portal/payment-methods/add",
                        {"method": "card", "card_number": "4242424242424242", "expiry": "12/34", "cvc": "123"})
    assert refused.status_code == 422 and RESTRICTED in text_of(refused.get_data(as_text=True))
    removed = post_form(client, f"/portal/payment-methods/{method_id}/remove", follow_redirects=True)
    assert RESTRICTED in text_of(removed.get_data(as_text=True))
    assert saved_methods(restricted.client_id) == 1


# 10. Leftovers hidden until their issue ---------------------------------------------------------

def test_no_uncollectible_chip_and_the_subscriptions_restriction_is_offered(studio, app, make):
    issue(studio.client)
    owner = staff_login(app, make)
    listing = owner.get("/staff/invoices").get_data(as_text=True)
    assert "badge-invoice-open" in listing
    assert "Uncollectible" not in listing and 'value="uncollectible"' not in listing
    settings = owner.get("/staff/settings").get_data(as_text=True)
    assert "Add or remove payment methods" in settings
    # R1: self-checkout exists, so staff may block it for restricted clients.
    assert "Start new subscriptions" in settings and 'value="new_subscriptions"' in settings


# 11. The Emails log -------------------------------------------------------------------------------

def email_rows(html: str) -> list[str]:
    body = html.split('id="email-rows"')[1]
    return [r for r in body.split("<tr>")[1:] if "</td>" in r]


def test_emails_search_by_recipient_and_subject_and_show_the_pdf(studio, app, make):
    other = make.client(name="Other Co", contacts=[{"name": "Olu", "email": "olu@other.example",
                                                   "receives_invoices": True}])
    ana_invoice = issue(studio.client)
    invoices.send(ana_invoice, STAFF)
    invoices.send(issue(other), STAFF)
    owner = staff_login(app, make)
    post_form(app.test_client(), "/staff/password/forgot", {"email": "owner@portal.example"})

    page = owner.get("/staff/emails").get_data(as_text=True)
    assert len(email_rows(page)) == 3
    assert 'href="/staff/email-templates"' in page  # the template editor, from the Emails page
    assert "<th scope=\"col\">PDF</th>" in page

    by_recipient = owner.get("/staff/emails?q=OLU@other").get_data(as_text=True)
    [row] = email_rows(by_recipient)
    assert "olu@other.example" in row and "Attached" in row

    by_subject = owner.get("/staff/emails?q=reset+your").get_data(as_text=True)
    [row] = email_rows(by_subject)
    assert "owner@portal.example" in row and "Reset your Tidewater Studio password" in row
    assert "Attached" not in row and "No PDF" in row

    # htmx asks for the rows only; a search with LIKE's wildcards matches them literally.
    partial = owner.get("/staff/emails?q=ana%40acme", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert partial.lstrip().startswith('<div id="email-rows"') and len(email_rows(partial)) == 1
    assert email_rows(owner.get("/staff/emails?q=%25").get_data(as_text=True)) == []
    assert "No emails to or about" in owner.get("/staff/emails?q=nobody").get_data(as_text=True)

    # The Settings page links to the template editor too.
    settings = owner.get("/staff/settings").get_data(as_text=True)
    nav = settings.split('aria-label="Settings sections"')[1].split("</nav>")[0]
    assert 'href="/staff/email-templates"' in nav


class TestSender:
    @pytest.fixture
    def app_settings(self, smtp_server):
        """Development with a mail server but no MAIL_DEFAULT_SENDER."""
        return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port, "MAIL_DEFAULT_SENDER": None}

    def test_mail_comes_from_the_business_email(self, studio, app, make, run_worker, smtp_server):
        invoice = issue(studio.client)
        invoices.send(invoice, STAFF)
        run_worker()
        [message] = smtp_server.to("ana@acme.example")
        assert str(make_header(decode_header(message["From"]))) == "Tidewater Studio <billing@tidewater.example>"
        assert message["Message-ID"].endswith("@tidewater.example>")

        owner = staff_login(app, make)
        page = owner.get("/staff/emails").get_data(as_text=True)
        delivery_id = re.search(r'href="/staff/emails/(\d+)"', page).group(1)
        detail = text_of(owner.get(f"/staff/emails/{delivery_id}").get_data(as_text=True))
        assert "From Tidewater Studio <billing@tidewater.example>" in detail
        assert "billing@localhost" not in detail


# 12. Empty columns, the line summary, the demo's catalogue -----------------------------------------

def pdf_text(data: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_no_discount_or_tax_columns_when_no_line_has_one(studio, client):
    link = make.guest_link(issue(studio.client, lines=[
        {"description": "Brand workshop", "quantity": "2", "unit_price": "450.00"},
        {"description": "Printing", "quantity": "1", "unit_price": "100.00"}]))
    html = client.get(link).get_data(as_text=True)
    head = html.split('class="invoice-lines"')[1].split("</thead>")[0]
    assert ">Description<" in head and ">Amount<" in head
    assert "Discount" not in head and ">Tax<" not in head
    text = pdf_text(client.get(link + "/pdf").data)
    assert "Brand workshop" in text and "Description" in text
    assert "Discount" not in text and "Tax" not in text


def test_the_columns_show_when_a_line_has_a_discount_or_tax(studio, client):
    vat = TaxRate(name="VAT", percent=Decimal("23"), inclusive=False)
    db.session.add(vat)
    db.session.commit()
    link = make.guest_link(issue(studio.client, lines=[
        {"description": "Brand workshop", "quantity": "1", "unit_price": "450.00", "tax_rate_id": str(vat.id)},
        {"description": "Printing", "quantity": "1", "unit_price": "100.00", "discount_kind": "percent",
         "discount_value": "10"}]))
    head = client.get(link).get_data(as_text=True).split('class="invoice-lines"')[1].split("</thead>")[0]
    assert ">Discount<" in head and ">Tax<" in head
    text = pdf_text(client.get(link + "/pdf").data)
    assert "Discount" in text and "Tax" in text


def test_the_invoice_email_lists_five_lines_then_how_many_more(studio, app, make):
    lines = [{"description": f"Item number {n}", "quantity": "1", "unit_price": f"{n}0.00"} for n in range(1, 8)]
    invoices.send(issue(studio.client, lines=lines), STAFF)
    owner = staff_login(app, make)
    page = owner.get("/staff/emails").get_data(as_text=True)
    delivery_id = re.search(r'href="/staff/emails/(\d+)"', page).group(1)
    detail = owner.get(f"/staff/emails/{delivery_id}").get_data(as_text=True)
    text = detail.split('class="email-text">')[1].split("</pre>")[0]
    for n in range(1, 6):
        assert f"- Item number {n}: €{n}0.00" in text
    assert "Item number 6" not in text and "Item number 7" not in text
    assert "and 2 more" in text


def test_a_short_invoice_email_lists_every_line(studio, app, make, run_worker, smtp_server):
    invoices.send(issue(studio.client, lines=[
        {"description": "Brand workshop\nsecond line of notes", "quantity": "2", "unit_price": "450.00"}]), STAFF)
    run_worker()
    [message] = smtp_server.to("ana@acme.example")
    body = email_text(message)
    assert "- Brand workshop: €900.00" in body and "second line of notes" not in body and "more" not in body


def test_the_demo_has_a_catalogue(cli, app):
    result = cli.invoke(args=["portal", "demo"])
    assert result.exit_code == 0, result.output
    from portal.services.demo import OWNER

    browser = app.test_client()
    assert post_form(browser, "/staff/login", {"email": OWNER[0], "password": OWNER[1]}).status_code == 302
    html = browser.get("/staff/catalogue").get_data(as_text=True)
    services = re.findall(r'<tr id="service-\d+"(?! class="inactive")', html)
    rates = re.findall(r'<tr id="tax-rate-\d+"(?! class="inactive")', html)
    assert len(services) == 2 and len(rates) == 1
    assert "Design sprint" in html and "Website hosting" in html and "VAT" in html

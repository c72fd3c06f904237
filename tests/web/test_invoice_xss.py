"""Script typed into any free-text field shows as text, never runs: guest page, client portal,
the invoice email (HTML and text parts) and the PDF.

Each field carries its own payload, so a failure names the field that leaked.
"""
from __future__ import annotations

import io
from decimal import Decimal
from email.header import decode_header, make_header
from html.parser import HTMLParser

import pytest
from markupsafe import escape
from pypdf import PdfReader

from portal.extensions import db
from portal.models import TaxRate
from portal.services import invoices
from portal.services.events import Actor
from portal.services.passwords import hash_password
from tests.support.web import email_text, links

STAFF = Actor("staff", None, "staff@portal.example")

PAYLOADS = {
    "business name": '<script>alert("biz")</script>',
    "business address": '"><img src=x onerror=alert("address")>\nRua Nova 1',
    "client name": '<script>alert("client")</script>"><img src=x onerror=alert(2)>',
    "client address": "</textarea><svg onload=alert('client-address')>",
    "contact name": '"><img src=x onerror=alert("contact")>',
    "line description": "<script>alert('line')</script> Design",
    "memo": '"><img src=x onerror=alert("memo")> <iframe src="javascript:alert(1)"></iframe>',
    "footer": "<script>alert('footer')</script> IBAN PT50 0000",
}
PASSWORD = "client password 1"


def png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (20, 10), (10, 120, 200)).save(out, format="PNG")
    return out.getvalue()


class Scan(HTMLParser):
    """What a browser would build: tags, attributes, and the text a reader sees."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.inline_scripts: list[str] = []
        self.handlers: list[tuple[str, str, str]] = []
        self.bad_tags: list[tuple[str, dict]] = []
        self.text_parts: list[str] = []
        self._in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        for name, value in attrs:
            if name.lower().startswith("on"):
                self.handlers.append((tag, name, value or ""))
            if value and value.strip().lower().startswith("javascript:"):
                self.handlers.append((tag, name, value))
        if tag == "script":
            self._in_script = True
            if not values.get("src"):
                self.inline_scripts.append("")
        if tag == "iframe" or (tag == "img" and values.get("src") == "x"):
            self.bad_tags.append((tag, values))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.inline_scripts.append(data)
        else:
            self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())


def flat(value: str) -> str:
    return " ".join(value.split())


def assert_inert(html: str, fields: list[str], where: str):
    """No payload became markup, and each one shows to the reader as the literal text typed."""
    scan = Scan(html)
    assert scan.inline_scripts == [], f"{where}: an inline script appeared"
    assert scan.handlers == [], f"{where}: an event handler or javascript: URL appeared: {scan.handlers}"
    assert scan.bad_tags == [], f"{where}: injected tags: {scan.bad_tags}"
    for field in fields:
        payload = PAYLOADS[field]
        for piece in payload.split("\n"):
            assert piece not in html or "<" not in piece, f"{where}: the {field} came out raw"
            assert flat(piece) in scan.text, f"{where}: the {field} is not shown as text"
        assert str(escape(payload.split("\n")[0])) in html, f"{where}: the {field} is not HTML-escaped"


def squash(value: str) -> str:
    return "".join(value.split())


@pytest.fixture
def sent(make, app):
    """A business, client, contact and invoice with a payload in every free-text field, sent by email."""
    make.business(name=PAYLOADS["business name"], address=PAYLOADS["business address"], currency="EUR",
                  logo=png(), logo_content_type="image/png", invoice_number_format="INV-{seq:04d}")
    client = make.client(name=PAYLOADS["client name"], contacts=[
        {"name": PAYLOADS["contact name"], "email": "ana@acme.example", "receives_invoices": True}])
    client.address = PAYLOADS["client address"]
    contact = client.contacts[0]
    contact.portal_access = True
    contact.password_hash = hash_password(PASSWORD)
    rate = TaxRate(name="VAT", percent=Decimal("23"), inclusive=False)
    db.session.add(rate)
    db.session.commit()
    invoice = invoices.create_draft(client, STAFF)
    invoices.save_draft(invoice, invoices.DraftInput(
        currency="EUR", memo=PAYLOADS["memo"], footer=PAYLOADS["footer"],
        lines=[{"description": PAYLOADS["line description"], "quantity": "2", "unit_price": "50.00",
                "tax_rate_id": str(rate.id)}]), STAFF)
    invoices.send(invoice, STAFF)
    return {"id": invoice.id, "number": invoice.number}


DOCUMENT_FIELDS = ["business name", "business address", "client name", "client address", "contact name",
                   "line description", "memo", "footer"]


def test_the_guest_page_shows_every_payload_as_text(sent, run_worker, smtp_server, client):
    run_worker()
    [message] = smtp_server.to("ana@acme.example")
    [pay_link] = [u for u in links(email_text(message)) if "/pay/" in u]
    response = client.get(pay_link.replace("http://portal.test", ""))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert_inert(html, DOCUMENT_FIELDS, "guest page")
    assert sent["number"] in html


def test_the_client_portal_shows_every_payload_as_text(sent, client, auth):
    assert auth.login_contact("ana@acme.example", PASSWORD).status_code == 302
    for url, fields in (("/portal/", ["business name", "client name", "contact name", "client address"]),
                        ("/portal/invoices", ["business name"])):
        html = client.get(url).get_data(as_text=True)
        assert sent["number"] in html
        assert_inert(html, fields, url)
    page = client.get(f"/portal/invoices/{sent['id']}")
    assert page.status_code == 200
    assert_inert(page.get_data(as_text=True), DOCUMENT_FIELDS, "portal invoice page")


def test_the_invoice_email_escapes_html_and_keeps_text_literal(sent, run_worker, smtp_server):
    run_worker()
    [message] = smtp_server.to("ana@acme.example")
    subject = flat(str(make_header(decode_header(message["Subject"]))))
    assert subject == f'{PAYLOADS["business name"]} sent you an invoice'

    [html_part] = [p for p in message.walk() if p.get_content_type() == "text/html"]
    html = html_part.get_payload(decode=True).decode(html_part.get_content_charset() or "utf-8")
    # The email names the business (header, body, footer), its address and the contact.
    assert_inert(html, ["business name", "business address", "contact name"], "email HTML")

    plain = email_text(message)
    for field in ("business name", "contact name"):
        assert PAYLOADS[field] in plain, f"the {field} is typed text in the plain part, shown as is"
    assert "&lt;" not in plain and "&#34;" not in plain and "&quot;" not in plain, "no HTML escaping in plain text"


def test_the_pdf_shows_every_payload_as_literal_text(sent, run_worker, smtp_server, client):
    run_worker()
    [message] = smtp_server.to("ana@acme.example")
    [attachment] = [p for p in message.walk() if p.get_content_type() == "application/pdf"]
    [pay_link] = [u for u in links(email_text(message)) if "/pay/" in u]
    downloaded = client.get(pay_link.replace("http://portal.test", "") + "/pdf").data
    for data in (attachment.get_payload(decode=True), downloaded):
        reader = PdfReader(io.BytesIO(data))
        text = squash("".join(page.extract_text() for page in reader.pages))
        for field in DOCUMENT_FIELDS:
            for piece in PAYLOADS[field].split("\n"):
                assert squash(piece) in text, f"the {field} is not literal text in the PDF"
        assert len(reader.pages[0].images) == 1, "only the logo is an image; no payload became one"


def test_the_staff_invoice_page_shows_every_payload_as_text(sent, staff_client):
    page = staff_client.get(f"/staff/invoices/{sent['id']}")
    assert page.status_code == 200
    assert_inert(page.get_data(as_text=True), DOCUMENT_FIELDS, "staff invoice page")


def test_the_scan_itself_catches_raw_markup():
    assert Scan('<p>ok</p><script src="/static/x.js"></script>').inline_scripts == []
    assert Scan("<img src=x onerror=alert(1)>").handlers and Scan("<img src=x onerror=alert(1)>").bad_tags
    assert Scan("<script>alert(1)</script>").inline_scripts
    assert Scan('<iframe src="javascript:alert(1)"></iframe>').handlers

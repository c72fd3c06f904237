"""What a guest sees at /pay/<token>, and what a client sees under /portal/invoices."""
from __future__ import annotations

import io
import re
from datetime import datetime, timedelta

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from portal.extensions import db
from portal.models import Event
from portal.services import invoices
from portal.services.events import Actor
from tests.support import make

STAFF = Actor("staff", None, "staff@portal.example")
FOOTER = "Pay by bank transfer to IBAN PT50 0002 0123 1234 5678 9015 4"


def png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (20, 10), (10, 120, 200)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def vat(app):
    return make.tax_rate()  # VAT 23 %, on top of prices


@pytest.fixture
def ana(make):
    make.business(name="Tidewater Studio", currency="EUR", brand_color="#0f766e", logo=png(),
                  logo_content_type="image/png", invoice_number_format="INV-{seq:04d}", payment_terms_days=14,
                  address="Rua das Flores 12\n1200-195 Lisboa", email="billing@tidewater.example")
    return make.contact_with_login(email="ana@acme.example", client_name="Acme Ltd")


def finalized(client, vat, memo="Thanks for your business.", lines=None):
    return make.invoice(client, memo=memo, footer=FOOTER, lines=lines or [
        {"description": "Brand workshop", "quantity": "2", "unit_price": "450.00", "tax_rate_id": str(vat.id)},
        {"description": "Printing", "quantity": "1", "unit_price": "100.00", "discount_kind": "percent",
         "discount_value": "10"},
    ])


def text_of(response) -> str:
    """The page's visible text, tags removed and whitespace collapsed."""
    html = response.get_data(as_text=True)
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).replace("&amp;", "&").split())


def views() -> int:
    return len(db.session.scalars(select(Event).where(Event.type == "invoice.viewed")).all())


# The guest page ----------------------------------------------------------------------------------

def test_the_guest_page_shows_the_branded_invoice(ana, vat, client):
    invoice = finalized(ana.client, vat)
    number, due = invoice.number, invoice.due_date
    link = make.guest_link(invoice)

    response = client.get(link)

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    page = text_of(response)
    # The business's brand: its stylesheet (colour), logo and name; no staff or client navigation.
    assert '<link rel="stylesheet" href="/branding.css">' in html
    assert client.get("/branding.css").get_data(as_text=True).count("#0f766e") > 1
    assert 'src="/branding/logo"' in html
    assert "Tidewater Studio" in page and "Rua das Flores 12" in page
    assert "Sign out" not in page and "/staff/" not in html and "/portal/" not in html
    # The document: lines, tax breakdown, totals, dates, terms, status.
    assert f"Invoice {number}" in page
    assert "Brand workshop" in page and "Printing" in page
    assert "VAT 23% on €900.00 €207.00" in page
    assert "Subtotal €1,000.00" in page and "Discounts −€10.00" in page
    assert "Total €1,197.00" in page and "Amount due €1,197.00" in page
    assert f"Due {due.strftime('%b')} {due.day}, {due.year}" in page
    assert "Thanks for your business." in page
    assert "Sent" in page
    # Payment: online (the sandbox form, see test_guest_payment.py), and the bank details as well.
    assert "Online payment arrives here soon" not in page
    assert FOOTER in page and f"Quote invoice {number} as the reference" in page
    assert 'id="payment"' in html and f'action="{link}/pay"' in html.split('id="payment"')[1].split("</section>")[0]
    # The download.
    assert f'href="{link}/pdf"' in html and "Download PDF" in page


def test_the_pdf_link_downloads_the_same_invoice(ana, vat, client):
    invoice = finalized(ana.client, vat)
    number = invoice.number
    link = make.guest_link(invoice)
    response = client.get(link + "/pdf")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == f"attachment; filename={number}.pdf"
    text = PdfReader(io.BytesIO(response.data)).pages[0].extract_text()
    assert number in text and "€1,197.00" in text and "Brand workshop" in text


def test_each_token_records_one_view_whatever_is_opened_first(ana, vat, client):
    invoice = finalized(ana.client, vat)
    first, second = make.guest_link(invoice), make.guest_link(invoice)
    assert views() == 0

    client.get(first)
    client.get(first)
    client.get(first + "/pdf")
    assert views() == 1, "reloading or downloading through the same link is not a new view"

    client.get(second + "/pdf")  # a PDF fetched straight from the link is that link's first view
    client.get(second)
    assert views() == 2
    events = db.session.scalars(select(Event).where(Event.type == "invoice.viewed")).all()
    assert {e.subject_id for e in events} == {invoice.id}
    assert {e.actor_kind for e in events} == {"guest"}


def test_a_paid_invoice_says_paid_and_asks_for_nothing(ana, vat, client):
    invoice = finalized(ana.client, vat)
    link = make.guest_link(invoice)
    invoices.record_manual_payment(invoice, "1197.00", "wire", "", "REF-1", STAFF)
    page = text_of(client.get(link))
    assert "Paid. This invoice is paid in full." in page
    assert "Amount due €0.00" in page and "Paid −€1,197.00" in page
    assert "Online payment arrives here soon" not in page and "Nothing is due" in page


def test_a_partly_paid_invoice_asks_for_the_rest(ana, vat, client):
    invoice = finalized(ana.client, vat)
    link = make.guest_link(invoice)
    invoices.record_manual_payment(invoice, "197.00", "wire", "", "", STAFF)
    page = text_of(client.get(link))
    assert "€1,000.00 due by" in page and "Amount due €1,000.00" in page


def test_a_cancelled_invoice_shows_as_cancelled(ana, vat, client):
    invoice = finalized(ana.client, vat)
    link = make.guest_link(invoice)
    invoices.void(invoice, STAFF, "Duplicate")
    page = text_of(client.get(link))
    assert "Cancelled. This invoice was cancelled: Duplicate. Nothing is due on it." in page
    assert "Online payment arrives here soon" not in page


def test_an_overdue_invoice_says_so(ana, vat, client, cli):
    invoice = finalized(ana.client, vat)
    link = make.guest_link(invoice)
    later = datetime.combine(invoice.due_date + timedelta(days=2), datetime.min.time()).replace(hour=12)
    assert cli.invoke(args=["portal", "tick", "--at", later.isoformat()]).exit_code == 0
    page = text_of(client.get(link))
    assert "Overdue." in page and "€1,197.00 was due" in page
    assert "Pay €1,197.00" in page


def test_unknown_tokens_show_a_plain_not_found_page(ana, client):
    response = client.get("/pay/does-not-exist")
    assert response.status_code == 404
    assert "Not found" in text_of(response)


# The client portal -----------------------------------------------------------------------------

def test_the_portal_lists_the_clients_invoices(ana, vat, client, auth, make):
    paid = finalized(ana.client, vat)
    invoices.record_manual_payment(paid, "200.00", "wire", "", "", STAFF)
    invoices.record_manual_payment(paid, "997.00", "wire", "", "", STAFF)
    partly = finalized(ana.client, vat)
    invoices.record_manual_payment(partly, "197.00", "check", "", "", STAFF)
    cancelled = finalized(ana.client, vat)
    invoices.void(cancelled, STAFF)
    numbers = [paid.number, partly.number, cancelled.number]
    issued = paid.issue_date
    invoices.create_draft(ana.client, STAFF)  # a draft: never listed

    auth.login_contact()
    response = client.get("/portal/invoices")
    assert response.status_code == 200
    page = text_of(response)
    assert "no invoices yet" not in page
    issued_text = f"{issued.strftime('%b')} {issued.day}, {issued.year}"
    rows = re.findall(r"<tr>.*?</tr>", response.get_data(as_text=True), flags=re.S)[1:]
    rows = [" ".join(re.sub(r"<[^>]+>", " ", r).split()) for r in rows]
    assert len(rows) == 3
    # Newest first: number, status, issued, due, total, amount due.
    assert rows[0].startswith(f"{numbers[2]} Cancelled {issued_text}") and "€1,197.00 — Nothing due" in rows[0]
    assert rows[1].startswith(f"{numbers[1]} Sent") and rows[1].endswith("€1,197.00 €1,000.00 PDF of invoice "
                                                                        f"{numbers[1]}")
    assert rows[2].startswith(f"{numbers[0]} Paid") and "€1,197.00 €0.00" in rows[2]

    home = text_of(client.get("/portal/"))
    assert "Recent invoices" in home and all(n in home for n in numbers)


def test_the_portal_pages_through_many_invoices(ana, vat, client, auth):
    made = [finalized(ana.client, vat, lines=[{"description": f"Month {i}", "quantity": "1",
                                               "unit_price": "10.00"}]).number for i in range(23)]
    auth.login_contact()
    home = text_of(client.get("/portal/"))
    assert "All 23 invoices" in home
    assert sum(n in home for n in made) == 5

    first = client.get("/portal/invoices")
    assert "Page 1 of 2" in text_of(first)
    assert made[-1] in text_of(first) and made[0] not in text_of(first)
    more = client.get("/portal/invoices?page=2", headers={"HX-Request": "true"})
    fragment = more.get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="invoice-rows">') and "<html" not in fragment
    assert made[0] in fragment and made[-1] not in fragment and "Page 2 of 2" in fragment
    assert "There is no page 9" in text_of(client.get("/portal/invoices?page=9"))


def test_the_portal_invoice_page_shows_the_document_and_downloads_the_pdf(ana, vat, client, auth):
    invoice = finalized(ana.client, vat)
    number, invoice_id = invoice.number, invoice.id
    auth.login_contact()
    listing = client.get("/portal/invoices").get_data(as_text=True)
    assert f'href="/portal/invoices/{invoice_id}"' in listing

    response = client.get(f"/portal/invoices/{invoice_id}")
    page = text_of(response)
    assert f"Invoice {number}" in page and "Brand workshop" in page and "Total €1,197.00" in page
    # F4: the portal pays in place (the guest page's form); the bank details stay on offer
    assert "Online payment arrives here soon" not in page and FOOTER in page
    assert f'action="/portal/invoices/{invoice_id}/pay"' in response.get_data(as_text=True)
    assert f'href="/portal/invoices/{invoice_id}/pdf"' in response.get_data(as_text=True)
    assert views() == 0, "a client reading in the portal is not a guest-link view"

    pdf = client.get(f"/portal/invoices/{invoice_id}/pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.headers["Content-Disposition"] == f"attachment; filename={number}.pdf"
    assert pdf.headers["Cache-Control"] == "no-store"
    assert number in PdfReader(io.BytesIO(pdf.data)).pages[0].extract_text()


def test_a_client_without_invoices_is_told_so(ana, client, auth):
    auth.login_contact()
    assert "You have no invoices yet" in text_of(client.get("/portal/"))
    assert "You have no invoices yet" in text_of(client.get("/portal/invoices"))

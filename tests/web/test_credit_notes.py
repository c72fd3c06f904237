"""Credit notes through the pages: staff issue one on the invoice page and download its PDF; the
client's contact sees theirs on /portal/credit and downloads their PDFs, never another client's."""
from __future__ import annotations

import io
import re

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import CreditEntry, CreditNote, Invoice, Payment, Refund
from portal.services import credit_notes, invoices
from portal.services.events import Actor
from tests.support.web import email_text, post_form, text_of

STAFF = Actor("staff", None, "staff@portal.example")


def pdf_text(data: bytes) -> str:
    return "".join("".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages).split())


@pytest.fixture
def paid(make):
    """A €100.00 invoice paid by card through the sandbox: (invoice id, payment id)."""
    make.business(name="Tidewater Studio", currency="EUR")
    invoice = make.invoice(make.client())
    payment = make.card_payment(invoice)
    return invoice.id, payment.id


def issue_url(invoice_id):
    return f"/staff/invoices/{invoice_id}/credit-notes"


def written() -> tuple:
    return tuple(db.session.scalar(select(func.count()).select_from(m)) for m in (CreditNote, CreditEntry, Refund))


def test_staff_issue_a_split_credit_note_from_the_invoice_page(paid, staff_client, run_worker, smtp_server):
    invoice_id, payment_id = paid
    page = staff_client.get(f"/staff/invoices/{invoice_id}")
    html = page.get_data(as_text=True)
    assert f'action="{issue_url(invoice_id)}#issue-credit-note"' in html
    assert "Issue a credit note" in text_of(page) and "No credit notes yet." in text_of(page)
    assert re.search(rf'<option value="{payment_id}"[^>]*>[^<]*up to €100.00', html), "the payment picker"
    assert '<option value="product_unsatisfactory"' in html

    response = post_form(staff_client, issue_url(invoice_id), {
        "to_refund": "20.00", "payment_id": str(payment_id), "to_balance": "15.00", "to_outside": "5.00",
        "reason": "product_unsatisfactory", "memo": "Late delivery"})
    assert response.status_code == 303
    page = staff_client.get(response.headers["Location"])
    [note] = db.session.scalars(select(CreditNote)).all()
    assert f"Credit note {note.number} issued" in text_of(page)
    shown = text_of(page)
    assert note.number in shown and "€40.00" in shown
    assert "€20.00 refunded" in shown and "€15.00 to credit balance" in shown
    assert "€5.00 settled outside the portal" in shown and "Service unsatisfactory: Late delivery" in shown
    assert f'href="/staff/credit-notes/{note.id}/pdf"' in page.get_data(as_text=True)
    assert "Amount due €0.00" in shown and "Credit notes −€20.00" in shown, "the invoice document shows it"

    db.session.expire_all()
    invoice = db.session.get(Invoice, invoice_id)
    assert (invoice.status, invoice.amount_due, invoice.amount_paid, invoice.credit_noted) == ("paid", 0, 8000, 2000)
    assert db.session.get(Payment, payment_id).refunded_amount == 2000
    assert db.session.scalar(select(CreditEntry.amount).where(CreditEntry.kind == "credit_note")) == 1500

    number, invoice_number = note.number, invoice.number
    run_worker()
    mails = [m for m in smtp_server.to("ana@acme.example") if m["Subject"].startswith("Credit note")]
    assert len(mails) == 1
    body = email_text(mails[0])
    assert f"credit note {number} for €40.00 on invoice {invoice_number}" in body
    assert "- €15.00 is added to your credit balance" in body and "Late delivery" in body
    [attachment] = [p for p in mails[0].walk() if p.get_content_type() == "application/pdf"]
    assert attachment.get_filename() == f"{number}.pdf" and number in pdf_text(attachment.get_payload(decode=True))


def test_a_refused_credit_note_re_renders_the_page_with_what_was_typed(paid, staff_client):
    invoice_id, payment_id = paid
    before = written()
    response = post_form(staff_client, issue_url(invoice_id), {
        "to_due": "5.00", "to_refund": "100.01", "payment_id": str(payment_id), "reason": "duplicate",
        "memo": "<b>typo</b>"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    page = text_of(response)
    assert "The credit note was not issued." in page
    assert "Nothing is due on this invoice." in page
    assert "At most €100.00 of this payment can be refunded." in page
    assert 'id="issue-credit-note" open' in html
    assert re.search(r'id="cn-to_due"[^>]*value="5.00"[^>]*aria-invalid="true"', html)
    assert re.search(r'id="cn-to_refund"[^>]*value="100.01"', html)
    assert re.search(rf'<option value="{payment_id}" selected', html)
    assert '<option value="duplicate" selected' in html
    assert "&lt;b&gt;typo&lt;/b&gt;</textarea>" in html and "<b>typo</b>" not in html
    assert written() == before
    db.session.expire_all()
    assert db.session.get(Payment, payment_id).refunded_amount == 0

    response = post_form(staff_client, issue_url(invoice_id), {"reason": "other"})
    assert response.status_code == 422 and "Enter an amount above zero in at least one part." in text_of(response)
    assert written() == before


def test_credit_notes_need_csrf_and_a_real_invoice(paid, staff_client):
    invoice_id, _ = paid
    response = staff_client.post(issue_url(invoice_id), data={"to_outside": "1.00", "reason": "other"})
    assert response.status_code == 400
    assert post_form(staff_client, issue_url(999999), {"to_outside": "1.00"}).status_code == 404
    assert staff_client.get("/staff/credit-notes/999999/pdf").status_code == 404
    assert written() == (0, 0, 0)


def test_a_draft_offers_no_credit_note_and_refuses_one(make, staff_client):
    make.business(currency="EUR")
    draft = invoices.create_draft(make.client(), STAFF)
    response = post_form(staff_client, issue_url(draft.id), {"to_due": "1.00", "reason": "other"})
    assert response.status_code == 303
    page = staff_client.get(response.headers["Location"])
    assert "A draft takes no credit notes" in text_of(page)
    assert written() == (0, 0, 0)


def test_staff_download_the_credit_note_pdf(paid, staff_client, client):
    invoice_id, _ = paid
    note = credit_notes.issue(invoice_id, {"to_outside": "7.50", "reason": "other", "memo": "Cash back"}, STAFF)
    response = staff_client.get(f"/staff/credit-notes/{note.id}/pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == f"attachment; filename={note.number}.pdf"
    assert response.headers["Cache-Control"] == "no-store"
    text = pdf_text(response.data)
    assert note.number in text and "€7.50" in text and "Cashback" in text and "TidewaterStudio" in text


def test_staff_pdf_needs_a_staff_login(paid, client):
    invoice_id, _ = paid
    note = credit_notes.issue(invoice_id, {"to_outside": "1.00", "reason": "other"}, STAFF)
    response = client.get(f"/staff/credit-notes/{note.id}/pdf")
    assert response.status_code == 302 and "/staff/login" in response.headers["Location"]


@pytest.fixture
def portal_contact(make, auth):
    """Ana of Acme signed in to the portal, Acme with a credit note; Beta (another client) with one too."""
    make.business(name="Tidewater Studio", currency="EUR")
    ana = make.contact_with_login()
    mine = make.invoice(ana.client)
    theirs = make.invoice(make.client(name="Beta", contacts=[{"name": "Bo", "email": "bo@beta.example",
                                                           "receives_invoices": True}]))
    my_note = credit_notes.issue(mine.id, {"to_due": "10.00", "reason": "order_change"}, STAFF)
    their_note = credit_notes.issue(theirs.id, {"to_due": "20.00", "reason": "other"}, STAFF)
    assert auth.login_contact().status_code == 302
    return {"mine": my_note.id, "my_number": my_note.number, "invoice": mine.number,
            "theirs": their_note.id, "their_number": their_note.number}


def test_the_contact_sees_their_credit_notes_and_downloads_the_pdf(portal_contact, client):
    page = client.get("/portal/credit")
    assert page.status_code == 200
    shown = text_of(page)
    assert portal_contact["my_number"] in shown and portal_contact["invoice"] in shown
    assert "€10.00 off the amount due" in shown
    assert portal_contact["their_number"] not in shown, "another client's credit note"
    assert f'href="/portal/credit-notes/{portal_contact["mine"]}/pdf"' in page.get_data(as_text=True)

    response = client.get(f"/portal/credit-notes/{portal_contact['mine']}/pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert portal_contact["my_number"] in pdf_text(response.data)


def test_another_clients_credit_note_pdf_is_404(portal_contact, client):
    response = client.get(f"/portal/credit-notes/{portal_contact['theirs']}/pdf")
    assert response.status_code == 404
    assert client.get("/portal/credit-notes/999999/pdf").status_code == 404


def test_the_portal_pdf_needs_a_contact_login(portal_contact, client, auth, make):
    auth.logout_contact()
    response = client.get(f"/portal/credit-notes/{portal_contact['mine']}/pdf")
    assert response.status_code == 302 and "/portal/login" in response.headers["Location"]
    staff = make.staff()
    assert auth.login_staff(staff.email, staff.plain_password).status_code == 302
    assert client.get(f"/portal/credit-notes/{portal_contact['mine']}/pdf").status_code == 403, \
        "a staff login is not a client"

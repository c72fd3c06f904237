"""The invoice use cases, called as views and jobs call them."""
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Charge, Event, Invoice, InvoiceLine
from portal.models.invoices import FrozenInvoiceError
from portal.services import invoices
from portal.services.errors import ServiceError
from portal.services.events import Actor, SYSTEM
from tests.support import make

STAFF = Actor("staff", None, "staff@portal.example")


@pytest.fixture
def vat(app):
    return make.tax_rate()  # VAT 23 %, on top of prices


@pytest.fixture
def client_a(make):
    make.business(name="Tidewater Studio", currency="EUR", timezone="Europe/Lisbon",
                  invoice_number_format="INV-{year}-{seq:04d}", payment_terms_days=14)
    return make.client(name="Acme Ltd")


def draft_with_lines(client, vat, lines=None, **header):
    return make.invoice(
        client, status="draft", currency=header.get("currency", "EUR"), memo=header.get("memo", ""),
        discount=(header.get("discount_kind", ""), header.get("discount_value", "")),
        due=header.get("due_date", ""),
        lines=lines or [
            {"description": "Design, hours", "quantity": "10", "unit_price": "120.00", "tax_rate_id": str(vat.id)},
            {"description": "Hosting", "quantity": "1", "unit_price": "500", "discount_kind": "percent",
             "discount_value": "10", "tax_rate_id": str(vat.id)},
        ])


def test_draft_totals_are_computed_by_the_server(client_a, vat):
    invoice = draft_with_lines(client_a, vat, discount_kind="fixed", discount_value="100.00")
    assert invoice.subtotal == 170000
    assert invoice.discount_total == 15000
    assert invoice.total == invoice.subtotal - invoice.discount_total + invoice.tax_total
    assert invoice.amount_due == invoice.total
    assert invoice.number is None


def test_bad_lines_change_nothing_and_say_where(client_a, vat):
    invoice = draft_with_lines(client_a, vat)
    before = invoice.total
    bad = invoices.DraftInput(currency="EUR", lines=[
        {"description": "", "quantity": "-1", "unit_price": "12.345", "tax_rate_id": "999"}])
    with pytest.raises(invoices.InvoiceInvalid) as caught:
        invoices.save_draft(invoice, bad, STAFF)
    assert set(caught.value.errors) == {"lines-0-description", "lines-0-quantity", "lines-0-unit_price",
                                        "lines-0-tax_rate_id"}
    db.session.expire_all()
    assert db.session.get(Invoice, invoice.id).total == before
    assert len(db.session.get(Invoice, invoice.id).lines) == 2


def test_finalize_numbers_freezes_and_locks(client_a, vat):
    invoice = draft_with_lines(client_a, vat)
    with clock.frozen(datetime(2026, 11, 21, 12, tzinfo=timezone.utc)):
        invoices.finalize(invoice, STAFF)
    assert invoice.status == "open"
    assert invoice.number == "INV-2026-0001"
    assert invoice.issue_date == date(2026, 11, 21)
    assert invoice.due_date == date(2026, 12, 5)
    assert invoice.bill_to["name"] == "Acme Ltd"
    second = draft_with_lines(client_a, vat)
    with clock.frozen(datetime(2026, 11, 21, 12, tzinfo=timezone.utc)):
        invoices.finalize(second, STAFF)
    assert second.number == "INV-2026-0002"

    invoice.total = 1
    with pytest.raises(FrozenInvoiceError):
        db.session.flush()
    db.session.rollback()
    line = db.session.get(Invoice, invoice.id).lines[0]
    line.unit_price = 1
    with pytest.raises(FrozenInvoiceError):
        db.session.flush()
    db.session.rollback()
    db.session.add(InvoiceLine(invoice_id=invoice.id, description="sneaky", quantity=Decimal(1), unit_price=1))
    with pytest.raises(FrozenInvoiceError):
        db.session.flush()
    db.session.rollback()
    with pytest.raises(ServiceError):
        invoices.save_draft(db.session.get(Invoice, invoice.id), invoices.DraftInput(currency="EUR", lines=[]), STAFF)


def test_payments_partial_then_paid_then_overpayment_becomes_credit(client_a, vat):
    from portal.services import credits

    invoice = draft_with_lines(client_a, vat)
    invoices.finalize(invoice, STAFF)
    with pytest.raises(invoices.InvoiceInvalid) as caught:
        invoices.record_manual_payment(invoice, "9999999999999.00", "wire", "", "", STAFF)
    assert "too large" in caught.value.errors["amount"]
    invoices.record_manual_payment(invoice, "100.00", "wire", "", "REF1", STAFF)
    assert invoice.status == "open" and invoice.amount_paid == 10000
    rest = invoice.amount_due
    payment = invoices.record_manual_payment(invoice, f"{rest // 100 + 5}.{rest % 100:02d}", "check", "", "", STAFF)
    assert invoice.status == "paid" and invoice.amount_due == 0 and invoice.amount_paid == invoice.total
    assert payment.amount == rest + 500 and payment.credited_amount == 500
    assert credits.balance(client_a.id, invoice.currency) == 500


def test_tick_marks_overdue_once(client_a, vat, cli):
    invoice = draft_with_lines(client_a, vat)
    invoices.finalize(invoice, STAFF)
    due = invoice.due_date
    later = datetime.combine(due + timedelta(days=1), datetime.min.time()).replace(hour=12).isoformat()
    assert cli.invoke(args=["portal", "tick", "--at", later]).exit_code == 0
    assert cli.invoke(args=["portal", "tick", "--at", later]).exit_code == 0
    db.session.expire_all()
    assert db.session.get(Invoice, invoice.id).status == "overdue"
    events = db.session.scalars(select(Event).where(Event.type == "invoice.past_due")).all()
    assert len(events) == 1


def test_charges_drafted_returned_on_delete_and_billed_on_finalize(client_a, vat):
    for desc in ("Extra meeting", "Printing"):
        db.session.add(Charge(client_id=client_a.id, description=desc, quantity=Decimal(1), unit_price=5000,
                              currency="EUR", status="open"))
    db.session.commit()
    draft = invoices.create_draft(client_a, STAFF, all_open_charges=True)
    assert len(draft.lines) == 2
    assert {c.status for c in db.session.scalars(select(Charge))} == {"drafted"}
    invoices.delete_draft(draft, STAFF)
    assert {c.status for c in db.session.scalars(select(Charge))} == {"open"}
    one = db.session.scalars(select(Charge)).first()
    draft = invoices.create_draft(client_a, STAFF, charge_ids=[one.id])
    invoices.finalize(draft, STAFF)
    db.session.expire_all()
    assert db.session.get(Charge, one.id).status == "billed"


def test_guest_token_opens_only_its_invoice_and_drafts_have_none(client_a, vat):
    invoice = draft_with_lines(client_a, vat)
    with pytest.raises(ServiceError):
        invoices.issue_guest_token(invoice)
    invoices.finalize(invoice, STAFF)
    raw = invoices.issue_guest_token(invoice)
    db.session.commit()
    assert invoices.invoice_for_token(raw).id == invoice.id
    assert invoices.invoice_for_token(raw + "x") is None
    views = db.session.scalars(select(Event).where(Event.type == "invoice.viewed")).all()
    invoices.invoice_for_token(raw)
    assert len(views) == 1
    invoices.revoke_guest_tokens(invoice, STAFF)
    assert invoices.invoice_for_token(raw) is None


def test_void_and_replace(client_a, vat):
    invoice = draft_with_lines(client_a, vat)
    invoices.finalize(invoice, STAFF)
    invoices.void(invoice, STAFF, "wrong client")
    assert invoice.status == "void" and invoice.number
    draft = invoices.replace(invoice, STAFF)
    assert draft.status == "draft" and draft.total == invoice.total and draft.replaces_invoice_id == invoice.id
    with pytest.raises(ServiceError):
        invoices.void(invoice, SYSTEM)


def test_send_emails_every_billing_contact_the_pay_link_and_the_pdf(make, vat, run_worker, smtp_server, client):
    from pypdf import PdfReader
    import io
    from tests.support.web import email_text, links

    make.business(name="Tidewater Studio", currency="EUR")
    acme = make.client(name="Acme Ltd", contacts=[
        {"name": "Ana", "email": "ana@acme.example", "receives_invoices": True},
        {"name": "Tom", "email": "tom@acme.example", "receives_invoices": False},
        {"name": "Rui", "email": "rui@acme.example", "receives_invoices": True},
    ])
    invoice = draft_with_lines(acme, vat)
    sent_to = invoices.send(invoice, STAFF)
    assert sorted(sent_to) == ["ana@acme.example", "rui@acme.example"]
    assert invoice.status == "open" and invoice.number
    number = invoice.number
    assert run_worker() == 2  # the job ends its DB session: re-read what is needed below
    assert len(smtp_server.messages) == 2 and not smtp_server.to("tom@acme.example")
    [message] = smtp_server.to("ana@acme.example")
    assert message["Subject"] == "Tidewater Studio sent you an invoice"
    pay_links = [u for u in links(email_text(message)) if "/pay/" in u]
    assert pay_links
    attachment = [p for p in message.walk() if p.get_content_type() == "application/pdf"][0]
    assert attachment.get_filename() == f"{number}.pdf"
    text = PdfReader(io.BytesIO(attachment.get_payload(decode=True))).pages[0].extract_text()
    assert number in text
    page = client.get(pay_links[0].replace("http://portal.test", ""))
    assert page.status_code == 200 and number in page.get_data(as_text=True)


def test_finalize_and_lock_emails_only_when_the_ready_notification_is_on(make, vat, run_worker, smtp_server):
    make.business(name="Tidewater Studio", currency="EUR", notify_invoice_ready=False)
    acme = make.client(name="Acme Ltd")
    quiet = draft_with_lines(acme, vat)
    invoices.make_ready(quiet, STAFF)
    assert quiet.status == "open" and quiet.number
    assert run_worker() == 0 and not smtp_server.messages

    make.business(notify_invoice_ready=True)
    told = draft_with_lines(acme, vat)
    invoices.make_ready(told, STAFF)
    assert run_worker() == 1
    assert smtp_server.to("ana@acme.example")


def test_a_typed_in_charge_id_attaches_nothing(client_a, vat, make):
    other = make.client(name="Other Co", contacts=[{"name": "O", "email": "o@other.example",
                                                     "receives_invoices": True}])
    foreign = Charge(client_id=other.id, description="Theirs", quantity=Decimal(1), unit_price=100,
                     currency="EUR", status="open")
    db.session.add(foreign)
    db.session.commit()
    draft = invoices.create_draft(client_a, STAFF)
    invoices.save_draft(draft, invoices.DraftInput(currency="EUR", lines=[
        {"description": "Mine", "quantity": "1", "unit_price": "1.00", "charge_id": str(foreign.id)}]), STAFF)
    invoices.finalize(draft, STAFF)
    db.session.expire_all()
    assert db.session.get(Charge, foreign.id).status == "open"
    assert db.session.get(Invoice, draft.id).lines[0].charge_id is None


def test_large_amounts_fit_the_money_columns_and_absurd_ones_are_refused(client_a, vat):
    """€50 million (5e9 cents, past a 4-byte column) and 30 billion dong are booked exactly."""
    from portal.services import credits

    big = draft_with_lines(client_a, vat, lines=[
        {"description": "Building", "quantity": "2", "unit_price": "25000000.00"}])
    invoices.finalize(big, STAFF)
    invoices.record_manual_payment(big, "50000100.00", "wire", "", "", STAFF)
    db.session.expire_all()
    paid = db.session.get(Invoice, big.id)
    assert (paid.total, paid.amount_paid, paid.amount_due, paid.status) == (5_000_000_000, 5_000_000_000, 0, "paid")
    assert credits.balance(client_a.id, "EUR") == 10_000

    dong = draft_with_lines(client_a, vat, currency="VND", lines=[
        {"description": "Fit-out", "quantity": "1", "unit_price": "30000000000"}])
    invoices.finalize(dong, STAFF)
    db.session.expire_all()
    assert db.session.get(Invoice, dong.id).amount_due == 30_000_000_000

    with pytest.raises(invoices.InvoiceInvalid) as caught:
        draft_with_lines(client_a, vat, lines=[
            {"description": "Too much", "quantity": "1000000", "unit_price": "999999999.00"}])
    assert caught.value.errors["lines-0-unit_price"] == "That amount is too large."

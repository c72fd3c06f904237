"""Credit notes at the service level: the split's effects, the limits, the numbering, the ledger."""
import io
import threading

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from portal import clock
from portal.extensions import db
from portal.models import Business, CreditEntry, CreditNote, Delivery, Event, Invoice, Payment, Refund
from portal.models.credits import LedgerAppendOnlyError
from portal.services import credit_notes, credits, invoices
from portal.services.credit_notes import CreditNoteInvalid
from portal.services.errors import ServiceError
from portal.services.events import Actor
from tests.support import make

STAFF = Actor("staff", None, "staff@portal.example")


@pytest.fixture
def app_settings(app_settings):
    # The concurrency tests need one connection per thread.
    return {**app_settings, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_size": 25}}


@pytest.fixture
def acme(make):
    make.business(name="Tidewater Studio", currency="EUR")
    return make.client()


def fresh(invoice_id) -> Invoice:
    db.session.expire_all()
    return db.session.get(Invoice, invoice_id)


def counts() -> tuple:
    return tuple(db.session.scalar(select(func.count()).select_from(model))
                 for model in (CreditNote, CreditEntry, Refund, Delivery))


def next_number() -> int:
    db.session.expire_all()
    return db.session.scalar(select(Business.credit_note_next_number))


def test_to_due_lowers_what_an_open_invoice_owes_and_pays_it_at_zero(acme):
    invoice = make.invoice(acme)
    note = credit_notes.issue(invoice.id, {"to_due": "30.00", "reason": "order_change", "memo": "One hour less"},
                              STAFF)
    year = clock.today().year
    assert (note.number, note.sequence_number, note.amount, note.to_due, note.reason, note.memo) == \
        (f"CN-{year}-00001", 1, 3000, 3000, "order_change", "One hour less")
    current = fresh(invoice.id)
    assert (current.status, current.credit_noted, current.amount_due, current.amount_paid) == ("open", 3000, 7000, 0)

    credit_notes.issue(invoice.id, {"to_due": "70.00", "reason": "other"}, STAFF)
    current = fresh(invoice.id)
    assert (current.status, current.credit_noted, current.amount_due) == ("paid", 10000, 0)
    issued = db.session.scalars(select(Event).where(Event.type == "credit_note.issued").order_by(Event.id)).all()
    assert [(e.subject_id, e.data["to_due"], e.after["amount_due"]) for e in issued] == \
        [(invoice.id, 3000, 7000), (invoice.id, 7000, 0)]
    assert db.session.scalars(select(Event.type).where(Event.type == "invoice.paid")).all() == ["invoice.paid"]
    assert not db.session.scalars(select(CreditEntry)).all(), "nothing went to the credit balance"


def test_to_balance_on_a_paid_invoice_adds_ledger_credit(acme):
    invoice = make.invoice(acme)
    invoices.record_manual_payment(invoice, "100.00", "wire", "", "", STAFF)
    note = credit_notes.issue(invoice.id, {"to_balance": "25.00", "reason": "product_unsatisfactory"}, STAFF)
    current = fresh(invoice.id)
    assert (current.status, current.amount_due, current.credit_noted, current.amount_paid) == ("paid", 0, 0, 10000)
    assert credits.balance(acme.id, "EUR") == 2500
    [entry] = db.session.scalars(select(CreditEntry)).all()
    assert (entry.kind, entry.amount, entry.credit_note_id, entry.invoice_id) == \
        ("credit_note", 2500, note.id, invoice.id)
    assert note.number in entry.description


def test_to_refund_refunds_through_the_gateway_and_the_invoice_stays_paid(acme):
    invoice = make.invoice(acme)
    payment = make.card_payment(invoice)
    note = credit_notes.issue(invoice.id, {"to_refund": "40.00", "payment_id": str(payment.id),
                                           "reason": "duplicate", "memo": "Charged twice"}, STAFF)
    current = fresh(invoice.id)
    assert (current.status, current.amount_due, current.amount_paid, current.credit_noted) == \
        ("paid", 0, 6000, 4000)
    [refund] = db.session.scalars(select(Refund)).all()
    assert (refund.amount, refund.from_credit, refund.invoice_id, refund.reason) == \
        (4000, 0, invoice.id, "Charged twice")
    assert refund.gateway_refund_id, "refunded through the gateway"
    assert note.refund_id == refund.id and note.to_refund == 4000
    assert db.session.get(Payment, payment.id).refunded_amount == 4000
    assert not db.session.scalars(select(Event).where(Event.type == "invoice.reopened")).all()


def test_a_partly_paid_invoice_keeps_its_amount_due_when_part_is_refunded(acme):
    invoice = make.invoice(acme)
    invoices.record_manual_payment(invoice, "40.00", "cash", "", "", STAFF)
    payment_id = db.session.scalar(select(Payment.id))
    credit_notes.issue(invoice.id, {"to_refund": "10.00", "to_due": "20.00", "to_outside": "5.00",
                                    "payment_id": str(payment_id), "reason": "other"}, STAFF)
    current = fresh(invoice.id)
    assert (current.status, current.amount_paid, current.credit_noted, current.amount_due) == \
        ("open", 3000, 3000, 4000)
    [note] = db.session.scalars(select(CreditNote)).all()
    assert (note.amount, note.to_outside) == (3500, 500)


@pytest.mark.parametrize("typed, field", [
    ({"to_due": "100.01"}, "to_due"),
    ({"to_balance": "1.00"}, "to_balance"),          # the invoice received nothing yet
    ({"to_outside": "0.01"}, "to_outside"),
    ({"to_due": "0"}, "amount"),
    ({"to_due": "ten"}, "to_due"),
    ({"to_due": "-5"}, "to_due"),
    ({"to_due": "1.00", "reason": "whim"}, "reason"),
    ({"to_due": "1.00", "memo": "x" * 2001}, "memo"),
])
def test_bad_splits_on_an_open_invoice_are_refused_and_nothing_is_written(acme, typed, field):
    invoice = make.invoice(acme)
    before = counts()
    with pytest.raises(CreditNoteInvalid) as caught:
        credit_notes.issue(invoice.id, {"reason": "other", **typed}, STAFF)
    assert field in caught.value.errors
    assert counts() == before and next_number() == 1
    current = fresh(invoice.id)
    assert (current.status, current.amount_due, current.credit_noted) == ("open", 10000, 0)


def test_refund_limits_on_a_paid_invoice(acme, make):
    invoice = make.invoice(acme)
    payment = make.card_payment(invoice)
    other = make.card_payment(make.invoice(make.client(name="Beta")))
    credit_notes.issue(invoice.id, {"to_balance": "60.00", "reason": "other"}, STAFF)
    before = counts()
    cases = [
        ({"to_refund": "10.00"}, "payment_id"),                                  # no payment chosen
        ({"to_refund": "10.00", "payment_id": str(other.id)}, "payment_id"),     # another invoice's
        ({"to_refund": "40.01", "payment_id": str(payment.id)}, "to_refund"),    # 100 received − 60 credited
        ({"to_refund": "30.00", "to_outside": "10.01", "payment_id": str(payment.id)}, "to_refund"),
    ]
    for typed, field in cases:
        with pytest.raises(CreditNoteInvalid) as caught:
            credit_notes.issue(invoice.id, {"reason": "other", **typed}, STAFF)
        assert field in caught.value.errors, (typed, caught.value.errors)
    assert counts() == before and next_number() == 2
    assert db.session.get(Payment, other.id).refunded_amount == 0
    credit_notes.issue(invoice.id, {"to_refund": "40.00", "payment_id": str(payment.id), "reason": "other"}, STAFF)
    with pytest.raises(CreditNoteInvalid) as caught:
        credit_notes.issue(invoice.id, {"to_outside": "0.01", "reason": "other"}, STAFF)
    assert "amount" in caught.value.errors, "the invoice's whole total is credited"


def test_drafts_and_cancelled_invoices_take_no_credit_notes(acme):
    draft = invoices.create_draft(acme, STAFF)
    with pytest.raises(ServiceError, match="draft"):
        credit_notes.issue(draft.id, {"to_due": "1.00", "reason": "other"}, STAFF)
    invoice = invoices.void(make.invoice(acme), STAFF)
    with pytest.raises(ServiceError, match="cancelled"):
        credit_notes.issue(invoice.id, {"to_due": "1.00", "reason": "other"}, STAFF)
    assert counts()[0] == 0


def test_uncollectible_invoice_is_paid_off_by_a_credit_note(acme):
    invoice = make.invoice(acme)
    invoice.status = "uncollectible"
    db.session.commit()
    credit_notes.issue(invoice.id, {"to_due": "100.00", "reason": "other"}, STAFF)
    assert fresh(invoice.id).status == "paid"


def test_numbers_are_gapless_follow_settings_and_skip_nothing_when_refused(make):
    make.business(currency="EUR", credit_note_number_format="AV-{seq:04d}", credit_note_next_number=41)
    client = make.client()
    first, second = make.invoice(client), make.invoice(client)
    a = credit_notes.issue(first.id, {"to_due": "10.00", "reason": "other"}, STAFF)
    with pytest.raises(CreditNoteInvalid):
        credit_notes.issue(second.id, {"to_due": "500.00", "reason": "other"}, STAFF)
    b = credit_notes.issue(second.id, {"to_due": "10.00", "reason": "other"}, STAFF)
    c = credit_notes.issue(first.id, {"to_due": "10.00", "reason": "other"}, STAFF)
    assert [n.number for n in (a, b, c)] == ["AV-0041", "AV-0042", "AV-0043"]
    assert next_number() == 44
    assert fresh(first.id).number.startswith("INV-"), "invoices keep their own sequence"


def test_credit_notes_and_their_ledger_rows_are_append_only(acme):
    invoice = make.invoice(acme)
    invoices.record_manual_payment(invoice, "100.00", "wire", "", "", STAFF)
    note = credit_notes.issue(invoice.id, {"to_balance": "10.00", "reason": "other"}, STAFF)
    note.amount = 1
    with pytest.raises(LedgerAppendOnlyError):
        db.session.flush()
    db.session.rollback()
    db.session.delete(db.session.get(CreditNote, note.id))
    with pytest.raises(LedgerAppendOnlyError):
        db.session.flush()
    db.session.rollback()
    assert db.session.get(CreditNote, note.id).amount == 1000


def test_the_client_is_emailed_the_credit_note_pdf(acme, run_worker, smtp_server):
    invoice = make.invoice(acme)
    number = credit_notes.issue(invoice.id, {"to_due": "12.34", "reason": "other", "memo": "Fixed price"},
                                STAFF).number
    invoice_number = invoice.number
    [delivery] = db.session.scalars(select(Delivery)).all()
    assert delivery.payload["attachments"] == [{"type": "credit_note_pdf", "credit_note_id": 1}]
    run_worker()  # the job ends its DB session: what is needed below was read before
    [message] = smtp_server.to("ana@acme.example")
    assert message["Subject"] == f"Credit note {number} for invoice {invoice_number}"
    [attachment] = [p for p in message.walk() if p.get_content_type() == "application/pdf"]
    assert attachment.get_filename() == f"{number}.pdf"
    text = "".join(PdfReader(io.BytesIO(attachment.get_payload(decode=True))).pages[0].extract_text().split())
    assert number in text and invoice_number in text and "€12.34" in text and "Fixedprice" in text


def test_the_pdf_escapes_what_people_typed(make):
    make.business(currency="EUR", name="Tidewater <b>Studio</b>")
    client = make.client(name="<script>alert(1)</script> Ltd")
    invoice = make.invoice(client)
    note = credit_notes.issue(invoice.id, {"to_due": "1.00", "reason": "other",
                                           "memo": "<img src=x onerror=alert(1)>"}, STAFF)
    html = credit_notes.render_html(note)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Ltd" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert credit_notes.render_pdf(note).startswith(b"%PDF")


def test_concurrent_credit_notes_get_consecutive_numbers_and_never_exceed_the_amount_due(app, make, db_kind):
    if db_kind != "postgresql":
        pytest.skip("row locks under real concurrency are PostgreSQL's; SQLite serialises writers")
    make.business(currency="EUR", credit_note_number_format="CN-{seq:05d}")
    client = make.client()
    ids = [make.invoice(client).id for _ in range(6)]
    shared = ids[0]
    jobs = [(i, "100.00") for i in ids[1:]] + [(shared, "30.00")] * 10   # 3 of the 10 fit in 100.00
    db.session.remove()

    barrier = threading.Barrier(len(jobs))
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def issue(invoice_id: int, amount: str) -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                credit_notes.issue(invoice_id, {"to_due": amount, "reason": "other"}, STAFF)
                outcomes.append("issued")
            except CreditNoteInvalid:
                outcomes.append("refused")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=issue, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(outcomes) == ["issued"] * 8 + ["refused"] * 7
    numbers = sorted(db.session.scalars(select(CreditNote.sequence_number)))
    assert numbers == list(range(1, 9))
    assert set(db.session.scalars(select(CreditNote.number))) == {f"CN-{n:05d}" for n in range(1, 9)}
    assert next_number() == 9
    current = fresh(shared)
    assert (current.credit_noted, current.amount_due, current.status) == (9000, 1000, "open")

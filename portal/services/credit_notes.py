"""Credit notes: numbered documents that take money off a finalized invoice.

Rules kept here (the split's arithmetic is ``billing.credit_notes``):
- Only a finalized invoice that is not cancelled (open, overdue, paid, uncollectible) takes
  credit notes, and all of them together are at most its total.
- ``to_due`` lowers the amount due; ``to_balance`` goes to the client's credit balance (a
  ``credit_note`` ledger row); ``to_refund`` is refunded on one payment of the invoice, taken off
  what that payment put on it; ``to_outside`` is only recorded.
- The invoice's ``credit_noted`` grows by ``to_due + to_refund``: the refund lowered the amount
  paid by the same amount, so a paid invoice stays paid and owes nothing. An invoice whose amount
  due reaches zero becomes paid.
- Numbers come from their own gapless sequence (``Business.credit_note_number_format`` /
  ``credit_note_next_number``), taken with an atomic ``UPDATE … RETURNING`` as late as possible
  in the transaction (after the gateway refund), so concurrent issues queue briefly.
- One transaction: the credit note, the refund, the ledger row, the invoice, the events and the
  emails (with the credit note's PDF attached) commit together. Credit notes are append-only.
- Lock order: the payment (if any), then the invoice, as refunds and payments do.
"""
from __future__ import annotations

from sqlalchemy import func, select

from portal import clock
from portal.billing import states
from portal.billing.credit_notes import PARTS, Room, Split, check_split, parse_split
from portal.billing.money import MoneyError, to_minor
from portal.extensions import db
from portal.models import Client, CreditNote, Invoice, Payment, Refund
from portal.models.credits import CREDIT_NOTE_REASONS
from portal.services import (
    attachments,
    credits,
    formats,
    locks,
    numbering,
    payments,
    pdf,
)
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor, commit, queue_email, record_event, rollback
from portal.services.invoice_documents import snapshot_business, snapshot_client
from portal.services.settings import get_business

CREDITABLE = (states.OPEN, states.OVERDUE, states.PAID, states.UNCOLLECTIBLE)
MEMO_MAX = 2000
FIELDS = PARTS + ("payment_id", "reason", "memo")


class CreditNoteInvalid(ServiceError):
    """Bad input: ``errors`` maps a field (``to_due``, ``payment_id``, ``amount``…) to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("The credit note was not issued. Please correct the marked fields.")
        self.errors = errors


# Reading ----------------------------------------------------------------------------------------

def get_credit_note(credit_note_id: int, client_id: int | None = None) -> CreditNote:
    """A credit note; with ``client_id``, only that client's (anything else is not found)."""
    note = db.session.get(CreditNote, credit_note_id)
    if note is None or (client_id is not None and note.client_id != client_id):
        raise NotFound("No such credit note.")
    return note


def invoice_credit_notes(invoice_id: int) -> list[CreditNote]:
    return list(db.session.scalars(select(CreditNote).where(CreditNote.invoice_id == invoice_id)
                                   .order_by(CreditNote.sequence_number, CreditNote.id)))


def client_credit_notes(client_id: int) -> list[dict]:
    """A client's credit notes, newest first, each with the invoice it credits."""
    rows = db.session.execute(
        select(CreditNote, Invoice).join(Invoice, Invoice.id == CreditNote.invoice_id)
        .where(CreditNote.client_id == client_id)
        .order_by(CreditNote.issue_date.desc(), CreditNote.sequence_number.desc(), CreditNote.id.desc()))
    return [{"note": note, "invoice": invoice} for note, invoice in rows]


def _credited(invoice_id: int) -> tuple[int, int]:
    """Earlier credit notes on the invoice: (sum of amounts, sum of credit + outside parts)."""
    total, after_payment = db.session.execute(
        select(func.coalesce(func.sum(CreditNote.amount), 0),
               func.coalesce(func.sum(CreditNote.to_balance + CreditNote.to_outside), 0))
        .where(CreditNote.invoice_id == invoice_id)).one()
    return int(total or 0), int(after_payment or 0)


def _room(invoice: Invoice, refundable: int | None) -> Room:
    credited, after_payment = _credited(invoice.id)
    return Room(total=invoice.total, amount_due=invoice.amount_due,
                received=invoice.amount_paid + invoice.credit_applied, credited=credited,
                credited_after_payment=after_payment, refundable=refundable)


def refundable_payments(invoice_id: int) -> list[dict]:
    """The invoice's succeeded payments that can still give money back from it."""
    out = []
    for payment in payments.invoice_payments(invoice_id):
        if payment.status != "succeeded":
            continue
        room = payments.refundable(payment, invoice_id)["invoice"]
        if room > 0:
            out.append({"payment": payment, "refundable": room})
    return out


def invoice_panel(invoice: Invoice, typed: dict | None = None, errors: dict | None = None) -> dict | None:
    """What the staff invoice page shows about credit notes: the list and, while the invoice can
    take one, the "Issue a credit note" form (``typed``/``errors``: a refused attempt). None: nothing."""
    if invoice.status == states.DRAFT:
        return None
    notes = invoice_credit_notes(invoice.id)
    can_issue = invoice.status in CREDITABLE
    if not notes and not can_issue:
        return None
    room = _room(invoice, None)
    return {
        "notes": notes,
        "can_issue": can_issue and room.credited < room.total,
        "payments": refundable_payments(invoice.id) if can_issue else [],
        "reasons": list(CREDIT_NOTE_REASONS.items()),
        "typed": {name: "" for name in FIELDS} | {"reason": "other"} | dict(typed or {}),
        "errors": dict(errors or {}),
        "left": room.total - room.credited,
        "received_left": max(0, room.received - room.credited_after_payment),
        "currency": invoice.currency,
    }


# Issuing ----------------------------------------------------------------------------------------

def _refuse_uncreditable(invoice: Invoice) -> None:
    if invoice.status not in CREDITABLE:
        raise ServiceError(f"An invoice that is {invoice.status_label.lower()} takes no credit notes."
                           if invoice.status != states.DRAFT else
                           "A draft takes no credit notes: edit it instead.")


def _payment_of(invoice_id: int, payment_id_text: str) -> Payment | None:
    """The chosen payment, locked, if it belongs to the invoice; else None."""
    text = (payment_id_text or "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    if int(text) not in {p.id for p in payments.invoice_payments(invoice_id)}:
        return None
    payment = locks.payment(int(text))
    return payment if payment is not None and payment.status == "succeeded" else None


def issue(invoice_id: int, typed: dict[str, str], actor: Actor) -> CreditNote:
    """Issue a credit note from what staff typed (``to_due``, ``to_balance``, ``to_refund``,
    ``to_outside``, ``payment_id``, ``reason``, ``memo``). Refused input raises
    ``CreditNoteInvalid`` and nothing changes."""
    current = db.session.get(Invoice, invoice_id)
    if current is None:
        raise NotFound("No such invoice.")
    _refuse_uncreditable(current)
    split, errors = parse_split(typed, current.currency)
    reason = (typed.get("reason") or "").strip()
    if reason not in CREDIT_NOTE_REASONS:
        errors["reason"] = "Choose a reason."
    memo = (typed.get("memo") or "").strip()
    if len(memo) > MEMO_MAX:
        errors["memo"] = f"Keep the memo under {MEMO_MAX} characters."
    invoice = locks.invoice(invoice_id)  # the usual lock order: the invoice, then the payment
    payment = _payment_of(invoice_id, typed.get("payment_id", "")) if split.to_refund > 0 else None
    try:
        _refuse_uncreditable(invoice)
        refundable = payments.refundable(payment, invoice.id)["invoice"] if payment is not None else None
        errors.update({k: v for k, v in _check(invoice, split, refundable).items() if k not in errors})
        if errors:
            raise CreditNoteInvalid(errors)
        refund = None
        if split.to_refund:
            refund = payments.refund_money(payment, split.to_refund, memo or CREDIT_NOTE_REASONS[reason], actor,
                                           invoice_id=invoice.id, credit_first=False, notify=False)
        note = _write(invoice, split, reason, memo or None, refund, actor)
    except ServiceError:
        rollback()
        raise
    commit()
    return note


def refund_payment(invoice_id: int, payment_id: int, amount_text: str, reason_text: str, actor: Actor,
                   reason: str = "other") -> CreditNote | None:
    """The staff invoice page's "Refund" on a payment: a credit note whose refund part is the amount
    (memo: the reason typed), so the invoice stays settled and the refund has a numbered document.

    A payment that also left money on the credit balance (paid more than was due) gives that back
    first, as before; only the part taken off the invoice needs a credit note (None when there is
    none). Errors name the ``amount`` field."""
    if payment_id not in {p.id for p in payments.invoice_payments(invoice_id)}:
        raise NotFound("No such payment on this invoice.")
    if reason not in CREDIT_NOTE_REASONS:
        reason = "other"
    memo = (reason_text or "").strip()[:MEMO_MAX]
    locks.invoice(invoice_id)  # the usual lock order: the invoice, then the payment
    payment = payments.lock_succeeded_payment(payment_id)
    try:
        try:
            amount = to_minor(amount_text or "", payment.currency)
        except MoneyError:
            raise ServiceError("Use an amount like 25.00.", field="amount") from None
        if amount <= 0:
            raise ServiceError("Enter an amount above zero.", field="amount")
        room = payments.refundable(payment, invoice_id)
        if amount > room["total"]:
            raise ServiceError(f"At most {formats.money(room['total'], payment.currency)} of this payment can be "
                               "refunded.", field="amount")
        from_invoice = amount - min(amount, room["credit"])
        note = None
        if from_invoice:
            invoice = locks.invoice(invoice_id)
            _refuse_uncreditable(invoice)
            errors = _check(invoice, Split(to_refund=from_invoice), room["invoice"])
            if errors:
                raise ServiceError(next(iter(errors.values())), field="amount")
            refund = payments.refund_money(payment, amount, memo, actor, invoice_id=invoice_id, credit_first=True,
                                           notify=False)
            note = _write(invoice, Split(to_refund=refund.amount - refund.from_credit), reason, memo or None,
                          refund, actor)
        else:
            payments.refund_money(payment, amount, memo, actor, invoice_id=invoice_id, credit_first=True)
    except ServiceError:
        rollback()
        raise
    commit()
    return note


def _check(invoice: Invoice, split: Split, refundable: int | None) -> dict[str, str]:
    return check_split(split, _room(invoice, refundable), invoice.currency, get_business().locale)


def _write(invoice: Invoice, split: Split, reason: str, memo: str | None, refund: Refund | None,
           actor: Actor) -> CreditNote:
    """The credit note and its effects, in the caller's transaction (invoice locked, checks done,
    any refund already made)."""
    business = get_business()
    seq, number = numbering.take("credit_note")
    note = CreditNote(
        number=number, sequence_number=seq, invoice_id=invoice.id, client_id=invoice.client_id,
        currency=invoice.currency, amount=split.amount, to_due=split.to_due, to_balance=split.to_balance,
        to_refund=split.to_refund, to_outside=split.to_outside, reason=reason, memo=memo,
        refund_id=refund.id if refund is not None else None, issue_date=clock.today(business.timezone),
        created_by_staff_id=actor.id if actor.kind == "staff" else None, created_at=clock.now(),
    )
    db.session.add(note)
    db.session.flush()
    before = {"status": invoice.status, "amount_due": invoice.amount_due, "credit_noted": invoice.credit_noted}
    invoice.credit_noted += split.to_due + split.to_refund
    credits.refresh_due(invoice, actor)
    if split.to_balance:
        credits.add_entry(invoice.client_id, invoice.currency, split.to_balance, "credit_note", actor,
                          f"Credit note {number} on invoice {invoice.number}", invoice_id=invoice.id,
                          credit_note_id=note.id)
    event = record_event(
        "credit_note.issued", "invoice", invoice.id, actor, before=before,
        after={"status": invoice.status, "amount_due": invoice.amount_due, "credit_noted": invoice.credit_noted},
        data={"credit_note_id": note.id, "number": number, "amount": note.amount, "to_due": note.to_due,
              "to_balance": note.to_balance, "to_refund": note.to_refund, "to_outside": note.to_outside,
              "reason": reason, "refund_id": note.refund_id,
              "payment_id": refund.payment_id if refund is not None else None})
    if split.to_due:
        credits.after_payment(invoice.client_id, actor)  # less is owed: a restriction may lift
    _email(note, invoice, event)
    return note


def _email(note: CreditNote, invoice: Invoice, event) -> None:
    business = get_business()
    client = db.session.get(Client, invoice.client_id)
    money = lambda minor: formats.money(minor, note.currency)  # noqa: E731
    parts = [(note.to_due, "lowers the amount due on the invoice"),
             (note.to_balance, "is added to your credit balance for future invoices"),
             (note.to_refund, "is refunded to the payment method you paid with"),
             (note.to_outside, "was settled with you directly")]
    lines = "\n".join(f"- {money(amount)} {what}" for amount, what in parts if amount)
    subject = f"Credit note {note.number} for invoice {invoice.number}"
    text = (f"We issued credit note {note.number} for {money(note.amount)} on invoice {invoice.number}.\n\n"
            f"{lines}\n\nReason: {note.reason_label}"
            + (f"\n\n{note.memo}" if note.memo else "")
            + f"\n\nThe invoice now has {money(invoice.amount_due)} due. The credit note is attached as a PDF.")
    for contact in [c for c in client.contacts if c.receives_invoices]:
        queue_email(contact.email, "templated",
                    {"business": business, "subject": subject, "body": f"Hello {contact.name},\n\n{text}",
                     "link": None, "label": None},
                    event=event, subject_type="invoice", subject_id=invoice.id,
                    attachments=[{"type": "credit_note_pdf", "credit_note_id": note.id}])


# The PDF ---------------------------------------------------------------------------------------

def filename(note: CreditNote) -> str:
    return f"{note.number}.pdf"


def document(note: CreditNote) -> dict:
    """What the credit note's PDF shows: the invoice's frozen parties, the split and the totals."""

    business = get_business()
    invoice = db.session.get(Invoice, note.invoice_id)
    earlier = int(db.session.scalar(
        select(func.coalesce(func.sum(CreditNote.amount), 0))
        .where(CreditNote.invoice_id == note.invoice_id, CreditNote.sequence_number < note.sequence_number)) or 0)
    refund = db.session.get(Refund, note.refund_id) if note.refund_id else None
    payment = db.session.get(Payment, refund.payment_id) if refund is not None else None
    return {
        "note": note,
        "invoice": invoice,
        "seller": invoice.bill_from or snapshot_business(business),
        "buyer": invoice.bill_to or snapshot_client(invoice.client),
        "currency": note.currency,
        "locale": business.locale,
        "brand_color": business.brand_color,
        "has_logo": business.has_logo,
        "refund_payment": payment,
        "credited_before": earlier,
        "credited_after": earlier + note.amount,
    }


def render_html(note: CreditNote) -> str:
    return pdf.html("pdf/credit_note.html", document(note))


def render_pdf(note: CreditNote) -> bytes:
    return pdf.render("pdf/credit_note.html", document(note))


@attachments.renderer("credit_note_pdf")
def attachment(spec: dict) -> tuple[str, str, bytes]:
    """``{"type": "credit_note_pdf", "credit_note_id": 3}`` → the credit note's PDF."""
    note = get_credit_note(spec["credit_note_id"])
    return filename(note), "application/pdf", render_pdf(note)

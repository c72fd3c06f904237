"""The credit ledger and credit notes.

A client's credit balance (per currency) is the sum of its ``credit_entry``
rows, never a number kept on its own. Rows are append-only: a mistake is
corrected by a new row, never by editing one.

Signs: a positive amount adds to the balance (custom credit, overpayment,
credit note to balance); a negative amount takes from it (credit applied to an
invoice, a one-time charge, credit refunded).
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, String, Text, event
from sqlalchemy.orm import Mapped, Session, mapped_column

from portal import clock
from portal.extensions import db
from portal.models.types import Money, UTCDateTime

CREDIT_KINDS = {
    "credit": "Credit",                  # + staff gave credit
    "overpayment": "Overpayment",        # + a payment above what was due
    "credit_note": "Credit note",        # + a credit note's credit-balance part
    "applied": "Applied to invoice",     # − credit used on an invoice
    "charge": "One-time charge",         # − staff charged the balance
    "refund": "Refunded",                # − credit given back as money
}

CREDIT_NOTE_REASONS = {
    "duplicate": "Duplicate",
    "fraudulent": "Fraudulent",
    "order_change": "Order change",
    "product_unsatisfactory": "Service unsatisfactory",
    "other": "Other",
}


class CreditEntry(db.Model):
    __tablename__ = "credit_entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="RESTRICT"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(Money)  # signed minor units
    kind: Mapped[str] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id", ondelete="RESTRICT"))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payment.id", ondelete="RESTRICT"))
    credit_note_id: Mapped[int | None] = mapped_column(ForeignKey("credit_note.id", ondelete="RESTRICT"))
    recorded_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    __table_args__ = (
        Index("ix_credit_entry_client", "client_id", "currency", "id"),
        Index("ix_credit_entry_invoice", "invoice_id"),
        Index("ix_credit_entry_payment", "payment_id"),
    )

    @property
    def kind_label(self) -> str:
        return CREDIT_KINDS.get(self.kind, self.kind)


class CreditNote(db.Model):
    """A numbered document that takes money off a finalized invoice.

    ``amount = to_due + to_balance + to_refund + to_outside``: the part that lowered the invoice's
    amount due, the part put on the client's credit balance, the part refunded through the payment,
    and the part settled outside the portal (recorded only)."""

    __tablename__ = "credit_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(64), unique=True)
    sequence_number: Mapped[int] = mapped_column()
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id", ondelete="RESTRICT"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="RESTRICT"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(Money)
    to_due: Mapped[int] = mapped_column(Money, default=0)
    to_balance: Mapped[int] = mapped_column(Money, default=0)
    to_refund: Mapped[int] = mapped_column(Money, default=0)
    to_outside: Mapped[int] = mapped_column(Money, default=0)
    reason: Mapped[str] = mapped_column(String(30), default="other")
    memo: Mapped[str | None] = mapped_column(Text)
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refund.id", ondelete="RESTRICT"))
    issue_date: Mapped[date] = mapped_column(Date)
    created_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    @property
    def reason_label(self) -> str:
        return CREDIT_NOTE_REASONS.get(self.reason, self.reason)


class LedgerAppendOnlyError(RuntimeError):
    pass


@event.listens_for(Session, "before_flush")
def _refuse_changes_to_ledger(session: Session, flush_context, instances) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, (CreditEntry, CreditNote)) and (obj in session.deleted or session.is_modified(obj)):
            raise LedgerAppendOnlyError(f"{type(obj).__name__} rows are append-only")

"""Invoices, their lines and guest tokens.

Once an invoice leaves ``draft`` its money is frozen: the flush guard at the
bottom refuses any change to a finalized invoice's amounts or lines, whoever
makes it (a service, a script, the ORM directly).
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Numeric, String, Text, event, inspect
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from portal import clock
from portal.billing import states
from portal.extensions import db
from portal.models.types import Money, UTCDateTime


class Invoice(db.Model):
    __tablename__ = "invoice"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(16), default=states.DRAFT)
    number: Mapped[str | None] = mapped_column(String(64), unique=True)
    sequence_number: Mapped[int | None] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    issue_date: Mapped[date | None] = mapped_column(Date)
    due_date: Mapped[date | None] = mapped_column(Date)
    payment_terms_days: Mapped[int | None] = mapped_column()
    memo: Mapped[str | None] = mapped_column(Text)
    footer: Mapped[str | None] = mapped_column(Text)
    discount_kind: Mapped[str | None] = mapped_column(String(10))  # percent, fixed
    discount_percent: Mapped[Decimal | None] = mapped_column(Numeric(7, 4))
    discount_fixed: Mapped[int | None] = mapped_column(Money)

    subtotal: Mapped[int] = mapped_column(Money, default=0)
    discount_total: Mapped[int] = mapped_column(Money, default=0)
    tax_total: Mapped[int] = mapped_column(Money, default=0)
    included_tax_total: Mapped[int] = mapped_column(Money, default=0)
    total: Mapped[int] = mapped_column(Money, default=0)
    amount_paid: Mapped[int] = mapped_column(Money, default=0)
    credit_applied: Mapped[int] = mapped_column(Money, default=0)
    # Credit notes' part that lowered what is owed (lowered the amount due, or was refunded).
    credit_noted: Mapped[int] = mapped_column(Money, default=0, server_default="0")
    amount_due: Mapped[int] = mapped_column(Money, default=0)
    tax_breakdown: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)

    # Frozen at finalize: who billed whom, as it was then.
    bill_to: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    bill_from: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    replaces_invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id", ondelete="SET NULL"))
    # Set on the original when its replacement is finalized (the original is voided then): both link.
    replaced_by_invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id", ondelete="SET NULL"))
    void_reason: Mapped[str | None] = mapped_column(Text)
    created_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, onupdate=clock.now)
    finalized_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Autopay: the day the client's default saved method is charged (set at finalize), and the attempt.
    autopay_on: Mapped[date | None] = mapped_column(Date)
    autopay_attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Recurring billing: the subscription whose cycle made this invoice (R1).
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscription.id", ondelete="SET NULL"),
                                                        index=True)

    client = relationship("Client")
    lines: Mapped[list["InvoiceLine"]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.position", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_invoice_status_due", "status", "due_date"),
        Index("ix_invoice_client_status", "client_id", "status"),
        Index("ix_invoice_issue_date", "issue_date"),
        Index("ix_invoice_created", "created_at"),
        # The list's per-status totals read only this index (index-only scan on PostgreSQL).
        Index("ix_invoice_status_totals", "status", "currency", "amount_due"),
        Index("ix_invoice_total", "total"),
        Index("ix_invoice_amount_due", "amount_due"),
        Index("ix_invoice_autopay", "autopay_on"),
        # Recurring billing: cycle invoices whose automatic charge was tried lately (past-due check).
        Index("ix_invoice_autopay_attempted", "autopay_attempted_at"),
    )

    @property
    def status_label(self) -> str:
        return states.LABELS[self.status]

    @property
    def is_draft(self) -> bool:
        return self.status == states.DRAFT

    @property
    def display_number(self) -> str:
        return self.number or f"Draft #{self.id}"


class InvoiceLine(db.Model):
    __tablename__ = "invoice_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id", ondelete="SET NULL"))
    charge_id: Mapped[int | None] = mapped_column(ForeignKey("charge.id", ondelete="SET NULL"))
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal] = mapped_column(Numeric(12, 3))
    unit_price: Mapped[int] = mapped_column(Money)
    discount_kind: Mapped[str | None] = mapped_column(String(10))
    discount_percent: Mapped[Decimal | None] = mapped_column(Numeric(7, 4))
    discount_fixed: Mapped[int | None] = mapped_column(Money)
    # The tax as it applied: copied from the rate, so later edits to the rate change nothing here.
    tax_rate_id: Mapped[int | None] = mapped_column(ForeignKey("tax_rate.id", ondelete="SET NULL"))
    tax_name: Mapped[str | None] = mapped_column(String(100))
    tax_percent: Mapped[Decimal | None] = mapped_column(Numeric(7, 4))
    tax_inclusive: Mapped[bool] = mapped_column(Boolean, default=False)
    # Computed by billing.invoice_math, stored for lists and exports.
    gross: Mapped[int] = mapped_column(Money, default=0)
    discount_amount: Mapped[int] = mapped_column(Money, default=0)
    net: Mapped[int] = mapped_column(Money, default=0)
    tax_amount: Mapped[int] = mapped_column(Money, default=0)
    total: Mapped[int] = mapped_column(Money, default=0)
    # A recurring line's service period (inclusive days), shown as "1 Jul – 31 Jul 2027".
    period_start: Mapped[date | None] = mapped_column(Date)
    period_end: Mapped[date | None] = mapped_column(Date)

    invoice: Mapped[Invoice] = relationship(back_populates="lines")

    @property
    def period_label(self) -> str | None:
        if self.period_start is None or self.period_end is None:
            return None
        from portal.billing.cycles import Period
        return Period(0, self.period_start, self.period_end + timedelta(days=1)).label()


class InvoiceToken(db.Model):
    """A guest link to one invoice. Only the SHA-256 of the token is kept."""

    __tablename__ = "invoice_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_viewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


MONEY_FIELDS = (
    "client_id", "number", "sequence_number", "currency", "issue_date", "discount_kind", "discount_percent",
    "discount_fixed", "subtotal", "discount_total", "tax_total", "included_tax_total", "total", "tax_breakdown",
    "bill_to", "bill_from",
)


class FrozenInvoiceError(RuntimeError):
    pass


def _was_finalized(invoice: Invoice) -> bool:
    history = inspect(invoice).attrs.status.history
    original = history.deleted[0] if history.deleted else invoice.status
    return original != states.DRAFT


@event.listens_for(Session, "before_flush")
def _refuse_changes_to_finalized_money(session: Session, flush_context, instances) -> None:
    for obj in session.dirty:
        if isinstance(obj, Invoice) and session.is_modified(obj) and _was_finalized(obj):
            state = inspect(obj)
            changed = [f for f in MONEY_FIELDS if state.attrs[f].history.has_changes()]
            if changed:
                raise FrozenInvoiceError(f"invoice {obj.number} is finalized; cannot change {', '.join(changed)}")
        elif isinstance(obj, InvoiceLine) and session.is_modified(obj) and _line_frozen(obj):
            raise FrozenInvoiceError("lines of a finalized invoice cannot change")
    for obj in list(session.new) + list(session.deleted):
        if isinstance(obj, InvoiceLine) and _line_frozen(obj):
            raise FrozenInvoiceError("lines of a finalized invoice cannot be added or removed")
        if isinstance(obj, Invoice) and obj in session.deleted and _was_finalized(obj):
            raise FrozenInvoiceError("a finalized invoice cannot be deleted; void it")


def _line_frozen(line: InvoiceLine) -> bool:
    invoice = line.invoice
    if invoice is None and line.invoice_id is not None:
        invoice = db.session.get(Invoice, line.invoice_id)
    if invoice is None:
        return False
    if invoice in db.session.deleted and not _was_finalized(invoice):
        return False
    return _was_finalized(invoice)

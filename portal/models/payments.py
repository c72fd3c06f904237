"""Money received: one row per payment (manual now; gateway payments later)."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, SmallInteger, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from portal import clock
from portal.extensions import db
from portal.models.types import Money, UTCDateTime

MANUAL_METHODS = {"wire": "Bank transfer", "check": "Check", "cash": "Cash", "other": "Other"}


class Payment(db.Model):
    """One payment attempt or receipt. Gateway payments start ``pending`` (an intent exists),
    may be ``processing`` (bank debits), and end ``succeeded``, ``failed`` or ``canceled``;
    only ``succeeded`` money counts on the invoice."""

    __tablename__ = "payment"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id", ondelete="RESTRICT"))
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="RESTRICT"))
    amount: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12), default="succeeded")  # succeeded, processing, failed
    reference: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    received_on: Mapped[date | None] = mapped_column(Date)
    gateway: Mapped[str | None] = mapped_column(String(20))  # stripe, sandbox; None for manual
    gateway_intent_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(100))
    failure_code: Mapped[str | None] = mapped_column(String(50))
    failure_message: Mapped[str | None] = mapped_column(Text)
    refunded_amount: Mapped[int] = mapped_column(Money, default=0, server_default="0")
    # The part of ``amount`` that went to the client's credit balance (paid more than was due).
    credited_amount: Mapped[int] = mapped_column(Money, default=0, server_default="0")
    # "Pay all": no single invoice; the invoices it was taken for, oldest first.
    invoice_ids: Mapped[list[int] | None] = mapped_column(JSON)
    # A saved method charged (autopay, "attempt card", pay with a saved method).
    payment_method_id: Mapped[int | None] = mapped_column(ForeignKey("payment_method.id", ondelete="SET NULL"))
    off_session: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Money that arrived for invoices already settled (a late or second success): ``refund_due``
    # (the refund job gives it back), ``refunded``, ``credited`` (kept as credit, by setting or
    # because the balance was spent meanwhile), ``refund_failed`` (staff were told).
    excess_state: Mapped[str | None] = mapped_column(String(16))
    recorded_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    __table_args__ = (
        Index("ix_payment_invoice", "invoice_id"),
        Index("ix_payment_client", "client_id", "created_at"),
        Index("ix_payment_status", "status", "created_at"),
        Index("ix_payment_excess_state", "excess_state"),
    )

    @property
    def method_label(self) -> str:
        return MANUAL_METHODS.get(self.method, self.method.replace("_", " ").title())


class PaymentAllocation(db.Model):
    """How much of a succeeded payment went to which invoice (one row per invoice paid)."""

    __tablename__ = "payment_allocation"

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payment.id", ondelete="RESTRICT"), index=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id", ondelete="RESTRICT"), index=True)
    amount: Mapped[int] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class PaymentMethod(db.Model):
    """A card or bank account saved for a client through the gateway (a SetupIntent).

    Removed methods are kept (``removed_at``) so old payments still name them."""

    __tablename__ = "payment_method"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="RESTRICT"))
    gateway: Mapped[str] = mapped_column(String(20))
    gateway_method_id: Mapped[str] = mapped_column(String(100))
    gateway_setup_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    type: Mapped[str] = mapped_column(String(20))  # card, us_bank_account, sepa_debit
    brand: Mapped[str | None] = mapped_column(String(30))
    last4: Mapped[str | None] = mapped_column(String(4))
    exp_month: Mapped[int | None] = mapped_column(SmallInteger)
    exp_year: Mapped[int | None] = mapped_column(SmallInteger)
    bank_name: Mapped[str | None] = mapped_column(String(100))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    added_by_contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The payment_method_expiring email went out (once per card).
    expiry_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_payment_method_client", "client_id", "removed_at"),
        Index("ix_payment_method_expiry", "exp_year", "exp_month"),
    )


class Refund(db.Model):
    """Money given back on a payment: through the gateway, or recorded by staff."""

    __tablename__ = "refund"

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payment.id", ondelete="RESTRICT"), index=True)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id", ondelete="RESTRICT"))
    amount: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(12), default="succeeded")  # pending, succeeded, failed
    gateway_refund_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    # The part taken back from the client's credit balance (an overpayment given back); the rest
    # came off ``invoice_id``'s amount paid.
    from_credit: Mapped[int] = mapped_column(Money, default=0, server_default="0")
    reason: Mapped[str | None] = mapped_column(Text)
    recorded_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class WebhookEvent(db.Model):
    """An inbound gateway event, kept once per event id (duplicates are dropped)."""

    __tablename__ = "webhook_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    gateway: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

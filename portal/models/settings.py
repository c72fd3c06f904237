"""The business this deployment bills for: one row."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, LargeBinary, String, Text, false, true
from sqlalchemy.orm import Mapped, mapped_column

from portal import clock
from portal.extensions import db
from portal.models.types import UTCDateTime


class Business(db.Model):
    __tablename__ = "business"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    legal_name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(50))
    website: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(Text)
    tax_id: Mapped[str | None] = mapped_column(String(50))
    brand_color: Mapped[str] = mapped_column(String(7), default="#3355cc")
    logo: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    logo_content_type: Mapped[str | None] = mapped_column(String(50))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    locale: Mapped[str] = mapped_column(String(16), default="en_US")
    invoice_number_format: Mapped[str] = mapped_column(String(64), default="INV-{year}-{seq:05d}")
    payment_terms_days: Mapped[int] = mapped_column(default=30)
    invoice_next_number: Mapped[int] = mapped_column(default=1, server_default="1")
    invoice_memo: Mapped[str | None] = mapped_column(Text)
    invoice_footer: Mapped[str | None] = mapped_column(Text)
    # Notification toggles.
    notify_invoice_ready: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    notify_payment_receipt: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    notify_staff_on_payment: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # A payment that still succeeds for an invoice already settled (a page left open, two payers):
    # refund it automatically (on) or keep it as the client's credit (off).
    refund_late_payments: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Online payment methods offered on the payment page (where the currency allows them).
    accept_card: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    accept_sepa_debit: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    accept_us_bank_account: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Credit notes: their own gapless numbering.
    credit_note_number_format: Mapped[str] = mapped_column(String(64), default="CN-{year}-{seq:05d}",
                                                           server_default="CN-{year}-{seq:05d}")
    credit_note_next_number: Mapped[int] = mapped_column(default=1, server_default="1")
    # Client portal (F4): autopay, credit, restriction, expiring cards.
    clients_manage_autopay: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    autopay_timing: Mapped[str] = mapped_column(String(20), default="on_issue", server_default="on_issue")
    autopay_days_before: Mapped[int] = mapped_column(default=3, server_default="3")
    auto_apply_credit: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    restrict_overdue_days: Mapped[int | None] = mapped_column()  # None: never restrict
    restrict_actions: Mapped[list[str] | None] = mapped_column(JSON)
    card_expiry_notice_days: Mapped[int] = mapped_column(default=30, server_default="30")
    # Recurring billing (R1): leave cycle invoices as drafts for review instead of sending them;
    # the upcoming-invoice notice N days before each cycle's invoice (None: off); whether clients may
    # cancel their subscriptions (at period end) in the portal.
    review_recurring_invoices: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    upcoming_notice_days: Mapped[int | None] = mapped_column(default=7, server_default="7")
    clients_cancel_subscriptions: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, onupdate=clock.now)

    @property
    def has_logo(self) -> bool:
        return bool(self.logo_content_type)


class EmailTemplate(db.Model):
    """A staff-edited email (subject + body), rendered in a Jinja sandbox.

    No row for a key means the built-in default is used.
    """

    __tablename__ = "email_template"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, onupdate=clock.now)

"""Money received: one row per payment (manual now; gateway payments later)."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal import clock
from portal.extensions import db
from portal.models.types import UTCDateTime

MANUAL_METHODS = {"wire": "Bank transfer", "check": "Check", "cash": "Cash", "other": "Other"}


class Payment(db.Model):
    __tablename__ = "payment"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id", ondelete="RESTRICT"))
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="RESTRICT"))
    amount: Mapped[int] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12), default="succeeded")  # succeeded, processing, failed
    reference: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    received_on: Mapped[date] = mapped_column(Date)
    recorded_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    __table_args__ = (
        Index("ix_payment_invoice", "invoice_id"),
        Index("ix_payment_client", "client_id", "created_at"),
    )

    @property
    def method_label(self) -> str:
        return MANUAL_METHODS.get(self.method, self.method.replace("_", " ").title())

"""What the business sells and charges: tax rates, services, open charges."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, ForeignKey, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal import clock
from portal.extensions import db
from portal.models.types import Money, UTCDateTime


class TaxRate(db.Model):
    __tablename__ = "tax_rate"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    percent: Mapped[Decimal] = mapped_column(Numeric(7, 4))
    inclusive: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    @property
    def label(self) -> str:
        pct = format(self.percent.normalize(), "f")
        return f"{self.name} {pct}%" + (" incl." if self.inclusive else "")


class Service(db.Model):
    """A catalogue item: a line can be made from it."""

    __tablename__ = "service"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    unit_price: Mapped[int] = mapped_column(Money)  # minor units
    currency: Mapped[str] = mapped_column(String(3))
    tax_rate_id: Mapped[int | None] = mapped_column(ForeignKey("tax_rate.id", ondelete="SET NULL"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    tax_rate: Mapped[TaxRate | None] = relationship()


class Charge(db.Model):
    """A one-off unbilled charge on a client: open until an invoice takes it."""

    __tablename__ = "charge"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"))
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id", ondelete="SET NULL"))
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal] = mapped_column(Numeric(12, 3))
    unit_price: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    tax_rate_id: Mapped[int | None] = mapped_column(ForeignKey("tax_rate.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(10), default="open")  # open, drafted, billed
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    tax_rate: Mapped[TaxRate | None] = relationship()

    __table_args__ = (
        Index("ix_charge_client_status", "client_id", "status"),
        Index("ix_charge_invoice", "invoice_id"),
    )

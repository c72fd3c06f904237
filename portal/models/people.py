"""Who uses the portal: staff users, clients and their contacts, and the
single-use tokens that sign them in or let them set a password."""
from __future__ import annotations

import secrets
from datetime import date, datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, Date, ForeignKey, Index, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal import clock
from portal.extensions import db
from portal.models.types import UTCDateTime

STAFF_ROLES = ("owner", "staff")


def new_nonce() -> str:
    return secrets.token_hex(16)


class StaffUser(UserMixin, db.Model):
    __tablename__ = "staff_user"
    kind = "staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default="staff")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Rotated on password change: every other session of this user ends.
    session_nonce: Mapped[str] = mapped_column(String(32), default=new_nonce)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def get_id(self) -> str:
        return f"staff:{self.id}:{self.session_nonce}"

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    @property
    def display_name(self) -> str:
        return self.name or self.email


class Client(db.Model):
    """A company or person being billed."""

    __tablename__ = "client"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default="company")
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(50))
    address: Mapped[str | None] = mapped_column(Text)
    tax_id: Mapped[str | None] = mapped_column(String(50))
    currency: Mapped[str | None] = mapped_column(String(3))
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, onupdate=clock.now)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The gateway's customer (Stripe Customer) that saved payment methods belong to.
    gateway_customer_id: Mapped[str | None] = mapped_column(String(100))
    # Autopay: charge the default saved method. Timing: None = the business default.
    autopay: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    autopay_timing: Mapped[str | None] = mapped_column(String(20))  # on_issue, on_due_date, days_before_due
    autopay_days_before: Mapped[int | None] = mapped_column()
    # Apply credit balance automatically when an invoice is finalized. None = the business default.
    auto_apply_credit: Mapped[bool | None] = mapped_column(Boolean)
    # Far behind on payments (settings: restrict_overdue_days). Read by other systems.
    access_restricted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    restricted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Billing cycle (seed 002): "none" or "monthly" (open charges gather into one invoice on
    # ``billing_day``, 1–31, clamped to the month); ``next_cycle_on`` is the next such day.
    billing_cycle: Mapped[str] = mapped_column(String(10), default="none", server_default="none")
    billing_day: Mapped[int | None] = mapped_column()
    next_cycle_on: Mapped[date | None] = mapped_column(Date, index=True)
    # Extra charges (seed 003): "manual" (staff draft invoices), "immediate" (each charge is invoiced
    # at once) or "next_cycle" (charges wait for the next cycle's invoice).
    charges_billing: Mapped[str] = mapped_column(String(12), default="manual", server_default="manual")

    contacts: Mapped[list["Contact"]] = relationship(
        back_populates="client", order_by="Contact.id", cascade="all, delete-orphan"
    )

    @property
    def billing_contacts(self) -> list["Contact"]:
        return [c for c in self.contacts if c.receives_invoices]


class Contact(UserMixin, db.Model):
    """A person at a client. May have a client-portal login."""

    __tablename__ = "contact"
    kind = "contact"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), index=True)
    phone: Mapped[str | None] = mapped_column(String(50))
    receives_invoices: Mapped[bool] = mapped_column(Boolean, default=True)
    portal_access: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    session_nonce: Mapped[str] = mapped_column(String(32), default=new_nonce)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    client: Mapped[Client] = relationship(back_populates="contacts")

    def get_id(self) -> str:
        return f"contact:{self.id}:{self.session_nonce}"

    @property
    def is_active(self) -> bool:
        return self.portal_access

    @property
    def display_name(self) -> str:
        return self.name or self.email


TOKEN_PURPOSES = ("password_reset", "portal_invite", "portal_link")


class AuthToken(db.Model):
    """A single-use, expiring secret sent by email. Only its SHA-256 is stored."""

    __tablename__ = "auth_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    principal_kind: Mapped[str] = mapped_column(String(10))
    principal_id: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))

    __table_args__ = (Index("ix_auth_token_principal", "principal_kind", "principal_id"),)

    def usable(self, at: datetime) -> bool:
        return self.used_at is None and self.revoked_at is None and at < self.expires_at

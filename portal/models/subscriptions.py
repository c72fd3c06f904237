"""Recurring billing: plans, subscriptions and their items, the billed periods, pending proration
charges, and billing runs.

Exactly once lives here: ``subscription_period`` has one row per (subscription, period start),
written in the same transaction as the period's invoice, so two runs, a retried job or a crash
never make a second invoice for a period.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Numeric, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal import clock
from portal.extensions import db
from portal.models.types import Money, UTCDateTime

SUBSCRIPTION_STATUSES = ("trialing", "active", "past_due", "paused", "cancelled", "ended")
# Statuses whose next period may be billed by a run (past_due only once its held invoice is settled).
BILLABLE = ("trialing", "active", "past_due")


class Plan(db.Model):
    """A service priced per cycle (day, week, month or year × interval)."""

    __tablename__ = "plan"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id", ondelete="SET NULL"))
    unit_price: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    unit: Mapped[str] = mapped_column(String(8))  # day, week, month, year
    interval: Mapped[int] = mapped_column(default=1)
    tax_rate_id: Mapped[int | None] = mapped_column(ForeignKey("tax_rate.id", ondelete="SET NULL"))
    setup_fee: Mapped[int | None] = mapped_column(Money)
    trial_days: Mapped[int] = mapped_column(default=0, server_default="0")
    self_serve: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The public checkout link's key (/subscribe/<key>): not a secret, only unguessable.
    checkout_key: Mapped[str] = mapped_column(String(32), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, onupdate=clock.now)

    tax_rate = relationship("TaxRate")
    service = relationship("Service")


class Subscription(db.Model):
    __tablename__ = "subscription"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    currency: Mapped[str] = mapped_column(String(3))
    unit: Mapped[str] = mapped_column(String(8))
    interval: Mapped[int] = mapped_column(default=1)
    # Service periods count from ``anchor``; invoices are dated from ``invoice_anchor`` (None until the
    # first invoice is made by hand, when staff chose to make it themselves).
    anchor: Mapped[date] = mapped_column(Date)
    invoice_anchor: Mapped[date | None] = mapped_column(Date)
    started_on: Mapped[date] = mapped_column(Date)
    trial_end: Mapped[date | None] = mapped_column(Date)  # exclusive: billing starts on this day
    # The next period to bill and the day its invoice is due to be made (None: nothing scheduled).
    next_period: Mapped[int] = mapped_column(default=0, server_default="0")
    next_invoice_on: Mapped[date | None] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)  # no period starting on or after it is billed
    max_cycles: Mapped[int | None] = mapped_column()
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Autopay: None follows the client (org → client → subscription); timing None follows the client.
    autopay: Mapped[bool | None] = mapped_column(Boolean)
    autopay_timing: Mapped[str | None] = mapped_column(String(20))
    autopay_days_before: Mapped[int | None] = mapped_column()
    # A cycle invoice whose automatic charge failed holds billing until it is paid or staff resolve it
    # (no foreign key: invoice already points here, and the two tables would depend on each other).
    held_invoice_id: Mapped[int | None] = mapped_column()
    # A change staff or the client chose "at the next renewal": [{"plan_id": .., "quantity": ".."}].
    pending_items: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # The last period whose upcoming-invoice notice was queued (one per period).
    noticed_period: Mapped[int] = mapped_column(default=-1, server_default="-1")
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    self_checkout: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, onupdate=clock.now)

    client = relationship("Client")
    items: Mapped[list["SubscriptionItem"]] = relationship(
        back_populates="subscription", order_by="SubscriptionItem.position", cascade="all, delete-orphan")

    __table_args__ = (
        # The billing run's query: billable subscriptions whose invoice day has come.
        Index("ix_subscription_due", "next_invoice_on", "status"),
        Index("ix_subscription_client", "client_id", "status"),
        # The tick's end-of-term step.
        Index("ix_subscription_ends", "ends_on", "status"),
        # The run's other query: held (past due, incomplete) subscriptions whose invoice is settled.
        Index("ix_subscription_status", "status"),
    )


class SubscriptionItem(db.Model):
    """A plan × quantity on a subscription; the price is the plan's when it was added."""

    __tablename__ = "subscription_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscription.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plan.id", ondelete="RESTRICT"))
    position: Mapped[int] = mapped_column(default=0)
    description: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[Decimal] = mapped_column(Numeric(12, 3))
    unit_price: Mapped[int] = mapped_column(Money)
    tax_rate_id: Mapped[int | None] = mapped_column(ForeignKey("tax_rate.id", ondelete="SET NULL"))

    subscription: Mapped[Subscription] = relationship(back_populates="items")
    plan = relationship("Plan")
    tax_rate = relationship("TaxRate")


class SubscriptionPeriod(db.Model):
    """One billed service period: the exactly-once record (unique per subscription and start)."""

    __tablename__ = "subscription_period"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscription.id", ondelete="CASCADE"))
    period_index: Mapped[int] = mapped_column()
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)  # exclusive
    invoice_on: Mapped[date] = mapped_column(Date)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id", ondelete="SET NULL"), index=True)
    billing_run_id: Mapped[int | None] = mapped_column(ForeignKey("billing_run.id", ondelete="SET NULL"))
    caught_up: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    __table_args__ = (
        UniqueConstraint("subscription_id", "period_start", name="uq_subscription_period_start"),
        UniqueConstraint("subscription_id", "period_index", name="uq_subscription_period_index"),
    )


class SubscriptionCharge(db.Model):
    """A proration charge waiting for the subscription's next invoice (then ``invoice_id`` is set)."""

    __tablename__ = "subscription_charge"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscription.id", ondelete="CASCADE"))
    description: Mapped[str] = mapped_column(String(500))
    amount: Mapped[int] = mapped_column(Money)
    tax_rate_id: Mapped[int | None] = mapped_column(ForeignKey("tax_rate.id", ondelete="SET NULL"))
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    tax_rate = relationship("TaxRate")

    __table_args__ = (Index("ix_subscription_charge_open", "subscription_id", "invoice_id"),)


class BillingRun(db.Model):
    """One billing run: when, how many subscriptions it took, invoices made, errors, duration."""

    __tablename__ = "billing_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    trigger: Mapped[str] = mapped_column(String(10))  # tick, cli, staff
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(12), default="running")  # running, done, interrupted
    total: Mapped[int] = mapped_column(default=0)        # subscriptions handed over
    processed: Mapped[int] = mapped_column(default=0)    # subscriptions done (billed, skipped or failed)
    invoices: Mapped[int] = mapped_column(default=0)
    caught_up: Mapped[int] = mapped_column(default=0)    # invoices for periods older than the latest one
    errors: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_billing_run_status", "status", "started_at"),)

    @property
    def duration(self) -> float | None:
        end = self.finished_at or self.heartbeat_at
        return (end - self.started_at).total_seconds() if end else None


class ClientCycle(db.Model):
    """One gathering of a client's open charges on its billing day (seed 002's monthly cycle): unique
    per client and day, written with the invoice it made."""

    __tablename__ = "client_cycle"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"))
    cycle_on: Mapped[date] = mapped_column(Date)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    __table_args__ = (UniqueConstraint("client_id", "cycle_on", name="uq_client_cycle_day"),)

"""When and what a subscription bills: the one place both the billing run and the pages ask.

Rules (``billing.cycles`` does the date math):
- Service periods are numbered from the subscription's ``anchor`` (its start, or the end of its
  trial). Period ``n``'s invoice is made on ``invoice_anchor`` + n cycles; the invoice anchor is the
  anchor itself unless the first invoice was made by hand on a later day (seed 004: service from
  Jun 1, first invoice Jun 3 → Jul 1's period is invoiced Jul 3).
- A period is billed when its invoice day has come in the business's timezone, if it starts before
  ``ends_on`` and is within ``max_cycles``; each period once (``subscription_period``).
- Period ``n``'s invoice holds each item's plan × quantity (with the item's tax rate) for that
  period, the plan's setup fee on period 0, the proration charges waiting on the subscription, and
  (for a client whose extra charges go on the next cycle) the client's open charges in the
  subscription's currency. ``lines_for`` builds them; the schedule preview prices them with
  ``billing.invoice_math`` exactly as the invoice will be.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import select

from portal.billing import cycles
from portal.billing.invoice_math import Line, compute
from portal.billing.invoice_math import TaxRate as TaxRule
from portal.extensions import db
from portal.models import Charge, Plan, Subscription, SubscriptionCharge, TaxRate


@dataclass
class LineSpec:
    """One line of a cycle's invoice, before it is an ``InvoiceLine``."""

    description: str
    quantity: Decimal
    unit_price: int
    tax_rate: TaxRate | None
    period: cycles.Period | None = None
    service_id: int | None = None
    charge_id: int | None = None
    subscription_charge_id: int | None = None

    def rule(self) -> Line:
        tax = None
        if self.tax_rate is not None:
            tax = TaxRule(self.tax_rate.name, Decimal(self.tax_rate.percent), self.tax_rate.inclusive)
        return Line(self.quantity, self.unit_price, None, tax)


def period(sub: Subscription, n: int) -> cycles.Period:
    return cycles.period(sub.anchor, sub.unit, sub.interval, n)


def invoice_date(sub: Subscription, n: int) -> date | None:
    """The day period ``n``'s invoice is made (None while the first invoice waits for staff)."""
    if sub.invoice_anchor is None:
        return None
    return cycles.start(sub.invoice_anchor, sub.unit, sub.interval, n)


def in_term(sub: Subscription, n: int) -> bool:
    """Whether period ``n`` is inside the subscription's term (end date, number of cycles)."""
    if sub.max_cycles is not None and n >= sub.max_cycles:
        return False
    if sub.ends_on is not None and period(sub, n).start >= sub.ends_on:
        return False
    return True


def next_invoice_on(sub: Subscription, n: int) -> date | None:
    """What ``sub.next_invoice_on`` should say when ``n`` is the next period to bill."""
    if not in_term(sub, n):
        return None
    return invoice_date(sub, n)


def item_lines(items, p: cycles.Period | None) -> list[LineSpec]:
    suffix = f" ({p.label()})" if p is not None else ""
    return [LineSpec(f"{item.description}{suffix}"[:500], Decimal(item.quantity), int(item.unit_price),
                     item.tax_rate, p, _service_of(item)) for item in items]


def _service_of(item) -> int | None:
    plan = item.plan if hasattr(item, "plan") else None
    return plan.service_id if plan is not None else None


def lines_for(sub: Subscription, n: int, items=None, with_open_charges: bool = True) -> list[LineSpec]:
    """The lines of period ``n``'s invoice (``items``: the items in force, default the subscription's)."""
    p = period(sub, n)
    lines = item_lines(items if items is not None else sub.items, p)
    if n == 0:
        for item in items if items is not None else sub.items:
            plan = item.plan
            if plan is not None and plan.setup_fee:
                lines.append(LineSpec(f"Setup: {plan.name}"[:500], Decimal(1), int(plan.setup_fee), plan.tax_rate,
                                      None, plan.service_id))
    for extra in waiting_charges(sub):
        lines.append(LineSpec(extra.description, Decimal(1), int(extra.amount), extra.tax_rate,
                              subscription_charge_id=extra.id))
    if with_open_charges and sub.client.charges_billing == "next_cycle":
        for charge in open_charges(sub.client_id, sub.currency):
            lines.append(LineSpec(charge.description, Decimal(charge.quantity), int(charge.unit_price),
                                  charge.tax_rate, None, charge.service_id, charge.id))
    return lines


def waiting_charges(sub: Subscription) -> list[SubscriptionCharge]:
    if sub.id is None:
        return []
    return list(db.session.scalars(select(SubscriptionCharge).where(
        SubscriptionCharge.subscription_id == sub.id, SubscriptionCharge.invoice_id.is_(None))
        .order_by(SubscriptionCharge.id)))


def open_charges(client_id: int, currency: str) -> list[Charge]:
    return list(db.session.scalars(select(Charge).where(
        Charge.client_id == client_id, Charge.status == "open", Charge.currency == currency)
        .order_by(Charge.created_at, Charge.id)))


def amount_of(lines: list[LineSpec]) -> int:
    return compute([line.rule() for line in lines]).total if lines else 0


@dataclass
class Upcoming:
    index: int
    period: cycles.Period
    invoice_on: date | None
    amount: int


def preview(sub: Subscription, count: int = 12) -> list[Upcoming]:
    """The next ``count`` periods still to bill: service period, invoice date, amount, computed by
    ``lines_for`` (the billing run's code). Pending changes at renewal are priced in; proration
    charges and open charges are on the first one only (they are billed once)."""
    if sub.status in ("cancelled", "ended"):
        return []
    items = pending_items(sub) or sub.items
    rows = []
    n = sub.next_period
    while len(rows) < count and in_term(sub, n):
        lines = lines_for(sub, n, items) if not rows else _plain_lines(sub, n, items)
        rows.append(Upcoming(n, period(sub, n), invoice_date(sub, n), amount_of(lines)))
        n += 1
    return rows


def _plain_lines(sub: Subscription, n: int, items) -> list[LineSpec]:
    lines = item_lines(items, period(sub, n))
    if n == 0:
        for item in items:
            if item.plan is not None and item.plan.setup_fee:
                lines.append(LineSpec("Setup", Decimal(1), int(item.plan.setup_fee), item.plan.tax_rate))
    return lines


@dataclass
class ItemSpec:
    """An item as a pending change describes it (not yet a row)."""

    plan: Plan
    quantity: Decimal
    description: str
    unit_price: int
    tax_rate: TaxRate | None


def pending_items(sub: Subscription) -> list[ItemSpec] | None:
    """The items a change "at the next renewal" will put in force (None: no change waiting)."""
    if not sub.pending_items:
        return None
    specs = []
    for entry in sub.pending_items:
        plan = db.session.get(Plan, int(entry["plan_id"]))
        if plan is None:
            continue
        specs.append(ItemSpec(plan, Decimal(entry["quantity"]), plan.name, plan.unit_price, plan.tax_rate))
    return specs

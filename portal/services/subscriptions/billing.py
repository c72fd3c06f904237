"""Billing a subscription's due periods: exactly once, in order, catching up on any backlog.

``bill_subscription`` bills every period whose invoice day has come, oldest first, each in its own
transaction that takes the subscription's row lock first (the lock order: subscription → invoices →
payments → client → business), inserts the ``subscription_period`` row (unique per subscription and
period start) with the invoice, finalizes and sends it (or leaves a draft when the business reviews
recurring invoices), and moves ``next_period`` on. Two runs at once queue on the lock; the unique
row refuses what a stale read (or SQLite) lets through; a crash rolls the whole period back, number
included, so numbers stay gapless and the next run bills it again.

Failure (seed 004): when a cycle invoice's automatic charge fails, the invoice stays open, the
subscription becomes ``past_due`` and holds (``held_invoice_id``): no later period is billed until
that invoice is paid or staff settle it (void, mark paid, write off). Then the subscription is active
again and the held periods are billed at once, in order (as a catch-up). A self-checkout held
``incomplete`` on its first invoice starts only when that invoice is paid: voided or written off
unpaid, the subscription is cancelled (``release_hold``), never started with autopay on. Without autopay, periods
repeat whatever the last invoice's status ("invoices repeat if the status is Open or Paid").

An autopay charge due on the day of issue is made here, before the next period is considered, so a
decline stops a catch-up at the first unpaid invoice. An error on one subscription is recorded on it
(``last_error``, an event), shown to staff, and retried by the next run; the run goes on.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal import clock
from portal.billing import cycles, states
from portal.extensions import db
from portal.models import (
    Charge,
    Invoice,
    InvoiceLine,
    Payment,
    Subscription,
    SubscriptionCharge,
    SubscriptionItem,
    SubscriptionPeriod,
)
from portal.services import autopay, charges, invoices, locks
from portal.services.business import get_business
from portal.services.events import Actor, commit, record_event, rollback
from portal.services.payments import email_owners
from portal.services.subscriptions.schedule import (
    invoice_date,
    lines_for,
    next_invoice_on,
    pending_items,
    period,
)

log = logging.getLogger(__name__)
RUNNER = Actor("system", None, "billing run")
ACTIVE = ("trialing", "active")
HELD = ("past_due", "incomplete")
# A held invoice still being collected (an uncollectible one is written off: settled by staff).
STILL_DUE = (states.OPEN, states.OVERDUE)
# A first invoice settled without being paid.
NOT_PAID = (states.VOID, states.UNCOLLECTIBLE)
# A backlog larger than this is billed over several runs (a daily plan down for years).
MAX_PERIODS_PER_CALL = 400


@dataclass
class Outcome:
    invoices: int = 0
    caught_up: int = 0
    error: str | None = None


def today_at(at: datetime) -> date:
    return cycles.local_date(clock.as_utc(at), get_business().timezone)


def bill_subscription(subscription_id: int, at: datetime | None = None, run_id: int | None = None) -> Outcome:
    """Bill every due period of one subscription as of ``at`` (default now). Safe to call twice,
    from two processes at once, or after a crash: each period is billed once."""
    at = clock.as_utc(at) if at else clock.now()
    today = today_at(at)
    outcome = Outcome()
    last_tried = None
    while outcome.invoices < MAX_PERIODS_PER_CALL:
        sub = locks.subscription(subscription_id)
        if sub.status in HELD and not release_hold(sub):
            if sub.status == "cancelled":  # a checkout whose first invoice was voided unpaid
                commit()
            else:
                rollback()
            break
        if sub.status in ACTIVE and held_by_failure(sub):
            commit()
            break
        n = sub.next_period
        due_on = invoice_date(sub, n)
        if sub.status not in ACTIVE or due_on is None or due_on > today or next_invoice_on(sub, n) is None:
            settle_schedule(sub, today)
            commit()
            break
        if last_tried == n:  # the same period refused twice: leave it to the next run
            rollback()
            break
        last_tried = n
        try:
            invoice = _bill_period(sub, n, due_on, today, run_id)
            commit()
        except IntegrityError:
            rollback()  # another run billed this period first: read the subscription again
            continue
        except Exception as exc:
            rollback()
            log.exception("billing subscription %s period %s failed", subscription_id, n)
            outcome.error = _record_error(subscription_id, n, exc)
            break
        outcome.invoices += 1
        if due_on < today:
            outcome.caught_up += 1
        _charge_if_due(invoice, at, today)
    if outcome.invoices > 1:
        record_event("subscription.caught_up", "subscription", subscription_id, RUNNER,
                     data={"periods": outcome.invoices, "run_id": run_id})
        commit()
    return outcome


def _bill_period(sub: Subscription, n: int, due_on: date, today: date, run_id: int | None) -> Invoice:
    """Make period ``n``'s invoice (one transaction, not committed here)."""
    business = get_business()
    changed = apply_pending_items(sub)
    p = period(sub, n)
    lines = lines_for(sub, n)
    wanted = [spec.charge_id for spec in lines if spec.charge_id]
    if wanted:  # the client's open charges: only those this invoice really takes (never two invoices)
        taken = {charge.id for charge in charges.claim_open(wanted)}
        lines = [spec for spec in lines if not spec.charge_id or spec.charge_id in taken]
    client = sub.client
    invoice = Invoice(client_id=client.id, status=states.DRAFT, subscription_id=sub.id,
                      **{**invoices.defaults(client, business), "currency": sub.currency})
    db.session.add(invoice)
    db.session.flush()
    db.session.add(SubscriptionPeriod(subscription_id=sub.id, period_index=n, period_start=p.start,
                                      period_end=p.end, invoice_on=due_on, invoice_id=invoice.id,
                                      billing_run_id=run_id, caught_up=due_on < today))
    db.session.flush()  # the unique (subscription, period start) row: a second run stops here
    for position, spec in enumerate(lines):
        invoice.lines.append(InvoiceLine(
            position=position, description=spec.description, quantity=spec.quantity, unit_price=spec.unit_price,
            service_id=spec.service_id, charge_id=spec.charge_id,
            period_start=spec.period.start if spec.period else None,
            period_end=spec.period.last_day if spec.period else None,
            **invoices.tax_columns(spec.tax_rate)))
        if spec.charge_id:
            db.session.get(Charge, spec.charge_id).invoice_id = invoice.id  # claimed above
        if spec.subscription_charge_id:
            db.session.get(SubscriptionCharge, spec.subscription_charge_id).invoice_id = invoice.id
    invoices.recompute(invoice)
    record_event("invoice.created", "invoice", invoice.id, RUNNER,
                 data={"client_id": client.id, "subscription_id": sub.id, "period": p.label(),
                       "charges": [ln.charge_id for ln in invoice.lines if ln.charge_id]})
    if sub.status == "trialing":
        sub.status = "active"
    sub.next_period = n + 1
    sub.next_invoice_on = next_invoice_on(sub, n + 1)
    sub.last_error = None
    sub.last_error_at = None
    if business.review_recurring_invoices:
        pass  # a draft for staff to review and send
    elif client.billing_contacts:
        invoices.send(invoice, RUNNER, commit_now=False)
    else:
        invoices.finalize(invoice, RUNNER, commit_now=False)
    record_event("subscription.invoiced", "subscription", sub.id, RUNNER,
                 data={"period_index": n, "period": p.label(), "invoice_id": invoice.id, "number": invoice.number,
                       "total": invoice.total, "currency": invoice.currency, "late": due_on < today,
                       "draft": invoice.status == states.DRAFT, "items_changed": changed, "run_id": run_id})
    settle_schedule(sub, today)
    return invoice


def apply_pending_items(sub: Subscription) -> bool:
    """A change chosen "at the next renewal" takes effect on the period being billed."""
    specs = pending_items(sub)
    if specs is None:
        return False
    before = [{"plan_id": i.plan_id, "quantity": str(i.quantity)} for i in sub.items]
    sub.items.clear()
    db.session.flush()
    for position, spec in enumerate(specs):
        sub.items.append(SubscriptionItem(plan_id=spec.plan.id, position=position, description=spec.description,
                                          quantity=spec.quantity, unit_price=spec.unit_price,
                                          tax_rate_id=spec.tax_rate.id if spec.tax_rate else None))
    sub.pending_items = None
    db.session.flush()
    db.session.expire(sub, ["items"])
    record_event("subscription.changed", "subscription", sub.id, RUNNER,
                 before={"items": before}, after={"items": [{"plan_id": s.plan.id, "quantity": str(s.quantity)}
                                                             for s in specs]},
                 data={"when": "renewal"})
    return True


def settle_schedule(sub: Subscription, today: date) -> None:
    """Keep ``next_invoice_on`` true, and end a subscription whose term is over (``term_over``;
    ``ends_on`` is the term's end: an end date, the end of the last of ``max_cycles`` periods, or the
    end of the period in which the subscription was cancelled at period end)."""
    live = sub.status in ACTIVE + HELD + ("paused",)
    expected = next_invoice_on(sub, sub.next_period) if live else None
    if sub.next_invoice_on != expected:
        sub.next_invoice_on = expected
    if live and sub.max_cycles is not None and sub.next_period >= sub.max_cycles:
        last = period(sub, sub.max_cycles - 1).end  # the term ends with its last cycle, if not before
        if sub.ends_on is None or last < sub.ends_on:
            sub.ends_on = last
    if live and term_over(sub, today):
        finish(sub, today)


def term_over(sub: Subscription, today: date) -> bool:
    """Whether a live subscription's term is over: its end has come and nothing inside the term is left
    to bill. An active one whose end passed during downtime first bills the periods that start before
    the end (the run's catch-up), then ends; a paused or held one ends on the day."""
    if sub.ends_on is None or sub.ends_on > today:
        return False
    return sub.status not in ACTIVE or next_invoice_on(sub, sub.next_period) is None


def finish(sub: Subscription, today: date) -> None:
    """The term is over (end date, number of cycles, or cancelled at period end)."""
    status = "cancelled" if sub.cancel_at_period_end else "ended"
    before = sub.status
    sub.status = status
    sub.next_invoice_on = None
    if status == "cancelled" and sub.cancelled_at is None:
        sub.cancelled_at = clock.now()
    record_event(f"subscription.{status}", "subscription", sub.id, RUNNER,
                 before={"status": before}, after={"status": status}, data={"on": today.isoformat()})


def held_by_failure(sub: Subscription) -> bool:
    """Whether the subscription's latest cycle invoice failed its automatic charge and is still
    unpaid; if so, mark it past due (and tell staff). Caller holds the subscription's lock."""
    latest = db.session.scalar(select(Invoice).where(Invoice.subscription_id == sub.id)
                               .order_by(Invoice.id.desc()).limit(1))
    if (latest is None or latest.status not in states.PAYABLE or latest.amount_due <= 0
            or latest.autopay_attempted_at is None):
        return False
    in_flight = db.session.scalar(select(Payment.id).where(
        Payment.invoice_id == latest.id, Payment.status.in_(("pending", "processing"))).limit(1))
    if in_flight is not None:
        return False
    mark_past_due(sub, latest)
    return True


def mark_past_due(sub: Subscription, invoice: Invoice) -> None:
    before = sub.status
    sub.status = "past_due"
    sub.held_invoice_id = invoice.id
    record_event("subscription.past_due", "subscription", sub.id, RUNNER,
                 before={"status": before}, after={"status": "past_due"},
                 data={"invoice_id": invoice.id, "number": invoice.number})
    email_owners(invoice, f"Subscription past due: {invoice.client.name}",
                 f"The automatic charge for invoice {invoice.number} ({invoice.client.name}) failed. "
                 "The subscription is past due: no further period is invoiced until this invoice is paid, "
                 "or you settle it (mark it paid, void it or write it off).")


def release_hold(sub: Subscription) -> bool:
    """A held subscription whose held invoice is settled. Past due: paid, or settled by staff (voided,
    written off) → active again. Incomplete (a self-checkout waiting for its first payment): paid →
    active; voided or written off without being paid → the subscription never started and is
    cancelled (False: nothing is billed, and its card is never charged). Returns whether it is billable
    now. Caller holds the lock and commits (a cancellation too)."""
    held = db.session.get(Invoice, sub.held_invoice_id) if sub.held_invoice_id else None
    if sub.status == "incomplete" and held is not None and held.status in NOT_PAID:
        cancel_unstarted(sub, held)
        return False
    if held is not None and held.status in STILL_DUE and held.amount_due > 0:
        return False
    before = sub.status
    sub.status = "active"
    sub.held_invoice_id = None
    record_event("subscription.reactivated", "subscription", sub.id, RUNNER,
                 before={"status": before}, after={"status": "active"},
                 data={"invoice_id": held.id if held else None, "invoice_status": held.status if held else None})
    return True


def cancel_unstarted(sub: Subscription, held: Invoice) -> None:
    """A self-checkout whose first invoice was voided or written off unpaid: cancelled."""
    before = sub.status
    sub.status = "cancelled"
    sub.cancelled_at = clock.now()
    sub.next_invoice_on = None
    sub.pending_items = None
    sub.ends_on = today_at(clock.now())
    record_event("subscription.cancelled", "subscription", sub.id, RUNNER,
                 before={"status": before}, after={"status": "cancelled"},
                 data={"when": "now", "reason": "first invoice not paid", "invoice_id": held.id,
                       "invoice_status": held.status})


def _charge_if_due(invoice: Invoice, at: datetime, today: date) -> None:
    """Charge now an invoice whose autopay day is today, so a decline holds the next period."""
    invoice_id = invoice.id
    row = db.session.get(Invoice, invoice_id)
    if row is None or row.autopay_on is None or row.autopay_on > today or row.autopay_attempted_at is not None:
        return
    try:
        autopay.charge_now(invoice_id, at)
    except Exception:
        rollback()
        log.exception("autopay for cycle invoice %s failed to run", invoice_id)


def _record_error(subscription_id: int, n: int, exc: Exception) -> str:
    message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
    message = message[:1000]
    sub = locks.subscription(subscription_id)
    sub.last_error = message
    sub.last_error_at = clock.now()
    record_event("subscription.billing_failed", "subscription", sub.id, RUNNER,
                 data={"period_index": n, "error": message})
    commit()
    return message

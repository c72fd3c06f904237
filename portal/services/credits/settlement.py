"""How money received is spread over invoices. ``settle_payment`` is the one way succeeded money
reaches invoices: it pays the given invoices oldest first, each at most what it is due
(``billing.invoice_math.allocate_oldest_first``), writes one ``payment_allocation`` per invoice paid,
and puts any excess on the credit balance (an ``overpayment`` row), so an invoice's amount due never
goes below zero. Callers hold the invoices' row locks (``lock_invoices``) and commit.
"""
from __future__ import annotations

from sqlalchemy import select

from portal import clock
from portal.billing import states
from portal.billing.invoice_math import allocate_oldest_first, amount_due
from portal.extensions import db
from portal.models import Invoice, Payment, PaymentAllocation
from portal.services import locks, restrictions
from portal.services.credits.ledger import add_entry
from portal.services.errors import ServiceError
from portal.services.events import Actor, record_event


def lock_invoices(invoice_ids: list[int]) -> list[Invoice]:
    """The invoices under row locks (taken in id order: no deadlocks), oldest first:
    by due date, then issue date, then id."""
    return sorted(locks.invoices(invoice_ids), key=oldest_first_key)


def oldest_first_key(invoice: Invoice):
    return (invoice.due_date or invoice.issue_date or clock.today(), invoice.issue_date or clock.today(),
            invoice.id)


def refresh_due(invoice: Invoice, actor: Actor) -> None:
    """Recompute the amount due; mark paid when nothing is left. Caller commits."""
    invoice.amount_due = amount_due(invoice.total, invoice.amount_paid, invoice.credit_applied,
                                    invoice.credit_noted)
    if invoice.amount_due < 0:
        raise ServiceError("That is more than the amount due.")
    if invoice.amount_due == 0 and invoice.status in states.PAYABLE:
        before = invoice.status
        invoice.status = states.transition(invoice.status, "pay")
        invoice.paid_at = clock.now()
        record_event("invoice.paid", "invoice", invoice.id, actor, before={"status": before},
                     after={"status": invoice.status})


def settle_payment(payment: Payment, invoices: list[Invoice], actor: Actor) -> list[PaymentAllocation]:
    """Spread a succeeded payment over ``invoices`` (already locked, oldest first); the rest is credit.

    Invoices that take no payment any more (paid meanwhile, cancelled) get nothing."""
    payable = [inv for inv in invoices if inv.status in states.PAYABLE and inv.amount_due > 0
               and inv.currency == payment.currency and inv.client_id == payment.client_id]
    parts, excess = allocate_oldest_first(payment.amount, [inv.amount_due for inv in payable])
    allocations = []
    for invoice, part in zip(payable, parts):
        if part <= 0:
            continue
        row = PaymentAllocation(payment_id=payment.id, invoice_id=invoice.id, amount=part, created_at=clock.now())
        db.session.add(row)
        allocations.append(row)
        invoice.amount_paid += part
        invoice.amount_due = amount_due(invoice.total, invoice.amount_paid, invoice.credit_applied,
                                        invoice.credit_noted)
        record_event("invoice.payment_recorded", "invoice", invoice.id, actor,
                     data={"payment_id": payment.id, "amount": part, "method": payment.method,
                           "amount_due": invoice.amount_due})
        refresh_due(invoice, actor)
    if excess > 0:
        payment.credited_amount = excess
        single = invoices[0] if len(invoices) == 1 else None
        described = f"Paid more than was due on {single.number}" if single and single.number else \
            "Paid more than was due"
        add_entry(payment.client_id, payment.currency, excess, "overpayment", actor, described,
                  invoice_id=invoices[0].id if len(invoices) == 1 else None, payment_id=payment.id)
    db.session.flush()
    after_payment(payment.client_id, actor)
    return allocations


def after_payment(client_id: int, actor: Actor) -> None:
    """Hook run in the payment's transaction: lifts a restriction once nothing is far overdue."""
    restrictions.lift_if_clear(client_id, actor)


def payment_allocations(payment_id: int) -> list[tuple[PaymentAllocation, Invoice]]:
    return list(db.session.execute(
        select(PaymentAllocation, Invoice).join(Invoice, Invoice.id == PaymentAllocation.invoice_id)
        .where(PaymentAllocation.payment_id == payment_id).order_by(PaymentAllocation.id)))

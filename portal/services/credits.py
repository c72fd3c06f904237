"""The credit ledger and how money received is spread over invoices.

Rules kept here:
- A client's credit balance (per currency) is ``SUM(credit_entry.amount)``;
  rows are only ever added (the model refuses updates and deletes).
- ``settle_payment`` is the one way succeeded money reaches invoices: it pays
  the given invoices oldest first, each at most what it is due
  (``billing.invoice_math.allocate_oldest_first``), writes one
  ``payment_allocation`` per invoice paid, and puts any excess on the credit
  balance (an ``overpayment`` row), so an invoice's amount due never goes
  below zero.
- Callers hold the invoices' row locks (``lock_invoices``) and commit.
"""
from __future__ import annotations

from sqlalchemy import func, select

from portal import clock
from portal.billing import states
from portal.billing.invoice_math import allocate_oldest_first, amount_due
from portal.extensions import db
from portal.models import CreditEntry, Invoice, Payment, PaymentAllocation
from portal.services.errors import ServiceError
from portal.services.events import Actor, record_event


def balance(client_id: int, currency: str) -> int:
    """The client's credit balance in one currency: the sum of its ledger rows."""
    return int(db.session.scalar(
        select(func.coalesce(func.sum(CreditEntry.amount), 0))
        .where(CreditEntry.client_id == client_id, CreditEntry.currency == currency)) or 0)


def balances(client_id: int) -> dict[str, int]:
    """Every currency the client has ledger rows in → balance (zero balances included)."""
    rows = db.session.execute(
        select(CreditEntry.currency, func.sum(CreditEntry.amount))
        .where(CreditEntry.client_id == client_id).group_by(CreditEntry.currency).order_by(CreditEntry.currency))
    return {currency: int(total) for currency, total in rows}


def add_entry(client_id: int, currency: str, amount: int, kind: str, actor: Actor, description: str | None = None,
              invoice_id: int | None = None, payment_id: int | None = None,
              credit_note_id: int | None = None) -> CreditEntry:
    """Append one ledger row and its event. Caller commits."""
    if amount == 0:
        raise ValueError("a ledger row moves money")
    entry = CreditEntry(client_id=client_id, currency=currency, amount=amount, kind=kind,
                        description=(description or "").strip() or None, invoice_id=invoice_id,
                        payment_id=payment_id, credit_note_id=credit_note_id,
                        recorded_by_staff_id=actor.id if actor.kind == "staff" else None, created_at=clock.now())
    db.session.add(entry)
    db.session.flush()
    record_event("credit." + kind, "client", client_id, actor,
                 data={"entry_id": entry.id, "amount": amount, "currency": currency, "invoice_id": invoice_id,
                       "payment_id": payment_id, "credit_note_id": credit_note_id})
    return entry


def lock_invoices(invoice_ids: list[int]) -> list[Invoice]:
    """The invoices under row locks (taken in id order: no deadlocks), oldest first:
    by due date, then issue date, then id."""
    if not invoice_ids:
        return []
    rows = db.session.scalars(
        select(Invoice).where(Invoice.id.in_(sorted(set(invoice_ids)))).order_by(Invoice.id).with_for_update()
        .execution_options(populate_existing=True)).all()
    return sorted(rows, key=oldest_first_key)


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
    from portal.services import restrictions

    restrictions.lift_if_clear(client_id, actor)


def payment_allocations(payment_id: int) -> list[tuple[PaymentAllocation, Invoice]]:
    return list(db.session.execute(
        select(PaymentAllocation, Invoice).join(Invoice, Invoice.id == PaymentAllocation.invoice_id)
        .where(PaymentAllocation.payment_id == payment_id).order_by(PaymentAllocation.id)))


def invoice_payment_ids(invoice_id: int) -> list[int]:
    """Every payment that put money on this invoice (its own and "pay all" ones)."""
    return list(db.session.scalars(
        select(PaymentAllocation.payment_id).where(PaymentAllocation.invoice_id == invoice_id)
        .order_by(PaymentAllocation.payment_id).distinct()))


def auto_apply_on_finalize(invoice: Invoice, actor: Actor) -> None:
    """Called in finalize's transaction: apply the client's credit balance when the client's (or the
    business's) setting says so. Stub, filled in by the credit work of F4."""
    return None


def invoice_panel(invoice: Invoice) -> dict | None:
    """What the staff invoice page shows about credit (balance to apply, credit notes). None: nothing."""
    return None


def client_panel(client) -> dict | None:
    """What the staff client page shows about credit (balance, ledger, forms). None: nothing."""
    return None


def portal_summary(client_id: int) -> dict | None:
    """What the portal's Billing tab shows about this (None: nothing). Stub for F4."""
    return None

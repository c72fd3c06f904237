"""Refunds: staff refunds, the refund part of a credit note (``refund_money``), and the automatic
refund of a late payment (``refund_excess``). Never more than what is left of a payment, even under
races (invoice, then payment, then client locks).
"""
from __future__ import annotations

from sqlalchemy import func, select

from portal import clock
from portal.billing import states
from portal.billing.invoice_math import amount_due
from portal.billing.money import MoneyError, to_minor
from portal.extensions import db
from portal.gateways import get_gateway
from portal.gateways.base import (
    GatewayError,
)
from portal.models import Payment, PaymentAllocation, Refund
from portal.services import credits, formats, locks
from portal.services.errors import NotFound, ServiceError
from portal.services.events import SYSTEM, Actor, commit, record_event
from portal.services.payments.attempts import targets
from portal.services.payments.history import invoice_payments
from portal.services.payments.notices import email_client, email_owners, refund_email
from portal.services.settings import get_business


def refund_excess(payment_id: int) -> str:
    """Give back the part of a late payment that went to credit (``excess_state == "refund_due"``),
    as much as the credit balance still holds, through the gateway; then tell the client and staff.
    Idempotent (the refund's idempotency key is counted per payment). Raises on a retryable gateway
    failure so the job is retried."""
    found = db.session.get(Payment, payment_id)
    if found is None or found.excess_state != "refund_due":
        db.session.rollback()
        return "nothing to do"
    invoices = credits.lock_invoices(targets(found))
    payment = locks.payment(payment_id)
    if payment.excess_state != "refund_due" or payment.status != "succeeded":
        db.session.rollback()
        return "nothing to do"

    credits.lock_client(payment.client_id)
    taken = int(db.session.scalar(select(func.coalesce(func.sum(Refund.from_credit), 0))
                                  .where(Refund.payment_id == payment.id)) or 0)
    amount = min(payment.credited_amount - taken, credits.balance(payment.client_id, payment.currency),
                 payment.amount - payment.refunded_amount)
    numbers = ", ".join(inv.number for inv in invoices if inv.number) or "your invoice"
    invoice = invoices[0] if invoices else None
    if amount <= 0:  # the credit was spent meanwhile (applied to another invoice): it stays spent
        payment.excess_state = "credited"
        record_event("payment.excess_kept", "client", payment.client_id, SYSTEM,
                     data={"payment_id": payment.id, "why": "the credit balance was already used"})
        if invoice is not None:
            email_owners(invoice, f"Late payment kept as credit: {numbers}",
                         f"A late payment on {numbers} could not be refunded automatically: the credit it "
                         f"made was already used. Check the client's credit balance.")
        commit()
        return "credited"
    try:
        row = refund_money(payment, amount, "Paid after the invoice was already settled: refunded automatically",
                           SYSTEM, credit_first=True, notify=False)
    except ServiceError as exc:
        cause = exc.__cause__
        if isinstance(cause, GatewayError) and not cause.retryable:
            payment = locks.payment(payment_id)
            payment.excess_state = "refund_failed"
            record_event("payment.excess_refund_failed", "client", payment.client_id, SYSTEM,
                         data={"payment_id": payment.id, "message": cause.message})
            if invoice is not None:
                email_owners(invoice, f"Refund of a late payment failed: {numbers}",
                             f"{formats.money(amount, payment.currency)} paid late on {numbers} could not be refunded: "
                             f"{cause.message}. It stays on the client's credit balance; refund it by hand.")
            commit()
            return "refund_failed"
        raise
    payment.excess_state = "refunded"
    record_event("payment.excess_refunded", "client", payment.client_id, SYSTEM,
                 data={"payment_id": payment.id, "refund_id": row.id, "amount": amount})
    if invoice is not None:
        refunded = formats.money(amount, payment.currency)
        email_client(invoice, "payment_receipt",
                      f"\n\nWe received a payment of {formats.money(payment.amount, payment.currency)} for {numbers} "
                      f"after it had already been settled, so you were not charged twice: we refunded "
                      f"{refunded} to your {payment.method_label}. Depending on your bank it shows "
                      f"within 5 to 10 business days.",
                      payment, "View the invoice")
        email_owners(invoice, f"Late payment refunded: {numbers} ({refunded})",
                     f"{refunded} paid late on {numbers} ({invoice.client.name}) was refunded automatically.")
    commit()
    return "refunded"


# Refunds ------------------------------------------------------------------------------------------

def refund(payment_id: int, amount_text: str, reason: str, actor: Actor, invoice_id: int | None = None) -> Refund:
    """Give back all or part of a payment. Never more than what is left of it, even under races.

    The money comes first out of what the payment put on the credit balance (while the balance
    holds it), then off the invoice it paid (``invoice_id`` for a "pay all" payment). Without a
    credit note the client owes that part again: a paid invoice reopens. A credit note
    (``credit_notes.issue``) refunds through ``refund_money`` and keeps the invoice settled."""

    found = db.session.get(Payment, payment_id)
    if found is not None:  # the usual lock order: the invoice first, then the payment
        target = invoice_id or found.invoice_id or db.session.scalar(
            select(PaymentAllocation.invoice_id).where(PaymentAllocation.payment_id == found.id)
            .order_by(PaymentAllocation.id.desc()).limit(1))
        if target is not None:
            locks.invoice(target)
    payment = lock_succeeded_payment(payment_id)
    amount = _refund_amount(payment, amount_text)
    row = refund_money(payment, amount, reason, actor, invoice_id)
    if row.invoice_id is not None:
        invoice = locks.invoice(row.invoice_id)
        if invoice.status == states.PAID and invoice.amount_due > 0:
            invoice.status = states.transition(invoice.status, "reopen")
            invoice.paid_at = None
            if invoice.due_date and invoice.due_date < clock.today(get_business().timezone):
                invoice.status = states.transition(invoice.status, "mark_overdue")
                invoice.overdue_at = clock.now()
            record_event("invoice.reopened", "invoice", invoice.id, actor, before={"status": states.PAID},
                         after={"status": invoice.status, "amount_due": invoice.amount_due})
    commit()
    return row


def lock_succeeded_payment(payment_id: int) -> Payment:
    payment = locks.payment(payment_id)
    if payment is None:
        raise NotFound("No such payment.")
    if payment.status != "succeeded":
        raise ServiceError("Only a completed payment can be refunded.")
    return payment


def _refund_amount(payment: Payment, amount_text: str) -> int:
    try:
        amount = to_minor(amount_text, payment.currency)
    except MoneyError as exc:
        raise ServiceError("That amount is too large." if exc.reason == "range" else "Use an amount like 25.00.",
                           field="amount") from None
    if amount <= 0:
        raise ServiceError("Enter an amount above zero.", field="amount")
    return amount


def refundable(payment: Payment, invoice_id: int | None = None) -> dict:
    """How much of a payment can still be given back: from the credit balance it fed, and from the
    invoice it paid (``invoice_id``, default: its own invoice, else the newest it paid)."""

    taken_from_credit = int(db.session.scalar(select(func.coalesce(func.sum(Refund.from_credit), 0))
                                              .where(Refund.payment_id == payment.id)) or 0)
    credit_part = max(0, min(payment.credited_amount - taken_from_credit,
                             credits.balance(payment.client_id, payment.currency)))
    if invoice_id is None:
        invoice_id = payment.invoice_id or db.session.scalar(
            select(PaymentAllocation.invoice_id).where(PaymentAllocation.payment_id == payment.id)
            .order_by(PaymentAllocation.id.desc()).limit(1))
    invoice_part = 0
    if invoice_id is not None:
        allocated = int(db.session.scalar(select(func.coalesce(func.sum(PaymentAllocation.amount), 0))
                                          .where(PaymentAllocation.payment_id == payment.id,
                                                 PaymentAllocation.invoice_id == invoice_id)) or 0)
        taken = int(db.session.scalar(select(func.coalesce(func.sum(Refund.amount - Refund.from_credit), 0))
                                      .where(Refund.payment_id == payment.id, Refund.invoice_id == invoice_id))
                    or 0)
        invoice_part = max(0, allocated - taken)
    left = payment.amount - payment.refunded_amount
    return {"credit": min(credit_part, left), "invoice": min(invoice_part, left),
            "total": min(left, credit_part + invoice_part), "invoice_id": invoice_id}


def refund_money(payment: Payment, amount: int, reason: str, actor: Actor, invoice_id: int | None = None,
                 credit_first: bool = True, notify: bool = True) -> Refund:
    """The refund itself (payment locked by the caller): the gateway call, the refund row, the
    credit-balance part and the invoice's amount paid. Leaves the invoice's status to the caller.
    ``credit_first=False`` (a credit note) takes it all off the invoice."""

    # Lock order as everywhere else: invoice, payment (both taken by the caller), then client -- the
    # client lock serialises every spend of the credit balance, so a refund and an "apply credit"
    # can't both use it.
    target_id = invoice_id or payment.invoice_id or db.session.scalar(
        select(PaymentAllocation.invoice_id).where(PaymentAllocation.payment_id == payment.id)
        .order_by(PaymentAllocation.id.desc()).limit(1))
    if target_id is not None:
        locks.invoice(target_id)
    credits.lock_client(payment.client_id)
    room = refundable(payment, invoice_id)
    from_credit = min(amount, room["credit"]) if credit_first else 0
    from_invoice = amount - from_credit
    if from_invoice > room["invoice"]:
        most = room["total"] if credit_first else room["invoice"]
        db.session.rollback()
        raise ServiceError(f"At most {formats.money(most, payment.currency)} of this payment can be refunded.",
                           field="amount")
    gateway_refund_id = None
    status = "succeeded"
    if payment.gateway:
        n = db.session.scalar(select(func.count()).select_from(Refund).where(Refund.payment_id == payment.id)) + 1
        try:
            result = get_gateway().refund(payment.gateway_intent_id, amount, f"payment-{payment.id}-refund-{n}")
        except GatewayError as exc:
            db.session.rollback()
            raise ServiceError(f"The refund was refused: {exc.message}") from exc
        gateway_refund_id, status = result.id, ("succeeded" if result.status == "succeeded" else "pending")
    target = room["invoice_id"] if from_invoice else None
    row = Refund(payment_id=payment.id, invoice_id=room["invoice_id"],
                 amount=amount, from_credit=from_credit, currency=payment.currency, status=status,
                 gateway_refund_id=gateway_refund_id, reason=(reason or "").strip() or None,
                 recorded_by_staff_id=actor.id if actor.kind == "staff" else None, created_at=clock.now())
    db.session.add(row)
    db.session.flush()
    payment.refunded_amount += amount
    if from_credit:
        credits.add_entry(payment.client_id, payment.currency, -from_credit, "refund", actor,
                          "Credit refunded" + (f": {row.reason}" if row.reason else ""), payment_id=payment.id)
    invoice = locks.invoice(target) if target else None
    if invoice is not None:
        invoice.amount_paid -= from_invoice
        invoice.amount_due = amount_due(invoice.total, invoice.amount_paid, invoice.credit_applied,
                                        invoice.credit_noted)
        record_event("invoice.refunded", "invoice", invoice.id, actor,
                     data={"payment_id": payment.id, "amount": amount, "from_credit": from_credit,
                           "reason": row.reason, "gateway": payment.gateway})
    if notify:  # a credit note sends its own email, with its PDF
        refund_email(payment, row, invoice)
    return row


def refund_invoice_payment(invoice_id: int, payment_id: int, amount_text: str, reason: str, actor: Actor) -> Refund:
    """The staff invoice page's refund: the payment must belong to that invoice."""
    if payment_id not in {payment.id for payment in invoice_payments(invoice_id)}:
        raise NotFound("No such payment on this invoice.")
    return refund(payment_id, amount_text, reason, actor, invoice_id=invoice_id)

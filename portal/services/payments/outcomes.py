"""From a gateway outcome to the books: ``apply_intent`` is the only way, idempotent and one-way (a
succeeded payment never moves back). Succeeded money is settled over the invoices (``credits``);
what is no longer due arrived late and is refunded by the ``refund_excess`` job (or, by setting,
kept as credit); client and staff are told. A succeeded intent that saved its method for later
(``Intent.saved_method``: the first payment of a self-checkout subscription) stores that method as
the client's default, once per intent.
"""
from __future__ import annotations

from sqlalchemy import select, update

from portal import clock
from portal.extensions import db
from portal.gateways import get_gateway
from portal.gateways.base import (
    GatewayError,
    CANCELED,
    PROCESSING,
    REQUIRES_PAYMENT_METHOD,
    SUCCEEDED,
    Intent,
)
from portal.models import Invoice, Payment, PaymentMethod
from portal.queues import enqueue_job
from portal.services import credits, formats, locks
from portal.services.errors import NotFound
from portal.services.events import Actor, commit, record_event
from portal.services.payment_methods import describe
from portal.services.payments.notices import (
    email_client,
    email_owners,
    notify_failure,
    send_receipt,
)
from portal.services.settings import get_business

GATEWAY = Actor("system", None, "payment gateway")


def apply_intent(intent: Intent, actor: Actor = GATEWAY) -> Payment:
    """Bring our payment in line with the gateway's view of the intent. Idempotent; never backwards.

    Locks in the usual order: the payment's invoices, then the payment row (then the client)."""
    found = db.session.execute(select(Payment.id, Payment.invoice_id, Payment.invoice_ids)
                               .where(Payment.gateway_intent_id == intent.id)).first()
    if found is None:
        raise NotFound(f"no payment for intent {intent.id}")
    invoices = credits.lock_invoices([found.invoice_id] if found.invoice_id is not None else list(found.invoice_ids or []))
    payment = locks.payment(found.id)
    before = payment.status
    if payment.status in ("succeeded", "canceled", "failed") and not (
            payment.status in ("failed", "canceled") and intent.status == SUCCEEDED):
        db.session.commit()
        return payment  # final: duplicates and late events change nothing
    if intent.payment_method_type:
        payment.method = intent.payment_method_type
    if intent.status == SUCCEEDED:
        _succeed(payment, actor, invoices)
        if intent.saved_method is not None:
            _keep_saved_method(payment, intent, actor)
    elif intent.status == PROCESSING and before != "processing":
        payment.status = "processing"
        record_event("payment.processing", "invoice", payment.invoice_id, actor,
                     data={"payment_id": payment.id, "method": payment.method})
    elif intent.status == REQUIRES_PAYMENT_METHOD and intent.error_code:
        # The same decline seen again (reconciliation, a repeated webhook) is not news: tell once.
        already_told = before == "pending" and payment.failure_code == intent.error_code
        payment.failure_code, payment.failure_message = intent.error_code, intent.error_message
        if before == "processing" or payment.payment_method_id is not None:
            payment.status = "failed"  # a debit that bounced, a saved method declined: that attempt is over
        if not already_told:
            notify_failure(payment, actor)
    elif intent.status == CANCELED:
        payment.status = "canceled"
        record_event("payment.canceled", "invoice", payment.invoice_id, actor, data={"payment_id": payment.id})
    excess_due = payment.excess_state == "refund_due" and before != "succeeded"
    commit()
    if excess_due:
        enqueue_job("portal.jobs.payments.refund_excess", payment.id, job_id=f"refund-excess-{payment.id}")
    return payment


def _succeed(payment: Payment, actor: Actor, invoices: list[Invoice]) -> None:
    """Book succeeded money: on its invoice, or over the "pay all" invoices oldest first; whatever
    is more than they are due goes to the client's credit balance -- and, since a gateway payment
    is never asked for more than is due, that excess arrived late (the invoice was settled another
    way meanwhile): it is refunded, or kept as credit by setting (``_late_excess``)."""

    business = get_business()
    payment.status = "succeeded"
    payment.settled_at = clock.now()
    payment.received_on = clock.today(business.timezone)
    payment.failure_code = payment.failure_message = None
    allocations = credits.settle_payment(payment, invoices, actor)
    if payment.credited_amount and payment.invoice_id:
        record_event("invoice.overpaid", "invoice", payment.invoice_id, actor,
                     data={"payment_id": payment.id, "amount": payment.amount,
                           "credited": payment.credited_amount})
    if payment.credited_amount and payment.gateway:
        _late_excess(payment, invoices, actor, business)
    if invoices and (allocations or not payment.credited_amount):
        send_receipt(invoices[0], payment, invoices)


def _keep_saved_method(payment: Payment, intent: Intent, actor: Actor) -> None:
    """Store the method a succeeded payment saved at the gateway (``setup_future_usage``) as the
    client's default, so autopay charges it off-session next time. Once per intent (its id is kept in
    ``gateway_setup_id``, unique). Takes the client's lock (after the payment's, the usual order)."""
    saved = intent.saved_method
    client = locks.client(payment.client_id)
    if db.session.scalar(select(PaymentMethod.id).where(PaymentMethod.gateway_setup_id == intent.id)) is not None:
        return
    db.session.execute(update(PaymentMethod).where(PaymentMethod.client_id == client.id,
                                                   PaymentMethod.is_default.is_(True))
                       .values(is_default=False).execution_options(synchronize_session=False))
    row = PaymentMethod(
        client_id=client.id, gateway=payment.gateway or get_gateway().name, gateway_method_id=saved.id,
        gateway_setup_id=intent.id, type=saved.type, brand=saved.brand, last4=saved.last4,
        exp_month=saved.exp_month, exp_year=saved.exp_year, bank_name=saved.bank_name, is_default=True,
        created_at=clock.now(),
    )
    db.session.add(row)
    db.session.flush()
    record_event("payment_method.added", "client", client.id, actor,
                 after={"payment_method_id": row.id, "default": True},
                 data={"payment_method_id": row.id, "type": row.type, "description": describe(row),
                       "payment_id": payment.id, "saved_by_payment": True})


def _late_excess(payment: Payment, invoices: list[Invoice], actor: Actor, business) -> None:
    """A gateway success for money no longer due (the page was left open while the invoice was paid
    another way; two payers at once). Refund it (the job does, with retries) or keep it as credit."""
    excess = formats.money(payment.credited_amount, payment.currency)
    numbers = ", ".join(inv.number for inv in invoices if inv.number) or "your invoice"
    subject = ("invoice", payment.invoice_id) if payment.invoice_id else ("client", payment.client_id)
    record_event("payment.excess", subject[0], subject[1], actor,
                 data={"payment_id": payment.id, "excess": payment.credited_amount,
                       "action": "refund" if business.refund_late_payments else "credit"})
    if business.refund_late_payments:
        payment.excess_state = "refund_due"
        if invoices:
            email_owners(invoices[0], f"Paid twice: {numbers} ({excess} will be refunded)",
                         f"{excess} arrived for {numbers} ({invoices[0].client.name}) after it was already "
                         f"settled. It is being refunded automatically to the payer's {payment.method_label}.")
        return
    payment.excess_state = "credited"
    if invoices:
        email_client(invoices[0], "payment_receipt",
                      f"\n\nWe received {excess} for {numbers} after it had already been settled. "
                      f"Nothing was lost: {excess} was added to your credit balance and will go towards "
                      f"your next invoice. Ask us if you would rather have it refunded.",
                      payment, "View the invoice")
        email_owners(invoices[0], f"Paid twice: {numbers} ({excess} kept as credit)",
                     f"{excess} arrived for {numbers} ({invoices[0].client.name}) after it was already "
                     f"settled. It was added to the client's credit balance (setting: keep late payments "
                     f"as credit).")


def refresh_from_gateway(payment: Payment) -> Payment:
    """Where the payer comes back from the gateway (Stripe's return page): bring the payment up to
    date from its intent's current state. If the gateway can't be reached, the webhook or the
    reconciliation brings the news; a decline already told is not applied again (a reload sends no
    second failure notice)."""
    try:
        intent = get_gateway().retrieve_intent(payment.gateway_intent_id)
    except GatewayError:
        return payment
    if intent.status == REQUIRES_PAYMENT_METHOD and payment.failure_code == intent.error_code:
        return payment
    return apply_intent(intent)

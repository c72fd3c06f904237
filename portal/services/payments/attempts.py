"""One live payment attempt per invoice, of whatever kind (guest link, portal, "pay all", autopay,
staff's "Attempt card").

Every path locks the invoices it pays (``lock_invoices``, ascending id) and calls ``clear_the_way``
under those locks: a bank payment on its way refuses; a saved-method charge in flight refuses; the
path's own matching attempt is reused (two tabs, a double click); any other open attempt is
cancelled at the gateway first. So two charges can't both succeed. Lock order on every money path:
invoices (ascending id), then payment rows, then the client row (``services.locks``).
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from portal.billing import states
from portal.extensions import db
from portal.gateways import get_gateway
from portal.gateways.base import (
    CANCELED,
    GatewayError,
)
from portal.models import Invoice, Payment
from portal.services import credits, formats, locks
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor, record_event
from portal.services.payments.outcomes import apply_intent

log = logging.getLogger(__name__)


def refuse_unpayable(invoice: Invoice) -> None:
    if invoice.status == states.PAID or (invoice.status in states.PAYABLE and invoice.amount_due <= 0):
        raise ServiceError("This invoice is paid. Thank you!")
    if invoice.status == states.VOID:
        raise ServiceError("This invoice was cancelled and takes no payment.")
    if invoice.status not in states.PAYABLE:
        raise ServiceError("This invoice can't be paid online.")


# One live attempt per invoice ---------------------------------------------------------------------

LIVE = ("pending", "processing")
BANK_ON_ITS_WAY = "A bank payment for this invoice is already on its way. It takes a few days to clear."


def targets(payment: Payment) -> list[int]:
    """The invoices a payment is for: its own, or the "pay all" set."""
    return [payment.invoice_id] if payment.invoice_id is not None else list(payment.invoice_ids or [])


def live_attempts(client_id: int, invoice_ids) -> list[Payment]:
    """Gateway payments not yet final (pending, processing) that are for any of ``invoice_ids``,
    single or "pay all". Read under the invoices' locks, this is the invoices' live attempts."""
    wanted = set(invoice_ids)
    rows = db.session.scalars(select(Payment).where(
        Payment.client_id == client_id, Payment.gateway.is_not(None), Payment.status.in_(LIVE))
        .order_by(Payment.id).execution_options(populate_existing=True))
    return [p for p in rows if wanted & set(targets(p))]


def money_on_its_way(invoice: Invoice) -> str | None:
    """What is on its way for this invoice through the gateway (a bank debit clearing, a saved-card
    charge in flight), in words, or None. Staff must not book the same money by hand meanwhile."""
    for attempt in live_attempts(invoice.client_id, [invoice.id]):
        if attempt.status == "processing":
            return (f"A bank payment of {formats.money(attempt.amount, attempt.currency)} for this invoice is on its way "
                    "(it takes a few days to clear).")
        if attempt.payment_method_id is not None:
            return "A charge on the client's saved payment method for this invoice is in progress."
    return None


class AttemptChanged(ServiceError):
    """An open attempt could not be cancelled: it may have been paid meanwhile."""


def clear_the_way(invoices: list[Invoice], actor: Actor, reuse=None) -> Payment | None:
    """Under the invoices' row locks: make sure no other attempt can charge them.

    A bank payment on its way, or a saved-method charge in flight, refuses (ServiceError). The
    first open attempt ``reuse(payment)`` accepts is returned, to be reused. Every other open
    attempt is cancelled at the gateway before the caller makes its own; if the gateway refuses
    (it was paid, or is settling), what really happened is booked and AttemptChanged is raised.
    Leaves the transaction open (the caller commits or rolls back)."""
    if not invoices:
        return None
    gateway = get_gateway()
    kept = None
    for attempt in live_attempts(invoices[0].client_id, [inv.id for inv in invoices]):
        if attempt.status == "processing":
            raise ServiceError(BANK_ON_ITS_WAY)
        if attempt.payment_method_id is not None:
            raise ServiceError("A charge for this invoice is already in progress.")
        if kept is None and reuse is not None and reuse(attempt):
            kept = attempt
            continue
        cancel_at_gateway(attempt, gateway, actor, "another payment was started")
    return kept


def cancel_at_gateway(attempt: Payment, gateway, actor: Actor, why: str) -> None:
    try:
        gateway.cancel_intent(attempt.gateway_intent_id, f"{attempt.idempotency_key}-cancel")
    except GatewayError as exc:
        # It may have been paid (or be settling) meanwhile: book what really happened, never drop it.
        log.warning("could not cancel intent %s: %s", attempt.gateway_intent_id, exc)
        try:
            intent = gateway.retrieve_intent(attempt.gateway_intent_id)
        except GatewayError:
            raise ServiceError("We couldn't reach the payment service. Please try again in a moment.") from exc
        if intent.status != CANCELED:
            db.session.commit()  # keep cancellations done so far; release the locks (apply_intent takes its own)
            apply_intent(intent)
            raise AttemptChanged("This invoice's payment status just changed. Reload the page to see it.") from exc
        # already cancelled at the gateway (by another path): say so here too, and go on
    attempt.status = "canceled"
    subject = ("invoice", attempt.invoice_id) if attempt.invoice_id else ("client", attempt.client_id)
    record_event("payment.canceled", subject[0], subject[1], actor, data={"payment_id": attempt.id, "why": why})


def still_payable(payment: Payment) -> None:
    """Re-check, just before a payer confirms, that this attempt still stands: it is open, and its
    invoices are due exactly what it would charge. Raises ServiceError (nothing is charged)."""
    invoices = credits.lock_invoices(targets(payment))
    fresh = locks.payment(payment.id)
    try:
        if fresh is None or fresh.status != "pending":
            if fresh is not None and fresh.status == "succeeded":
                raise ServiceError("This invoice is paid. Thank you!")
            raise ServiceError("This payment was replaced by another one. Reload the page and pay again.")
        if payment.invoice_id is not None:
            refuse_unpayable(invoices[0])
        due = sum(inv.amount_due for inv in invoices if inv.status in states.PAYABLE)
        if due != fresh.amount:
            raise ServiceError("The amount due changed since this page was opened. Reload the page to see it.")
    finally:
        db.session.rollback()  # release the locks: nothing was written


def recheck(payment_id: int, *, invoice_id: int | None = None, client_id: int | None = None) -> None:
    """The browser's last word before Stripe.js confirms: the attempt (of this invoice, or of this
    client) still stands. NotFound for someone else's payment; ServiceError when it no longer does."""
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.gateway is None or (invoice_id is not None and payment.invoice_id != invoice_id) \
            or (client_id is not None and payment.client_id != client_id):
        raise NotFound("No such payment.")
    still_payable(payment)

""""Pay all open invoices" (client portal): one payment for every invoice due in a currency, oldest
first, through the gateway's form or the client's default saved method.
"""
from __future__ import annotations

import logging

from sqlalchemy import func, select

from portal import clock
from portal.billing import states
from portal.extensions import db
from portal.gateways import get_gateway
from portal.gateways.base import (
    OPEN_STATUSES,
    GatewayError,
    Intent,
)
from portal.models import Invoice, Payment
from portal.services import credits, locks, payment_methods
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor, commit, record_event
from portal.services.payments.attempts import clear_the_way
from portal.services.payments.checkout import (
    confirm_in_sandbox,
    payment_state,
    typed_number,
)
from portal.services.payments.outcomes import apply_intent, refresh_from_gateway

log = logging.getLogger(__name__)

# "Pay all open invoices" (client portal) ----------------------------------------------------------

def busy_invoice_ids(client_id: int) -> set[int]:
    """Invoices a bank payment (their own or a "pay all") is already on its way for: not offered again."""
    busy: set[int] = set()
    for invoice_id, invoice_ids in db.session.execute(
            select(Payment.invoice_id, Payment.invoice_ids).where(Payment.client_id == client_id,
                                                                  Payment.status == "processing")):
        busy.update([invoice_id] if invoice_id is not None else (invoice_ids or []))
    return busy


def payable_invoices(client_id: int, currency: str | None = None) -> list[Invoice]:
    """The client's invoices that take a payment now (amount due > 0), oldest first."""

    query = select(Invoice).where(Invoice.client_id == client_id, Invoice.status.in_(states.PAYABLE),
                                  Invoice.amount_due > 0)
    if currency is not None:
        query = query.where(Invoice.currency == currency)
    busy = busy_invoice_ids(client_id)
    return sorted((inv for inv in db.session.scalars(query) if inv.id not in busy), key=credits.oldest_first_key)


def _quote(invoices: list[Invoice]) -> str:
    """What the payer was shown (each invoice and its amount due); paying checks it still holds."""
    return ",".join(f"{inv.id}:{inv.amount_due}" for inv in invoices)


def pay_all_summary(client_id: int) -> dict | None:
    """What the portal's "Pay all open invoices" offers: one group per currency (None: nothing is due)."""
    groups: dict[str, list[Invoice]] = {}
    for invoice in payable_invoices(client_id):
        groups.setdefault(invoice.currency, []).append(invoice)
    if not groups:
        return None
    return {"groups": [{"currency": currency, "invoices": found, "count": len(found),
                        "total": sum(inv.amount_due for inv in found)}
                       for currency, found in sorted(groups.items())]}


def _normal_currency(currency: str | None) -> str:
    return (currency or "").strip().upper()[:3]


def pay_all_page(client_id: int, currency: str) -> dict:
    """The "pay all" page: the invoices it pays (oldest first) with their amounts, the total, and
    how it can be paid (the gateway's form, or the client's default saved method)."""

    currency = _normal_currency(currency)
    invoices = payable_invoices(client_id, currency) if currency else []
    gateway = get_gateway()
    return {"currency": currency, "invoices": invoices, "total": sum(inv.amount_due for inv in invoices),
            "quote": _quote(invoices), "gateway": gateway.name, "test_mode": bool(gateway.test_mode),
            "methods": payment_methods.methods_for(currency) if currency else [],
            "saved_method": payment_methods.usable_method(client_id, currency) if invoices else None}


def _pay_all_set(client_id: int, currency: str, quote: str | None) -> list[Invoice]:
    invoices = payable_invoices(client_id, currency)
    if not invoices:
        db.session.rollback()  # release the client's lock
        raise ServiceError(f"Nothing is due in {currency}. Thank you!")
    if quote is not None and quote != _quote(invoices):
        db.session.rollback()
        raise ServiceError("The invoices to pay changed since this page was opened. "
                           "Check the new total, then pay again.")
    return invoices


def _pay_all_key(client_id: int) -> str:
    """``client-<id>-payall-<n>``: n counts the client's "pay all" attempts (under the client's lock)."""
    n = db.session.scalar(select(func.count()).select_from(Payment).where(
        Payment.client_id == client_id, Payment.invoice_id.is_(None), Payment.gateway.is_not(None))) + 1
    return f"client-{client_id}-payall-{n}"


def _pay_all_metadata(client_id: int, invoices: list[Invoice]) -> dict[str, str]:
    return {"client_id": str(client_id), "pay_all": "1",
            "invoices": ", ".join(inv.number or str(inv.id) for inv in invoices)[:450]}


def _pay_all_payment(client_id: int, invoices: list[Invoice], currency: str, intent: Intent, key: str,
                     gateway_name: str, actor: Actor, **extra) -> Payment:
    payment = Payment(
        invoice_id=None, invoice_ids=[inv.id for inv in invoices], client_id=client_id,
        amount=sum(inv.amount_due for inv in invoices), currency=currency, method=extra.pop("method", "card"),
        status="pending", gateway=gateway_name, gateway_intent_id=intent.id, idempotency_key=key,
        created_at=clock.now(), **extra,
    )
    db.session.add(payment)
    db.session.flush()
    record_event("payment.started", "client", client_id, actor,
                 data={"payment_id": payment.id, "amount": payment.amount, "currency": currency,
                       "invoice_ids": payment.invoice_ids, "gateway": gateway_name, "pay_all": True})
    return payment


def _lock_pay_all(client_id: int, currency: str, quote: str | None) -> list[Invoice]:
    """The usual lock order for "pay all": the client's payable invoices in ``currency`` (id order),
    then the client row. Returns the invoices to pay, oldest first (ServiceError: nothing, or not
    what the payer was shown)."""
    candidates = db.session.scalars(select(Invoice.id).where(
        Invoice.client_id == client_id, Invoice.currency == currency, Invoice.status.in_(states.PAYABLE),
        Invoice.amount_due > 0)).all()
    credits.lock_invoices(list(candidates))
    locks.client(client_id)
    invoices = _pay_all_set(client_id, currency, quote)
    if not {inv.id for inv in invoices} <= set(candidates):  # one was finalized this very moment
        db.session.rollback()
        raise ServiceError("The invoices to pay changed since this page was opened. "
                           "Check the new total, then pay again.")
    return invoices


def start_pay_all(client_id: int, currency: str, actor: Actor, quote: str | None = None) -> Payment:
    """The client's open "pay all" attempt for ``currency``, created if there is none: one payment
    for every invoice due in that currency, oldest first. Reused while the invoices and their amounts
    are the same (two tabs, a double click); any other open attempt on those invoices (a guest link,
    a stale "pay all") is cancelled first. ``quote`` (from the page) refuses to charge a set of
    invoices the payer was not shown."""
    currency = _normal_currency(currency)
    invoices = _lock_pay_all(client_id, currency, quote)
    ids = [inv.id for inv in invoices]
    total = sum(inv.amount_due for inv in invoices)
    try:
        open_attempt = clear_the_way(
            sorted(invoices, key=lambda inv: inv.id), actor,
            reuse=lambda p: (p.invoice_id is None and p.currency == currency and p.payment_method_id is None
                             and p.amount == total and list(p.invoice_ids or []) == ids))
    except ServiceError:
        db.session.rollback()
        raise
    if open_attempt is not None:
        commit()  # release the locks
        return open_attempt
    gateway = get_gateway()
    key = _pay_all_key(client_id)
    try:
        intent = gateway.create_intent(total, currency, key, _pay_all_metadata(client_id, invoices),
                                       payment_methods.methods_for(currency))
    except GatewayError as exc:
        db.session.rollback()
        raise ServiceError("We couldn't start the payment. Please try again in a moment.") from exc
    payment = _pay_all_payment(client_id, invoices, currency, intent, key, gateway.name, actor)
    commit()
    return payment


def pay_all(client_id: int, currency: str, actor: Actor, method: str = "card", number: str = "",
            quote: str | None = None) -> dict:
    """The "pay all" page's Pay. The sandbox confirms here and now (``payment`` is then final or
    processing); Stripe answers the Payment Element's bootstrap (``client_secret``)."""
    currency = _normal_currency(currency)
    if get_gateway().name != "sandbox":
        payment = start_pay_all(client_id, currency, actor, quote)
        try:
            intent = get_gateway().retrieve_intent(payment.gateway_intent_id)
        except GatewayError as exc:
            raise ServiceError("We couldn't start the payment. Please try again in a moment.") from exc
        return {"payment": payment, "client_secret": intent.client_secret, "payment_id": payment.id}
    if method not in payment_methods.methods_for(currency):
        raise ServiceError("Choose how you want to pay.", field="method")
    number = typed_number(method, number)
    payment = start_pay_all(client_id, currency, actor, quote)
    payment = confirm_in_sandbox(payment, f"{method}:{number}")
    return {"payment": payment, "client_secret": None, "payment_id": payment.id}


def pay_all_saved(client_id: int, currency: str, actor: Actor, quote: str | None = None) -> dict:
    """Pay all with the client's default saved method, the payer present (``off_session=False``).
    A decline ends that attempt and is raised as a ServiceError with the gateway's reason."""

    currency = _normal_currency(currency)
    invoices = _lock_pay_all(client_id, currency, quote)
    client = locks.client(client_id)
    method = payment_methods.usable_method(client_id, currency)
    try:
        if method is None:
            raise ServiceError("No saved payment method on file.")
        clear_the_way(sorted(invoices, key=lambda inv: inv.id), actor)  # a payer's open attempts: cancelled
    except ServiceError:
        db.session.rollback()
        raise
    gateway = get_gateway()
    key = _pay_all_key(client_id)
    try:
        intent = gateway.charge_saved_method(
            sum(inv.amount_due for inv in invoices), currency, client.gateway_customer_id,
            method.gateway_method_id, key, _pay_all_metadata(client_id, invoices), off_session=False,
            payment_method_type=method.type)
    except GatewayError as exc:
        db.session.rollback()
        raise ServiceError(f"We couldn't charge {payment_methods.method_label(method)}: {exc.message}") from exc
    _pay_all_payment(client_id, invoices, currency, intent, key, gateway.name, actor, method=method.type,
                     payment_method_id=method.id, off_session=False)
    # The charge happened: keep its record whatever comes next (the reconciliation finishes it), and
    # release the client lock so the booking takes its locks in the usual order (invoices, client).
    commit()
    payment = apply_intent(intent, actor)
    if intent.status in OPEN_STATUSES and not intent.error_code:
        # The bank wants the payer to confirm (3-D Secure): not something this button can do.
        try:
            apply_intent(gateway.cancel_intent(intent.id, f"{key}-cancel"), actor)
        except GatewayError:
            log.warning("could not cancel pay-all intent %s needing action", intent.id)
        raise ServiceError("Your bank wants to confirm this payment. Pay with the form below instead.")
    if payment.status == "failed":
        raise ServiceError(f"{payment_methods.method_label(method)} was declined: "
                           f"{payment.failure_message or payment.failure_code}")
    return {"payment": payment, "client_secret": None, "payment_id": payment.id}


def pay_all_outcome(client_id: int, intent_id: str) -> dict:
    """Where Stripe returns after a "pay all": bring that intent's payment up to date (only one of
    this client's "pay all" payments, else NotFound) and say how it went."""
    payment = db.session.scalar(select(Payment).where(Payment.gateway_intent_id == intent_id,
                                                      Payment.client_id == client_id,
                                                      Payment.invoice_id.is_(None)))
    if payment is None:
        raise NotFound("No such payment.")
    payment = refresh_from_gateway(payment)
    return {"state": payment_state(payment), "payment": payment}

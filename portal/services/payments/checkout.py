"""Paying one invoice online (the guest page /pay/<token> and the portal's Pay): the attempt
(``start_payment``, idempotency key ``invoice-<id>-attempt-<n>``), the sandbox's server-side
confirmation, Stripe's Payment Element bootstrap, the return page's outcome.

Paying the first invoice of a self-checkout subscription (R1) also saves the method it is paid with
for the subscription's next cycles (``saves_method``): the intent is made on the client's gateway
customer with ``save_method`` (Stripe's ``setup_future_usage=off_session``), and ``apply_intent``
stores the method the succeeded intent saved as the client's default.
"""
from __future__ import annotations

import hashlib
import re

from sqlalchemy import func, select

from portal import clock
from portal.billing import states
from portal.extensions import db
from portal.gateways import get_gateway
from portal.gateways.base import (
    GatewayError,
)
from portal.models import Invoice, Payment, Subscription
from portal.services import locks, payment_methods
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor, commit, record_event
from portal.services.payments.attempts import (
    AttemptChanged,
    clear_the_way,
    refuse_unpayable,
    still_payable,
)
from portal.services.payments.outcomes import apply_intent, refresh_from_gateway

GUEST = Actor("guest", None, "payer")


def saves_method(invoice: Invoice) -> bool:
    """Whether paying ``invoice`` saves the method for later off-session charges (R1 self-checkout:
    "that card is saved for the next cycles"): an invoice of a subscription the client started
    themselves with its autopay on, when it is the first invoice the checkout waits for, or when the
    client has no saved method that autopay could charge (the first invoice after a trial)."""
    if invoice.subscription_id is None:
        return False
    sub = db.session.get(Subscription, invoice.subscription_id)
    if sub is None or not sub.self_checkout or sub.autopay is not True:
        return False
    if sub.status == "incomplete" and sub.held_invoice_id == invoice.id:
        return True
    return payment_methods.usable_method(invoice.client_id, invoice.currency) is None


def start_payment(invoice_id: int, actor: Actor = GUEST) -> Payment:
    """The invoice's open payment attempt, created if there is none. Safe to call concurrently, and
    against every other way of paying the invoice (see ``clear_the_way``)."""
    found = db.session.get(Invoice, invoice_id)
    customer_id = None
    if found is not None and saves_method(found):
        # Before the invoice's lock: making the customer commits.
        customer_id = payment_methods.ensure_customer(found.client_id)
    invoice = locks.invoice(invoice_id)
    try:
        refuse_unpayable(invoice)
        open_attempt = clear_the_way(
            [invoice], actor, reuse=lambda p: (p.invoice_id == invoice.id and p.payment_method_id is None
                                               and p.amount == invoice.amount_due))
    except AttemptChanged:
        raise
    except ServiceError:
        db.session.rollback()
        raise
    if open_attempt is not None:
        commit()  # release the lock (and keep any cancellation)
        return open_attempt
    gateway = get_gateway()
    attempt_no = db.session.scalar(select(func.count()).select_from(Payment).where(
        Payment.invoice_id == invoice.id, Payment.gateway.is_not(None))) + 1
    key = f"invoice-{invoice.id}-attempt-{attempt_no}"
    try:
        intent = gateway.create_intent(
            invoice.amount_due, invoice.currency, key,
            {"invoice_id": str(invoice.id), "invoice_number": invoice.number or ""}, payment_methods.methods_for(invoice.currency),
            **({"customer_id": customer_id, "save_method": True} if customer_id else {}),
        )
    except GatewayError as exc:
        db.session.rollback()
        raise ServiceError("We couldn't start the payment. Please try again in a moment.") from exc
    payment = Payment(
        invoice_id=invoice.id, client_id=invoice.client_id, amount=invoice.amount_due, currency=invoice.currency,
        method="card", status="pending", gateway=gateway.name, gateway_intent_id=intent.id, idempotency_key=key,
        created_at=clock.now(),
    )
    db.session.add(payment)
    db.session.flush()
    record_event("payment.started", "invoice", invoice.id, actor,
                 data={"payment_id": payment.id, "amount": payment.amount, "gateway": gateway.name})
    commit()
    return payment


def confirm_in_sandbox(payment: Payment, payment_method: str) -> Payment:
    """Sandbox only: confirm on the server what Stripe.js would confirm in the browser. Re-checks
    first that the attempt still stands (``still_payable``)."""
    gateway = get_gateway()
    if not gateway.test_mode or gateway.name != "sandbox":
        raise ServiceError("This payment is confirmed by the card form.")
    still_payable(payment)
    digest = hashlib.sha256(payment_method.encode()).hexdigest()[:12]
    try:
        intent = gateway.confirm_intent(payment.gateway_intent_id, payment_method,
                                        f"{payment.idempotency_key}-confirm-{digest}")
    except GatewayError as exc:
        try:
            payment = apply_intent(gateway.retrieve_intent(payment.gateway_intent_id))
        except GatewayError:
            raise ServiceError("We couldn't reach the payment service. Please try again in a moment.") from exc
        if payment.status == "succeeded":
            # Paid meanwhile (a retry after an interrupted success, another tab): say so plainly.
            raise ServiceError("This invoice is paid. Thank you!") from exc
        if payment.status == "canceled":
            raise ServiceError("This payment was replaced by another one. Reload the page and pay again.") from exc
        raise ServiceError(exc.message, field="payment_method") from exc
    return apply_intent(intent)


_IBAN = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}$")


def luhn_ok(number: str) -> bool:
    digits = [int(d) for d in reversed(number)]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


def typed_number(method: str, number: str | None) -> str:
    """What the payer typed on the sandbox form, checked for its shape before the gateway is asked
    (a mistyped number is a field error: no attempt, no "didn't go through" email)."""
    raw = (number or "")[:64]
    number = "".join(raw.split()).replace("-", "").upper()
    field = "card_number" if method == "card" else "account"
    if not number:
        labels = {"card": "Enter the card number.", "sepa_debit": "Enter your IBAN.",
                  "us_bank_account": "Enter your account number."}
        raise ServiceError(labels[method], field=field)
    if method == "card" and not (number.isascii() and number.isdigit() and 12 <= len(number) <= 19
                                 and luhn_ok(number)):
        raise ServiceError("That card number is not valid. Check it and try again.", field=field)
    if method == "sepa_debit" and not _IBAN.match(number):
        raise ServiceError("That IBAN is not valid. It starts with two letters, like DE89 3704 …", field=field)
    if method == "us_bank_account" and not (number.isascii() and number.isdigit() and 4 <= len(number) <= 17):
        raise ServiceError("Use the account number: 4 to 17 digits.", field=field)
    return number


def checkout_options(invoice: Invoice) -> dict:
    """How this invoice can be paid online here: the gateway's mode and the methods on offer."""
    gateway = get_gateway()
    return {"gateway": gateway.name, "test_mode": bool(gateway.test_mode),
            "methods": payment_methods.methods_for(invoice.currency)}


def pay_in_sandbox(invoice_id: int, method: str, number: str, expiry: str = "") -> Payment:
    """Sandbox only: start (or reuse) the invoice's attempt and confirm it with a test card or account
    (a card's ``expiry``, MM/YY, matters only to a payment that saves the card)."""
    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None:
        raise NotFound("No such invoice.")
    if method not in payment_methods.methods_for(invoice.currency):
        raise ServiceError("Choose how you want to pay.", field="method")
    number = typed_number(method, number)
    payment = start_payment(invoice_id)
    expiry = "".join((expiry or "")[:10].split())
    typed = f"{method}:{number}:{expiry}" if method == "card" and expiry and saves_method(invoice) else f"{method}:{number}"
    return confirm_in_sandbox(payment, typed)


def guest_pay(invoice_id: int, method: str, number: str) -> dict | None:
    """The guest page's "Pay": the sandbox confirms here and now (None: go to the confirmation);
    Stripe answers the Payment Element's bootstrap (the browser then confirms)."""
    if get_gateway().name == "sandbox":
        pay_in_sandbox(invoice_id, method, number)
        return None
    return stripe_checkout(invoice_id)


def stripe_checkout(invoice_id: int) -> dict:
    """The client secret of the invoice's open PaymentIntent, for Stripe's Payment Element."""
    payment = start_payment(invoice_id)
    try:
        intent = get_gateway().retrieve_intent(payment.gateway_intent_id)
    except GatewayError as exc:
        raise ServiceError("We couldn't start the payment. Please try again in a moment.") from exc
    return {"client_secret": intent.client_secret, "payment_id": payment.id}


def payment_outcome(invoice_id: int, intent_id: str | None = None) -> dict:
    """What the confirmation page says. With ``intent_id`` (Stripe's return), first bring that
    intent's payment up to date -- only if it belongs to this invoice, else NotFound."""
    payment = None
    if intent_id:
        payment = db.session.scalar(select(Payment).where(Payment.gateway_intent_id == intent_id,
                                                          Payment.invoice_id == invoice_id))
        if payment is None:
            raise NotFound("No such payment for this invoice.")
        payment = refresh_from_gateway(payment)
    else:
        payment = db.session.scalar(select(Payment).where(Payment.invoice_id == invoice_id,
                                                          Payment.gateway.is_not(None))
                                    .order_by(Payment.id.desc()))
    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None:
        raise NotFound("No such invoice.")
    if (payment is not None and payment.status == "succeeded") or invoice.status == states.PAID:
        state = "paid"
    elif payment is not None and payment.status == "processing":
        state = "processing"
    elif payment is not None and (payment.status == "failed" or payment.failure_code):
        state = "failed"
    else:
        state = "pending"
    return {"state": state, "payment": payment, "invoice": invoice, "test_mode": bool(get_gateway().test_mode)}


def payment_state(payment: Payment) -> str:
    if payment.status == "succeeded":
        return "paid"
    if payment.status == "processing":
        return "processing"
    if payment.status in ("failed", "canceled") or payment.failure_code:
        return "failed"
    return "pending"

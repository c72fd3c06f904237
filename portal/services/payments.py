"""Getting paid through a gateway: attempts, outcomes, webhooks, reconciliation, refunds.

Rules kept here:
- One live attempt per invoice, of whatever kind (guest link, portal, "pay
  all", autopay, staff's "Attempt card"): every path locks the invoices it
  pays (``lock_invoices``, id order) and calls ``clear_the_way`` under those
  locks. A bank payment on its way refuses; a saved-method charge in flight
  refuses; the path's own matching attempt is reused (two tabs, a double
  click); any other open attempt is cancelled at the gateway first. So two
  charges can't both succeed.
- One lock order on every money path: invoices (ascending id), then payment
  rows, then the client row.
- When an invoice stops being payable or its amount due changes, its open
  intents are stale: a job cancels them at the gateway (``cancel_stale``,
  retried; the tick's ``payments`` step sweeps what a lost job missed). A
  success that still arrives for money no longer due is refunded by the
  ``refund_excess`` job (or, by setting, kept as credit); client and staff
  are told.
- ``apply_intent`` is the only way a gateway outcome reaches our books, and it
  is idempotent and one-directional: a succeeded payment never moves back.
- Webhooks are stored once per event id, in the same transaction as their
  effect; a handler error rolls both back and the gateway retries.
- Idempotency keys come from our own ids (``invoice-<id>-attempt-<n>``).
"""
from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime, timedelta

from flask import has_app_context
from sqlalchemy import event, func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal import clock
from portal.billing import states
from portal.billing.invoice_math import amount_due
from portal.billing.money import MoneyError, format_money, to_minor
from portal.extensions import db
from portal.gateways import get_gateway
from portal.gateways.base import (
    CANCELED, PROCESSING, REQUIRES_PAYMENT_METHOD, SUCCEEDED, GatewayError, Intent, WebhookEvent as GatewayEvent,
)
from portal.models import Invoice, Payment, Refund, StaffUser, WebhookEvent
from portal.services import invoices as invoice_service
from portal.services.errors import NotFound, ServiceError
from portal.services.events import SYSTEM, Actor, commit, queue_email, record_event
from portal.services.settings import get_business

log = logging.getLogger(__name__)
GUEST = Actor("guest", None, "payer")
GATEWAY = Actor("system", None, "payment gateway")
RECONCILE_AFTER = timedelta(minutes=10)
ABANDON_AFTER = timedelta(days=1)  # an open intent nobody confirmed in a day is cancelled


def methods_for(currency: str) -> list[str]:
    """The methods enabled in settings that exist for the currency (bank debits are per currency)."""
    business = get_business()
    methods = ["card"] if business.accept_card else []
    if currency == "EUR" and business.accept_sepa_debit:
        methods.append("sepa_debit")
    if currency == "USD" and business.accept_us_bank_account:
        methods.append("us_bank_account")
    return methods


def lock_invoice(invoice_id: int) -> Invoice:
    # populate_existing: a row already in this session must show what the lock holder committed.
    invoice = db.session.scalar(select(Invoice).where(Invoice.id == invoice_id).with_for_update()
                                .execution_options(populate_existing=True))
    if invoice is None:
        raise NotFound("No such invoice.")
    return invoice


_lock_invoice = lock_invoice  # older name, still used by other services


def lock_payment_row(payment_id: int) -> Payment | None:
    return db.session.scalar(select(Payment).where(Payment.id == payment_id).with_for_update()
                             .execution_options(populate_existing=True))


def refuse_unpayable(invoice: Invoice) -> None:
    if invoice.status == states.PAID or (invoice.status in states.PAYABLE and invoice.amount_due <= 0):
        raise ServiceError("This invoice is paid. Thank you!")
    if invoice.status == states.VOID:
        raise ServiceError("This invoice was cancelled and takes no payment.")
    if invoice.status not in states.PAYABLE:
        raise ServiceError("This invoice can't be paid online.")


_refuse_unpayable = refuse_unpayable


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
            return (f"A bank payment of {_money(attempt.amount, attempt.currency)} for this invoice is on its way "
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
        _cancel_at_gateway(attempt, gateway, actor, "another payment was started")
    return kept


def _cancel_at_gateway(attempt: Payment, gateway, actor: Actor, why: str) -> None:
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


def start_payment(invoice_id: int, actor: Actor = GUEST) -> Payment:
    """The invoice's open payment attempt, created if there is none. Safe to call concurrently, and
    against every other way of paying the invoice (see ``clear_the_way``)."""
    invoice = lock_invoice(invoice_id)
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
            {"invoice_id": str(invoice.id), "invoice_number": invoice.number or ""}, methods_for(invoice.currency),
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


def still_payable(payment: Payment) -> None:
    """Re-check, just before a payer confirms, that this attempt still stands: it is open, and its
    invoices are due exactly what it would charge. Raises ServiceError (nothing is charged)."""
    invoices = lock_invoices(targets(payment))
    fresh = lock_payment_row(payment.id)
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


def lock_invoices(invoice_ids: list[int]) -> list[Invoice]:
    from portal.services import credits

    return credits.lock_invoices(invoice_ids)


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


def apply_intent(intent: Intent, actor: Actor = GATEWAY) -> Payment:
    """Bring our payment in line with the gateway's view of the intent. Idempotent; never backwards.

    Locks in the usual order: the payment's invoices, then the payment row (then the client)."""
    found = db.session.execute(select(Payment.id, Payment.invoice_id, Payment.invoice_ids)
                               .where(Payment.gateway_intent_id == intent.id)).first()
    if found is None:
        raise NotFound(f"no payment for intent {intent.id}")
    invoices = lock_invoices([found.invoice_id] if found.invoice_id is not None else list(found.invoice_ids or []))
    payment = lock_payment_row(found.id)
    before = payment.status
    if payment.status in ("succeeded", "canceled", "failed") and not (
            payment.status in ("failed", "canceled") and intent.status == SUCCEEDED):
        db.session.commit()
        return payment  # final: duplicates and late events change nothing
    if intent.payment_method_type:
        payment.method = intent.payment_method_type
    if intent.status == SUCCEEDED:
        _succeed(payment, actor, invoices)
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
            _notify_failure(payment, actor)
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
    from portal.services import credits

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
        _receipt(invoices[0], payment, invoices)


def _late_excess(payment: Payment, invoices: list[Invoice], actor: Actor, business) -> None:
    """A gateway success for money no longer due (the page was left open while the invoice was paid
    another way; two payers at once). Refund it (the job does, with retries) or keep it as credit."""
    excess = _money(payment.credited_amount, payment.currency)
    numbers = ", ".join(inv.number for inv in invoices if inv.number) or "your invoice"
    subject = ("invoice", payment.invoice_id) if payment.invoice_id else ("client", payment.client_id)
    record_event("payment.excess", subject[0], subject[1], actor,
                 data={"payment_id": payment.id, "excess": payment.credited_amount,
                       "action": "refund" if business.refund_late_payments else "credit"})
    if business.refund_late_payments:
        payment.excess_state = "refund_due"
        if invoices:
            _staff_email(invoices[0], f"Paid twice: {numbers} ({excess} will be refunded)",
                         f"{excess} arrived for {numbers} ({invoices[0].client.name}) after it was already "
                         f"settled. It is being refunded automatically to the payer's {payment.method_label}.")
        return
    payment.excess_state = "credited"
    if invoices:
        _client_email(invoices[0], "payment_receipt",
                      f"\n\nWe received {excess} for {numbers} after it had already been settled. "
                      f"Nothing was lost: {excess} was added to your credit balance and will go towards "
                      f"your next invoice. Ask us if you would rather have it refunded.",
                      payment, "View the invoice")
        _staff_email(invoices[0], f"Paid twice: {numbers} ({excess} kept as credit)",
                     f"{excess} arrived for {numbers} ({invoices[0].client.name}) after it was already "
                     f"settled. It was added to the client's credit balance (setting: keep late payments "
                     f"as credit).")


def enqueue_job(name: str, *args, job_id: str) -> None:
    """Hand a payments job to RQ with retries; if Redis is down, the tick's sweep catches up."""
    from redis.exceptions import RedisError
    from rq import Retry

    from portal.queues import queue

    try:
        queue().enqueue(name, *args, job_id=job_id, retry=Retry(max=5, interval=[10, 30, 60, 300, 900]),
                        result_ttl=3600, failure_ttl=7 * 24 * 3600)
    except RedisError as exc:
        log.warning("could not enqueue %s%s: %s (the tick will retry)", name, args, exc)


def _money(amount: int, currency: str) -> str:
    return format_money(amount, currency, get_business().locale)


def _client_email(invoice: Invoice, key: str, extra: str, payment: Payment, label: str) -> None:
    """Email the invoice's addressees, with a fresh link to the invoice page (status, PDF, pay)."""
    from portal.services import email_templates
    from portal.services.links import external_url

    business = get_business()
    raw = invoice_service.issue_guest_token(invoice)
    link = external_url("pay.invoice", token=raw)
    for contact in [c for c in invoice.client.contacts if c.receives_invoices]:
        variables = invoice_service.email_variables(invoice, contact.name, link)
        subject, body = email_templates.render(key, variables)
        queue_email(contact.email, "templated",
                    {"business": business, "subject": subject, "body": body + extra, "link": link, "label": label},
                    subject_type="invoice", subject_id=invoice.id, redact=[raw])


def _staff_email(invoice: Invoice, subject: str, body: str) -> None:
    business = get_business()
    owners = db.session.scalars(select(StaffUser).where(StaffUser.role == "owner", StaffUser.active.is_(True)))
    for owner in owners:
        queue_email(owner.email, "templated",
                    {"business": business, "subject": subject, "body": body, "link": None, "label": None},
                    subject_type="invoice", subject_id=invoice.id)


def receipt_lines(payment: Payment) -> list[str]:
    """What a receipt says about where the money went: each invoice paid, and any credit kept."""
    from portal.services import credits

    lines = [f"{invoice.number}: {_money(row.amount, payment.currency)}"
             for row, invoice in credits.payment_allocations(payment.id)]
    if payment.credited_amount:
        lines.append(f"Added to your credit balance: {_money(payment.credited_amount, payment.currency)}")
    return lines


def _receipt(invoice: Invoice, payment: Payment, invoices: list[Invoice] | None = None) -> None:
    business = get_business()
    paid = _money(payment.amount, payment.currency)
    numbers = ", ".join(inv.number for inv in (invoices or [invoice]) if inv.number)
    extra = (f"\n\nAmount paid: {paid}\nMethod: {payment.method_label}\n"
             f"Date: {payment.received_on.isoformat()}\nInvoice: {numbers}")
    where = receipt_lines(payment)
    if len(where) > 1 or payment.credited_amount:
        extra += "\n\n" + "\n".join(where)
    if business.notify_payment_receipt:
        _client_email(invoice, "payment_receipt", extra, payment, "View receipt and invoice PDF")
    if business.notify_staff_on_payment:
        _staff_email(invoice, f"Payment received: {numbers} ({paid})",
                     f"{invoice.client.name} paid {paid} on invoice {numbers} by {payment.method_label}.")


def _notify_failure(payment: Payment, actor: Actor) -> None:
    if payment.invoice_id is None:  # "pay all"
        record_event("payment.failed", "client", payment.client_id, actor,
                     data={"payment_id": payment.id, "code": payment.failure_code,
                           "message": payment.failure_message, "invoice_ids": payment.invoice_ids})
        if payment.method not in BANK_METHODS or not payment.invoice_ids:
            return  # a card declined on the page: the payer sees why there and then
        invoice = db.session.get(Invoice, payment.invoice_ids[0])  # a bank debit that bounced later
        _client_email(invoice, "payment_failed", f"\n\nReason: {payment.failure_message or payment.failure_code}",
                      payment, "Pay the invoice")
        return
    invoice = db.session.get(Invoice, payment.invoice_id)
    record_event("invoice.payment_failed", "invoice", invoice.id, actor,
                 data={"payment_id": payment.id, "code": payment.failure_code, "message": payment.failure_message})
    _client_email(invoice, "payment_failed", f"\n\nReason: {payment.failure_message or payment.failure_code}",
                  payment, "Pay the invoice")
    if get_business().notify_staff_on_payment:
        _staff_email(invoice, f"Payment failed: {invoice.number}",
                     f"A payment of {_money(payment.amount, payment.currency)} for invoice {invoice.number} "
                     f"({invoice.client.name}) failed: {payment.failure_message or payment.failure_code}.")


# Webhooks and reconciliation ---------------------------------------------------------------------

HANDLED = {"payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.processing",
           "payment_intent.canceled"}


def handle_webhook(event: GatewayEvent, gateway_name: str = "stripe") -> str:
    """Store the event once and apply it, in one transaction. Returns what happened."""
    row = WebhookEvent(gateway=gateway_name, event_id=event.id, type=event.type, payload=event.object,
                       received_at=clock.now())
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return "duplicate"
    if event.type not in HANDLED:
        commit()
        return "ignored"
    intent_id = event.object.get("id")
    if not db.session.scalar(select(Payment.id).where(Payment.gateway_intent_id == intent_id)):
        commit()
        return "unknown intent"
    # Ask the gateway for the intent's current state: late or out-of-order events then do no harm.
    intent = get_gateway().retrieve_intent(intent_id)
    apply_intent(intent)  # commits the event row with its effect
    return "applied"


def reconcile(at: datetime) -> int:
    """The tick's ``payments`` step. Ask the gateway about payments still pending or processing
    after a while (lost webhooks heal); cancel open intents that went stale (a lost
    ``cancel_stale`` job); give back late payments whose refund job was lost."""
    # Bank debits clear over days: always asked. An open card attempt is asked for its first day;
    # after that it counts as abandoned and ``cancel_stale`` cancels it (no endless polling).
    stale = db.session.scalars(
        select(Payment).where(Payment.gateway.is_not(None), Payment.created_at < at - RECONCILE_AFTER,
                              (Payment.status == "processing")
                              | ((Payment.status == "pending") & (Payment.created_at >= at - ABANDON_AFTER))
                              ).order_by(Payment.id).limit(500)
    ).all()
    changed = 0
    gateway = get_gateway()
    for payment in stale:
        try:
            intent = gateway.retrieve_intent(payment.gateway_intent_id)
        except GatewayError as exc:
            log.warning("reconcile: could not retrieve %s: %s", payment.gateway_intent_id, exc)
            continue
        before = payment.status
        with clock.frozen(at):
            after = apply_intent(intent).status
        changed += after != before
    changed += cancel_stale(at=at)
    for payment_id in db.session.scalars(select(Payment.id).where(Payment.excess_state == "refund_due")
                                         .order_by(Payment.id).limit(100)).all():
        try:
            changed += refund_excess(payment_id) == "refunded"
        except Exception:  # noqa: BLE001 - one payment's trouble must not stop the others
            db.session.rollback()
            log.exception("reconcile: refund of late payment %s failed; will retry", payment_id)
    return changed


# Stale intents and late payments ------------------------------------------------------------------

def _is_stale(payment: Payment, invoices: dict[int, Invoice]) -> bool:
    """An open attempt no longer matches what is due: an invoice was paid, cancelled or written off,
    or its amount due changed since the intent was made."""
    mine = [invoices.get(i) for i in targets(payment)]
    if any(inv is None or inv.status not in states.PAYABLE or inv.amount_due <= 0 for inv in mine):
        return True
    return sum(inv.amount_due for inv in mine) != payment.amount


@event.listens_for(Session, "after_flush")
def _note_changed_invoices(session, flush_context) -> None:
    """Remember invoices whose status or amount due changed in this transaction: once it commits,
    their open intents may be stale, and the ``cancel_stale`` job looks at them."""
    changed: dict[int, int] = {}
    for obj in session.dirty:
        if isinstance(obj, Invoice) and obj.status != states.DRAFT:
            state = sa_inspect(obj)
            status, due = state.attrs.status.history, state.attrs.amount_due.history
            if (status.has_changes() and states.DRAFT not in status.deleted) or due.has_changes():
                changed[obj.id] = obj.client_id
    if not changed:
        return
    # Only invoices with an open intent need the job (one indexed query; most changes have none).
    open_ones = session.execute(select(Payment.invoice_id, Payment.invoice_ids).where(
        Payment.status == "pending", Payment.gateway.is_not(None),
        Payment.client_id.in_(set(changed.values())))).all()
    touched = {i for invoice_id, ids in open_ones for i in ([invoice_id] if invoice_id else (ids or []))}
    if touched & changed.keys():
        session.info.setdefault("portal_changed_invoices", set()).update(touched & changed.keys())


@event.listens_for(Session, "after_commit")
def _cancel_after_commit(session) -> None:
    changed = session.info.pop("portal_changed_invoices", None)
    if changed and has_app_context():
        ids = sorted(changed)
        enqueue_job("portal.jobs.payments.cancel_stale", ids,
                    job_id="cancel-stale-" + hashlib.sha256(repr((ids, clock.now().isoformat())).encode())
                    .hexdigest()[:20])


@event.listens_for(Session, "after_rollback")
def _forget_changed_invoices(session) -> None:
    session.info.pop("portal_changed_invoices", None)


def _stale_candidates(invoice_ids: list[int] | None, at: datetime | None) -> list[Payment]:
    """Open intents that look stale on an unlocked read (each is checked again under its locks):
    single ones whose invoice is no longer payable or is due another amount (one query), "pay all"
    ones checked here, and, for the tick, any left unconfirmed longer than ``ABANDON_AFTER``."""
    open_ = (Payment.gateway.is_not(None), Payment.status == "pending", Payment.payment_method_id.is_(None))
    singles = select(Payment).join(Invoice, Invoice.id == Payment.invoice_id).where(
        *open_, Invoice.status.not_in(states.PAYABLE) | (Invoice.amount_due != Payment.amount))
    if invoice_ids is not None:
        singles = singles.where(Payment.invoice_id.in_(invoice_ids))
    found = {p.id: p for p in db.session.scalars(singles.order_by(Payment.id).limit(500))}
    wanted = set(invoice_ids) if invoice_ids is not None else None
    pay_alls = [p for p in db.session.scalars(select(Payment).where(*open_, Payment.invoice_id.is_(None))
                                              .order_by(Payment.id).limit(500))
                if wanted is None or wanted & set(p.invoice_ids or [])]
    if pay_alls:
        ids = {i for p in pay_alls for i in targets(p)}
        invoices = {inv.id: inv for inv in db.session.scalars(select(Invoice).where(Invoice.id.in_(ids)))}
        found.update({p.id: p for p in pay_alls if _is_stale(p, invoices)})
    if at is not None:
        found.update({p.id: p for p in db.session.scalars(
            select(Payment).where(*open_, Payment.created_at < at - ABANDON_AFTER).order_by(Payment.id).limit(500))})
    return [found[k] for k in sorted(found)]


def cancel_stale(invoice_ids: list[int] | None = None, at: datetime | None = None) -> int:
    """Cancel at the gateway the open (pending) intents that went stale, for ``invoice_ids`` (the
    job after an invoice changed) or for every open intent (the tick, ``at``: also those abandoned
    for a day). Each one under the usual locks; one the gateway refuses to cancel (paid meanwhile)
    is booked as what it is. Raises GatewayError when the gateway can't be reached, so the job is
    retried."""
    open_ones = _stale_candidates(invoice_ids, at)
    gateway = get_gateway()
    cancelled = 0
    unreachable: GatewayError | None = None
    for candidate in open_ones:
        locked = {inv.id: inv for inv in lock_invoices(targets(candidate))}
        payment = lock_payment_row(candidate.id)
        abandoned = at is not None and payment is not None and payment.created_at < at - ABANDON_AFTER
        if payment is None or payment.status != "pending" or not (abandoned or _is_stale(payment, locked)):
            db.session.rollback()
            continue
        try:
            gateway.cancel_intent(payment.gateway_intent_id, f"{payment.idempotency_key}-cancel")
        except GatewayError as exc:
            try:
                intent = gateway.retrieve_intent(payment.gateway_intent_id)
            except GatewayError as again:
                db.session.rollback()
                unreachable = again if again.retryable or exc.retryable else unreachable
                continue
            if intent.status != CANCELED:  # it succeeded or is settling: book it (a late success is refunded)
                db.session.rollback()
                apply_intent(intent)
                continue
        payment.status = "canceled"
        subject = ("invoice", payment.invoice_id) if payment.invoice_id else ("client", payment.client_id)
        record_event("payment.canceled", subject[0], subject[1], SYSTEM,
                     data={"payment_id": payment.id, "why": "left unconfirmed for a day" if abandoned
                           else "the invoice was settled or changed"})
        commit()
        cancelled += 1
    if unreachable is not None and invoice_ids is not None:
        raise unreachable  # RQ retries the job; the tick sweeps in any case
    return cancelled


def refund_excess(payment_id: int) -> str:
    """Give back the part of a late payment that went to credit (``excess_state == "refund_due"``),
    as much as the credit balance still holds, through the gateway; then tell the client and staff.
    Idempotent (the refund's idempotency key is counted per payment). Raises on a retryable gateway
    failure so the job is retried."""
    found = db.session.get(Payment, payment_id)
    if found is None or found.excess_state != "refund_due":
        db.session.rollback()
        return "nothing to do"
    invoices = lock_invoices(targets(found))
    payment = lock_payment_row(payment_id)
    if payment.excess_state != "refund_due" or payment.status != "succeeded":
        db.session.rollback()
        return "nothing to do"
    from portal.services import credits

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
            _staff_email(invoice, f"Late payment kept as credit: {numbers}",
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
            payment = lock_payment_row(payment_id)
            payment.excess_state = "refund_failed"
            record_event("payment.excess_refund_failed", "client", payment.client_id, SYSTEM,
                         data={"payment_id": payment.id, "message": cause.message})
            if invoice is not None:
                _staff_email(invoice, f"Refund of a late payment failed: {numbers}",
                             f"{_money(amount, payment.currency)} paid late on {numbers} could not be refunded: "
                             f"{cause.message}. It stays on the client's credit balance; refund it by hand.")
            commit()
            return "refund_failed"
        raise
    payment.excess_state = "refunded"
    record_event("payment.excess_refunded", "client", payment.client_id, SYSTEM,
                 data={"payment_id": payment.id, "refund_id": row.id, "amount": amount})
    if invoice is not None:
        refunded = _money(amount, payment.currency)
        _client_email(invoice, "payment_receipt",
                      f"\n\nWe received a payment of {_money(payment.amount, payment.currency)} for {numbers} "
                      f"after it had already been settled, so you were not charged twice: we refunded "
                      f"{refunded} to your {payment.method_label}. Depending on your bank it shows "
                      f"within 5 to 10 business days.",
                      payment, "View the invoice")
        _staff_email(invoice, f"Late payment refunded: {numbers} ({refunded})",
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
    from portal.models import PaymentAllocation

    found = db.session.get(Payment, payment_id)
    if found is not None:  # the usual lock order: the invoice first, then the payment
        target = invoice_id or found.invoice_id or db.session.scalar(
            select(PaymentAllocation.invoice_id).where(PaymentAllocation.payment_id == found.id)
            .order_by(PaymentAllocation.id.desc()).limit(1))
        if target is not None:
            lock_invoice(target)
    payment = _lock_payment(payment_id)
    amount = _refund_amount(payment, amount_text)
    row = refund_money(payment, amount, reason, actor, invoice_id)
    if row.invoice_id is not None:
        invoice = _lock_invoice(row.invoice_id)
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


def _lock_payment(payment_id: int) -> Payment:
    payment = db.session.scalar(select(Payment).where(Payment.id == payment_id).with_for_update()
                                .execution_options(populate_existing=True))
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
    from portal.models import PaymentAllocation
    from portal.services import credits

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
    from portal.services import credits

    # Lock order as everywhere else: invoice, payment (both taken by the caller), then client -- the
    # client lock serialises every spend of the credit balance, so a refund and an "apply credit"
    # can't both use it.
    from portal.models import PaymentAllocation

    target_id = invoice_id or payment.invoice_id or db.session.scalar(
        select(PaymentAllocation.invoice_id).where(PaymentAllocation.payment_id == payment.id)
        .order_by(PaymentAllocation.id.desc()).limit(1))
    if target_id is not None:
        _lock_invoice(target_id)
    credits.lock_client(payment.client_id)
    room = refundable(payment, invoice_id)
    from_credit = min(amount, room["credit"]) if credit_first else 0
    from_invoice = amount - from_credit
    if from_invoice > room["invoice"]:
        most = room["total"] if credit_first else room["invoice"]
        db.session.rollback()
        raise ServiceError(f"At most {_money(most, payment.currency)} of this payment can be refunded.",
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
    invoice = _lock_invoice(target) if target else None
    if invoice is not None:
        invoice.amount_paid -= from_invoice
        invoice.amount_due = amount_due(invoice.total, invoice.amount_paid, invoice.credit_applied,
                                        invoice.credit_noted)
        record_event("invoice.refunded", "invoice", invoice.id, actor,
                     data={"payment_id": payment.id, "amount": amount, "from_credit": from_credit,
                           "reason": row.reason, "gateway": payment.gateway})
    if notify:  # a credit note sends its own email, with its PDF
        _refund_email(payment, row, invoice)
    return row


def _refund_email(payment: Payment, row: Refund, invoice: Invoice | None) -> None:
    from portal.models import Client

    business = get_business()
    about = f" for invoice {invoice.number}" if invoice is not None else ""
    text = (f"We refunded {_money(row.amount, payment.currency)} of your payment{about}."
            + (f"\n\nReason: {row.reason}" if row.reason else ""))
    client = db.session.get(Client, payment.client_id)
    for contact in [c for c in client.contacts if c.receives_invoices]:
        queue_email(contact.email, "templated",
                    {"business": business, "subject": f"Refund{about}",
                     "body": f"Hello {contact.name},\n\n{text}", "link": None, "label": None},
                    subject_type="invoice" if invoice is not None else "client",
                    subject_id=invoice.id if invoice is not None else client.id)


def invoice_payments(invoice_id: int) -> list[Payment]:
    """The invoice's own payments (attempts included) and "pay all" payments that paid part of it."""
    from portal.models import PaymentAllocation

    shared = select(PaymentAllocation.payment_id).where(PaymentAllocation.invoice_id == invoice_id)
    return list(db.session.scalars(select(Payment).where((Payment.invoice_id == invoice_id) | Payment.id.in_(shared))
                                   .order_by(Payment.id)))


__all__ = ["apply_intent", "confirm_in_sandbox", "handle_webhook", "methods_for", "reconcile", "refund",
           "start_payment", "SYSTEM"]


# The guest payment page (/pay/<token>) ------------------------------------------------------------
# Added for the guest page (F3 web): what the page offers, the sandbox's server-side confirmation,
# Stripe's Payment Element bootstrap, and the return/confirmation page. Views call these only.

BANK_METHODS = ("sepa_debit", "us_bank_account")


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
            "methods": methods_for(invoice.currency)}


def pay_in_sandbox(invoice_id: int, method: str, number: str) -> Payment:
    """Sandbox only: start (or reuse) the invoice's attempt and confirm it with a test card or account."""
    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None:
        raise NotFound("No such invoice.")
    if method not in methods_for(invoice.currency):
        raise ServiceError("Choose how you want to pay.", field="method")
    number = typed_number(method, number)
    payment = start_payment(invoice_id)
    return confirm_in_sandbox(payment, f"{method}:{number}")


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
        try:
            intent = get_gateway().retrieve_intent(intent_id)
        except GatewayError:
            intent = None  # the webhook or the reconciliation will bring the news
        already_told = (intent is not None and intent.status == REQUIRES_PAYMENT_METHOD
                        and payment.failure_code == intent.error_code)
        if intent is not None and not already_told:  # a reload does not send a second failure notice
            payment = apply_intent(intent)
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


def refund_invoice_payment(invoice_id: int, payment_id: int, amount_text: str, reason: str, actor: Actor) -> Refund:
    """The staff invoice page's refund: the payment must belong to that invoice."""
    if payment_id not in {payment.id for payment in invoice_payments(invoice_id)}:
        raise NotFound("No such payment on this invoice.")
    return refund(payment_id, amount_text, reason, actor, invoice_id=invoice_id)


# The client portal's payment history (/portal/payments) ------------------------------------------
# Added for F4 (client portal): read-only, scoped to one client.

PORTAL_HISTORY_PAGE_SIZE = 20


def client_payment_history(client_id: int, page: int = 1, per_page: int = PORTAL_HISTORY_PAGE_SIZE) -> dict:
    """One page of a client's payments (newest first, with their invoice) and the refunds on them.

    Failed or abandoned gateway attempts that never moved money are left out: only payments that
    succeeded, are processing, or were refunded appear."""
    query = (
        select(Payment)
        .where(Payment.client_id == client_id, Payment.status.in_(("succeeded", "processing")))
        .order_by(Payment.created_at.desc(), Payment.id.desc())
    )
    result = db.paginate(query, page=min(max(int(page or 1), 1), 1_000_000), per_page=per_page, error_out=False)
    invoice_ids = {payment.invoice_id for payment in result.items if payment.invoice_id is not None}
    by_id = ({invoice.id: invoice for invoice in db.session.scalars(select(Invoice).where(Invoice.id.in_(invoice_ids)))}
             if invoice_ids else {})
    rows = [{"payment": payment, "invoice": by_id.get(payment.invoice_id)} for payment in result.items]
    refunds = list(db.session.execute(
        select(Refund, Payment, Invoice)
        .join(Payment, Payment.id == Refund.payment_id)
        .outerjoin(Invoice, Invoice.id == Refund.invoice_id)
        .where(Payment.client_id == client_id, Refund.status != "failed")
        .order_by(Refund.created_at.desc(), Refund.id.desc())
    ))
    return {"pages": result, "payments": rows,
            "refunds": [{"refund": refund, "payment": payment, "invoice": invoice}
                        for refund, payment, invoice in refunds]}


# "Pay all open invoices" (client portal) ----------------------------------------------------------

def _busy_invoice_ids(client_id: int) -> set[int]:
    """Invoices a bank payment (their own or a "pay all") is already on its way for: not offered again."""
    busy: set[int] = set()
    for invoice_id, invoice_ids in db.session.execute(
            select(Payment.invoice_id, Payment.invoice_ids).where(Payment.client_id == client_id,
                                                                  Payment.status == "processing")):
        busy.update([invoice_id] if invoice_id is not None else (invoice_ids or []))
    return busy


def payable_invoices(client_id: int, currency: str | None = None) -> list[Invoice]:
    """The client's invoices that take a payment now (amount due > 0), oldest first."""
    from portal.services import credits

    query = select(Invoice).where(Invoice.client_id == client_id, Invoice.status.in_(states.PAYABLE),
                                  Invoice.amount_due > 0)
    if currency is not None:
        query = query.where(Invoice.currency == currency)
    busy = _busy_invoice_ids(client_id)
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
    from portal.services import autopay

    currency = _normal_currency(currency)
    invoices = payable_invoices(client_id, currency) if currency else []
    gateway = get_gateway()
    return {"currency": currency, "invoices": invoices, "total": sum(inv.amount_due for inv in invoices),
            "quote": _quote(invoices), "gateway": gateway.name, "test_mode": bool(gateway.test_mode),
            "methods": methods_for(currency) if currency else [],
            "saved_method": autopay.usable_method(client_id, currency) if invoices else None}


def _lock_client(client_id: int):
    from portal.models import Client

    client = db.session.scalar(select(Client).where(Client.id == client_id).with_for_update()
                               .execution_options(populate_existing=True))
    if client is None:
        raise NotFound("No such client.")
    return client


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
    lock_invoices(list(candidates))
    _lock_client(client_id)
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
                                       methods_for(currency))
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
    if method not in methods_for(currency):
        raise ServiceError("Choose how you want to pay.", field="method")
    number = typed_number(method, number)
    payment = start_pay_all(client_id, currency, actor, quote)
    payment = confirm_in_sandbox(payment, f"{method}:{number}")
    return {"payment": payment, "client_secret": None, "payment_id": payment.id}


def pay_all_saved(client_id: int, currency: str, actor: Actor, quote: str | None = None) -> dict:
    """Pay all with the client's default saved method, the payer present (``off_session=False``).
    A decline ends that attempt and is raised as a ServiceError with the gateway's reason."""
    from portal.gateways.base import OPEN_STATUSES
    from portal.services import autopay

    currency = _normal_currency(currency)
    invoices = _lock_pay_all(client_id, currency, quote)
    client = _lock_client(client_id)
    method = autopay.usable_method(client_id, currency)
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
        raise ServiceError(f"We couldn't charge {autopay.method_label(method)}: {exc.message}") from exc
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
        raise ServiceError(f"{autopay.method_label(method)} was declined: "
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
    try:
        intent = get_gateway().retrieve_intent(intent_id)
    except GatewayError:
        intent = None  # the webhook or the reconciliation will bring the news
    already_told = (intent is not None and intent.status == REQUIRES_PAYMENT_METHOD
                    and payment.failure_code == intent.error_code)
    if intent is not None and not already_told:
        payment = apply_intent(intent)
    return {"state": payment_state(payment), "payment": payment}


def payment_state(payment: Payment) -> str:
    if payment.status == "succeeded":
        return "paid"
    if payment.status == "processing":
        return "processing"
    if payment.status in ("failed", "canceled") or payment.failure_code:
        return "failed"
    return "pending"


# Receipts (client portal; HTML and PDF) ----------------------------------------------------------

RECEIPT_STATUSES = ("succeeded", "processing")


def client_receipt(client_id: int, payment_id: int) -> dict:
    """The receipt of one of this client's payments that moved money (else NotFound)."""
    payment = db.session.scalar(select(Payment).where(Payment.id == payment_id, Payment.client_id == client_id,
                                                      Payment.status.in_(RECEIPT_STATUSES)))
    if payment is None:
        raise NotFound("No such payment.")
    return receipt(payment)


def receipt(payment: Payment) -> dict:
    """What a receipt shows: who was paid, when, how much and how, each invoice paid and with how
    much, what went to the credit balance, and refunds given on it."""
    from zoneinfo import ZoneInfo

    from portal.models import Client, PaymentMethod
    from portal.services import credits

    business = get_business()
    lines = [{"invoice": invoice, "amount": row.amount} for row, invoice in credits.payment_allocations(payment.id)]
    awaiting: list[Invoice] = []
    if not lines:
        ids = [payment.invoice_id] if payment.invoice_id else list(payment.invoice_ids or [])
        found = list(db.session.scalars(select(Invoice).where(Invoice.id.in_(ids)))) if ids else []
        if payment.status == "succeeded" and payment.invoice_id and found:
            # booked before allocations were kept: all of it (less any credit) went to its invoice
            lines = [{"invoice": found[0], "amount": payment.amount - payment.credited_amount}]
        else:
            awaiting = sorted(found, key=credits.oldest_first_key)  # a bank payment still clearing
    refunds = list(db.session.scalars(select(Refund).where(Refund.payment_id == payment.id,
                                                           Refund.status != "failed")
                                      .order_by(Refund.created_at, Refund.id)))
    saved = db.session.get(PaymentMethod, payment.payment_method_id) if payment.payment_method_id else None
    when = payment.received_on or payment.created_at.astimezone(ZoneInfo(business.timezone)).date()
    return {"payment": payment, "issuer": business, "client": db.session.get(Client, payment.client_id),
            "lines": lines, "awaiting": awaiting, "credited": payment.credited_amount, "refunds": refunds,
            "refunded": sum(r.amount for r in refunds), "saved_method": saved, "paid_on": when,
            "receipt_number": f"R-{payment.id:06d}", "locale": business.locale,
            "brand_color": business.brand_color, "has_logo": business.has_logo}


def receipt_pdf(client_id: int, payment_id: int) -> tuple[bytes, str]:
    """The receipt as a PDF (WeasyPrint, through the same guarded fetcher as invoice PDFs)."""
    from flask import render_template
    from weasyprint import HTML

    from portal.services import pdf

    context = client_receipt(client_id, payment_id)
    html = render_template("pdf/receipt.html", logo_url=pdf.LOGO_URL, **context)
    data = HTML(string=html, base_url=pdf.BASE, url_fetcher=pdf.PortalFetcher()).write_pdf()
    return data, f"receipt-{context['receipt_number']}.pdf"

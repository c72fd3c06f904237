"""Charging saved payment methods: autopay on a schedule, and staff's "Attempt card".

Rules kept here:
- A charge on a saved method is one Payment (``payment_method_id``, ``off_session``) whose outcome
  reaches the books only through ``payments.apply_intent``: a success pays the invoice and sends the
  receipt; a decline records the reason, ends the attempt (``failed``) and sends ``payment_failed``.
- One live attempt per invoice, whatever its kind (``payments.clear_the_way``, under the invoice's row
  lock): a bank payment on its way or a saved-method charge in flight refuses another; a payer's
  unconfirmed browser attempt (single or "pay all") is cancelled first, so two charges can't both succeed.
- Autopay claims an invoice with a conditional UPDATE (``autopay_attempted_at IS NULL``) in the same
  transaction as its charge: two ticks never charge twice. A crash before the commit leaves the claim
  undone and the next tick charges again with the same idempotency key (``invoice-<id>-autopay``), so
  the gateway gives the first charge back instead of making a second.
- One autopay attempt per invoice; after a decline the client pays by hand (retries are dunning).
- An invoice whose autopay day is already here when it is issued ("on issue") is charged by a job
  queued once finalize's transaction commits (``jobs.autopay.charge``, job id ``autopay-<id>``): the
  same claim and charge as the tick's, for that one invoice. The tick stays the backstop (Redis down,
  a lost job); the claim makes a second job or a tick a no-op.
"""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import has_app_context
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from portal import clock
from portal.billing import states
from portal.extensions import db
from portal.gateways import get_gateway
from portal.gateways.base import GatewayError
from portal.models import Invoice, Payment, Subscription
from portal.queues import enqueue_job
from portal.services import locks
from portal.services.errors import ServiceError
from portal.services.events import Actor, commit, record_event
from portal.services.payment_methods import (
    default_method,
    method_fits,
    method_label,
    usable_method,
)
from portal.services.payments import (
    apply_intent,
    clear_the_way,
    notify_failure,
    refuse_unpayable,
)
from portal.services.settings import get_business

log = logging.getLogger(__name__)
AUTOPAY = Actor("system", None, "autopay")
TIMINGS = ("on_issue", "on_due_date", "days_before_due")
BATCH = 200


# Autopay's day ----------------------------------------------------------------------------------

def autopay_date(timing: str, days_before: int | None, issue_date: date, due_date: date | None) -> date:
    """The day an invoice is charged: its issue date, its due date, or N days before due (never
    before the issue date)."""
    if timing == "on_due_date" and due_date is not None:
        return max(due_date, issue_date)
    if timing == "days_before_due" and due_date is not None:
        return max(issue_date, due_date - timedelta(days=max(int(days_before or 0), 0)))
    return issue_date


def autopay_rules(invoice: Invoice) -> tuple[bool, str, int | None]:
    """(on?, timing, days before due) for an invoice: the business's default, overridden by the
    client's, overridden by the subscription's for an invoice a subscription's cycle made (seed 001)."""
    client = invoice.client
    business = get_business()
    enabled = bool(client.autopay)
    timing = business.autopay_timing
    days = business.autopay_days_before
    layers = [client]
    if invoice.subscription_id is not None:
        subscription = db.session.get(Subscription, invoice.subscription_id)
        if subscription is not None:
            layers.append(subscription)
            if subscription.autopay is not None:
                enabled = subscription.autopay
    for layer in layers:
        if layer.autopay_timing:
            timing = layer.autopay_timing
            if timing == "days_before_due" and layer.autopay_days_before is not None:
                days = layer.autopay_days_before
    return enabled, timing, days


def schedule(invoice: Invoice, actor: Actor) -> None:
    """Called in finalize's transaction: set ``invoice.autopay_on`` when the client has autopay and
    a default saved method that can pay it. No commit."""
    client = invoice.client
    enabled, timing, days = autopay_rules(invoice)
    if not enabled or invoice.status not in states.PAYABLE or invoice.amount_due <= 0:
        return
    method = usable_method(client.id, invoice.currency)
    if method is None:
        return
    business = get_business()
    today = clock.today(business.timezone)
    issued = invoice.issue_date or today
    invoice.autopay_on = autopay_date(timing, days, issued, invoice.due_date)
    record_event("invoice.autopay_scheduled", "invoice", invoice.id, actor,
                 data={"on": invoice.autopay_on.isoformat(), "timing": timing, "payment_method_id": method.id,
                       "method": method_label(method)})
    if invoice.autopay_on <= today:  # due now: charge it once this transaction commits
        db.session.info.setdefault("portal_autopay_now", set()).add(invoice.id)


@event.listens_for(Session, "after_commit")
def _charge_after_commit(session) -> None:
    """Queue the charge of invoices scheduled for today in the transaction that just committed."""
    if session.in_nested_transaction():
        return  # a savepoint released: wait for the real commit
    due_now = session.info.pop("portal_autopay_now", None)
    if due_now and has_app_context():
        for invoice_id in sorted(due_now):
            enqueue_job("portal.jobs.autopay.charge", invoice_id, job_id=f"autopay-{invoice_id}")


@event.listens_for(Session, "after_rollback")
def _forget_due_now(session) -> None:
    if not session.in_nested_transaction():  # a savepoint's rollback leaves the outer transaction's
        session.info.pop("portal_autopay_now", None)


# Charging ---------------------------------------------------------------------------------------

def _clear_the_way(invoice: Invoice, actor: Actor) -> None:
    """Under the invoice's lock: the one-live-attempt rule (``payments.clear_the_way``): refuse if
    money is already on its way; cancel a payer's open browser attempt (it could otherwise succeed too)."""
    clear_the_way([invoice], actor)


def _charge(invoice: Invoice, method, key: str, actor: Actor) -> Payment:
    """Charge the saved method off-session for what the invoice is due (invoice locked by the
    caller); the outcome is booked and committed by ``apply_intent``. GatewayError propagates."""
    gateway = get_gateway()
    intent = gateway.charge_saved_method(
        invoice.amount_due, invoice.currency, invoice.client.gateway_customer_id, method.gateway_method_id, key,
        {"invoice_id": str(invoice.id), "invoice_number": invoice.number or "", "off_session": "1"},
        off_session=True, payment_method_type=method.type,
    )
    payment = Payment(
        invoice_id=invoice.id, client_id=invoice.client_id, amount=invoice.amount_due, currency=invoice.currency,
        method=method.type, status="pending", gateway=gateway.name, gateway_intent_id=intent.id,
        idempotency_key=key, payment_method_id=method.id, off_session=True,
        recorded_by_staff_id=actor.id if actor.kind == "staff" else None, created_at=clock.now(),
    )
    db.session.add(payment)
    db.session.flush()
    record_event("payment.started", "invoice", invoice.id, actor,
                 data={"payment_id": payment.id, "amount": payment.amount, "gateway": gateway.name,
                       "payment_method_id": method.id, "method": method_label(method), "off_session": True})
    return apply_intent(intent, actor)


def _attempt_key(invoice: Invoice) -> str:
    """``invoice-<id>-attempt-<n>``, counted like ``payments.start_payment`` (under the invoice lock)."""
    n = db.session.scalar(select(func.count()).select_from(Payment).where(
        Payment.invoice_id == invoice.id, Payment.gateway.is_not(None))) + 1
    return f"invoice-{invoice.id}-attempt-{n}"


def attempt_card(invoice_id: int, actor: Actor) -> Payment:
    """Staff's "Attempt card for payment": charge the client's default saved method off-session
    for the amount due. Returns the payment (succeeded, processing, or failed with the reason)."""
    invoice = locks.invoice(invoice_id)
    try:
        refuse_unpayable(invoice)
        method = default_method(invoice.client_id)
        if method is None:
            raise ServiceError("No saved payment method on file.")
        if not method_fits(method, invoice.currency):
            raise ServiceError(f"The saved {method_label(method)} can't pay an invoice in {invoice.currency}.")
        _clear_the_way(invoice, actor)
    except ServiceError:
        db.session.rollback()  # release the invoice's lock
        raise
    try:
        return _charge(invoice, method, _attempt_key(invoice), actor)
    except GatewayError as exc:
        db.session.rollback()
        raise ServiceError(f"The charge could not be made: {exc.message}") from exc


# The tick -----------------------------------------------------------------------------------------

def enqueue_due(at: datetime) -> int:
    """The tick's ``autopay`` step: the invoices whose autopay day has come (in the business's
    timezone), each handed to RQ as one job (``jobs.autopay.charge``, job id ``autopay-<id>``,
    retried with backoff). The job's claim makes a repeat a no-op, so a backlog after downtime is
    caught up once. Returns how many jobs were handed over."""
    today = clock.as_utc(at).astimezone(ZoneInfo(get_business().timezone)).date()
    due = db.session.scalars(
        select(Invoice.id).where(*_due(today)).order_by(Invoice.autopay_on, Invoice.id).limit(BATCH)).all()
    db.session.rollback()  # only read
    return sum(enqueue_job("portal.jobs.autopay.charge", invoice_id, clock.as_utc(at).isoformat(),
                           job_id=f"autopay-{invoice_id}") for invoice_id in due)


def charge_now(invoice_id: int, at: datetime | None = None) -> int:
    """The job: claim and charge one invoice whose autopay day has come, as of ``at`` (default now):
    queued by the tick's step, or when an invoice is issued with its autopay day already here.
    1 if it was attempted; 0 if already claimed, paid, not due, or a retryable gateway error undid
    the claim (the next tick enqueues it again, with the same idempotency key)."""
    at = at or clock.now()
    today = clock.as_utc(at).astimezone(ZoneInfo(get_business().timezone)).date()
    return _autopay_one(invoice_id, at, today)


def _due(today: date) -> tuple:
    return (Invoice.status.in_(states.PAYABLE), Invoice.amount_due > 0, Invoice.autopay_on.is_not(None),
            Invoice.autopay_on <= today, Invoice.autopay_attempted_at.is_(None))


def _autopay_one(invoice_id: int, at: datetime, today: date) -> int:
    claimed = db.session.execute(
        update(Invoice).where(Invoice.id == invoice_id, *_due(today))
        .values(autopay_attempted_at=clock.as_utc(at)).execution_options(synchronize_session=False)).rowcount
    if claimed != 1:  # another tick has it, or it was paid or unscheduled meanwhile
        db.session.rollback()
        return 0
    invoice = locks.invoice(invoice_id)
    client = invoice.client
    enabled = autopay_rules(invoice)[0]
    method = usable_method(client.id, invoice.currency) if enabled else None
    if method is None:
        reason = "autopay was turned off" if not enabled else "no saved payment method can pay it"
        invoice.autopay_on = None
        invoice.autopay_attempted_at = None
        record_event("invoice.autopay_skipped", "invoice", invoice.id, AUTOPAY, data={"reason": reason})
        commit()
        return 0
    try:
        _clear_the_way(invoice, AUTOPAY)
    except ServiceError as exc:
        db.session.rollback()  # money already on its way: leave it to that payment
        log.info("autopay skipped invoice %s: %s", invoice_id, exc.message)
        return 0
    key = f"invoice-{invoice.id}-autopay"
    try:
        _charge(invoice, method, key, AUTOPAY)
    except GatewayError as exc:
        db.session.rollback()
        if exc.retryable:  # the claim is undone: the next tick tries again with the same key
            log.warning("autopay for invoice %s will be retried: %s", invoice_id, exc.message)
            return 0
        _refused(invoice_id, method, key, exc, at)
    return 1


def _refused(invoice_id: int, method, key: str, exc: GatewayError, at: datetime) -> None:
    """The gateway refused the charge outright (no intent): claim the invoice, keep a failed
    payment with the reason, and tell the client, who then pays by hand."""
    invoice = locks.invoice(invoice_id)
    if invoice.autopay_attempted_at is not None:
        db.session.rollback()
        return
    invoice.autopay_attempted_at = clock.as_utc(at)
    payment = Payment(
        invoice_id=invoice.id, client_id=invoice.client_id, amount=invoice.amount_due, currency=invoice.currency,
        method=method.type, status="failed", gateway=get_gateway().name, idempotency_key=key,
        payment_method_id=method.id, off_session=True, failure_code=exc.code or "gateway_error",
        failure_message=exc.message, created_at=clock.now(),
    )
    db.session.add(payment)
    db.session.flush()
    notify_failure(payment, AUTOPAY)
    commit()


# What staff see -----------------------------------------------------------------------------------

def invoice_panel(invoice: Invoice) -> dict | None:
    """What the staff invoice page shows about charging a saved method (None: nothing)."""
    if invoice.status == states.DRAFT:
        return None
    payable = invoice.status in states.PAYABLE and invoice.amount_due > 0
    if not payable and invoice.autopay_on is None:
        return None
    method = default_method(invoice.client_id)
    in_flight = db.session.scalar(
        select(Payment).where(Payment.invoice_id == invoice.id, Payment.gateway.is_not(None),
                              Payment.status == "processing").limit(1))
    return {
        "method": method, "label": method_label(method) if method is not None else None,
        "fits": method_fits(method, invoice.currency), "payable": payable,
        "can_attempt": payable and method_fits(method, invoice.currency) and in_flight is None,
        "processing": in_flight is not None, "client_autopay": autopay_rules(invoice)[0],
        "autopay_on": invoice.autopay_on, "autopay_attempted_at": invoice.autopay_attempted_at,
    }


def portal_note(invoice: Invoice) -> dict | None:
    """For the client's invoice page: "will be charged to VISA •••• 4242 on <date>" (None: nothing to say)."""
    if (invoice.autopay_on is None or invoice.autopay_attempted_at is not None or not autopay_rules(invoice)[0]
            or invoice.status not in states.PAYABLE or invoice.amount_due <= 0):
        return None
    method = usable_method(invoice.client_id, invoice.currency)
    if method is None:
        return None
    return {"label": method_label(method), "on": max(invoice.autopay_on, clock.today(get_business().timezone))}

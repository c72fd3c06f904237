"""Stale attempts: when an invoice stops being payable or its amount due changes, its open intents
no longer match. A session hook notices the change and, once it commits, queues ``cancel_stale``
(retried); the tick's sweep catches what a lost job missed, and intents left unconfirmed for a day.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from flask import has_app_context
from sqlalchemy import event, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from portal import clock
from portal.billing import states
from portal.extensions import db
from portal.gateways import get_gateway
from portal.gateways.base import (
    CANCELED,
    GatewayError,
)
from portal.models import Invoice, Payment
from portal.queues import enqueue_job
from portal.services import credits, locks
from portal.services.events import SYSTEM, commit, record_event
from portal.services.payments.attempts import targets
from portal.services.payments.outcomes import apply_intent

ABANDON_AFTER = timedelta(days=1)  # an open intent nobody confirmed in a day is cancelled


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
    if session.in_nested_transaction():
        return  # a savepoint released: wait for the real commit
    changed = session.info.pop("portal_changed_invoices", None)
    if changed and has_app_context():
        ids = sorted(changed)
        enqueue_job("portal.jobs.payments.cancel_stale", ids,
                    job_id="cancel-stale-" + hashlib.sha256(repr((ids, clock.now().isoformat())).encode())
                    .hexdigest()[:20])


@event.listens_for(Session, "after_rollback")
def _forget_changed_invoices(session) -> None:
    if not session.in_nested_transaction():  # a savepoint's rollback leaves the outer transaction's
        session.info.pop("portal_changed_invoices", None)


def stale_candidates(invoice_ids: list[int] | None, at: datetime | None) -> list[Payment]:
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
    unreachable: GatewayError | None = None
    cancelled = 0
    for candidate in stale_candidates(invoice_ids, at):
        try:
            cancelled += cancel_stale_payment(candidate.id, at) == "canceled"
        except GatewayError as exc:
            unreachable = exc
    if unreachable is not None and invoice_ids is not None:
        raise unreachable  # RQ retries the job; the tick sweeps in any case
    return cancelled


def cancel_stale_payment(payment_id: int, at: datetime | None = None) -> str:
    """Cancel one open intent at the gateway if, under its locks, it is still stale (or, with ``at``,
    abandoned for a day). One the gateway refuses to cancel (paid meanwhile) is booked as what it is.
    Raises GatewayError when the gateway can't be reached and the error is retryable."""
    candidate = db.session.get(Payment, payment_id)
    if candidate is None:
        return "nothing to do"
    gateway = get_gateway()
    locked = {inv.id: inv for inv in credits.lock_invoices(targets(candidate))}
    payment = locks.payment(candidate.id)
    abandoned = at is not None and payment is not None and payment.created_at < at - ABANDON_AFTER
    if payment is None or payment.status != "pending" or payment.gateway is None \
            or not (abandoned or _is_stale(payment, locked)):
        db.session.rollback()
        return "nothing to do"
    try:
        gateway.cancel_intent(payment.gateway_intent_id, f"{payment.idempotency_key}-cancel")
    except GatewayError as exc:
        try:
            intent = gateway.retrieve_intent(payment.gateway_intent_id)
        except GatewayError as again:
            db.session.rollback()
            if again.retryable or exc.retryable:
                raise again
            return "unreachable"
        if intent.status != CANCELED:  # it succeeded or is settling: book it (a late success is refunded)
            db.session.rollback()
            apply_intent(intent)
            return "booked"
    payment.status = "canceled"
    subject = ("invoice", payment.invoice_id) if payment.invoice_id else ("client", payment.client_id)
    record_event("payment.canceled", subject[0], subject[1], SYSTEM,
                 data={"payment_id": payment.id, "why": "left unconfirmed for a day" if abandoned
                       else "the invoice was settled or changed"})
    commit()
    return "canceled"

"""Reconciliation with the gateway. The tick decides (``reconcile``: which payments to ask about,
which late payments to refund) and enqueues one job per payment; the jobs do the gateway work.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from portal.extensions import db
from portal.gateways import get_gateway
from portal.gateways.base import GatewayError
from portal.models import Payment
from portal.queues import enqueue_job
from portal.services.payments.outcomes import apply_intent
from portal.services.payments.stale import ABANDON_AFTER, stale_candidates

log = logging.getLogger(__name__)

RECONCILE_AFTER = timedelta(minutes=10)


def due_work(at: datetime) -> dict[str, list[int]]:
    """What the reconciliation has to do as of ``at`` (read only), by job:

    - ``reconcile``: payments still pending or processing after a while, to ask the gateway about
      (lost webhooks heal). Bank debits clear over days: always asked. An open card attempt is asked
      for its first day; after that it counts as abandoned and is cancelled (no endless polling);
    - ``cancel_stale``: open intents that went stale (a lost job) or were abandoned for a day;
    - ``refund_excess``: late payments whose refund job was lost."""
    asked = db.session.scalars(
        select(Payment.id).where(Payment.gateway.is_not(None), Payment.created_at < at - RECONCILE_AFTER,
                                 (Payment.status == "processing")
                                 | ((Payment.status == "pending") & (Payment.created_at >= at - ABANDON_AFTER))
                                 ).order_by(Payment.id).limit(500)).all()
    stale = [p.id for p in stale_candidates(None, at)]
    late = db.session.scalars(select(Payment.id).where(Payment.excess_state == "refund_due")
                              .order_by(Payment.id).limit(100)).all()
    return {"reconcile": list(asked), "cancel_stale": stale, "refund_excess": list(late)}


def reconcile(at: datetime) -> int:
    """The tick's ``payments`` step: decide (``due_work``) and enqueue one job per payment (queue
    ``default``, deterministic ids, retried with backoff); the jobs talk to the gateway. Returns how
    many jobs it handed over."""
    work = due_work(at)
    db.session.rollback()  # only read
    when = at.isoformat()
    queued = sum(enqueue_job("portal.jobs.payments.reconcile", payment_id, when, job_id=f"reconcile-{payment_id}")
                 for payment_id in work["reconcile"])
    queued += sum(enqueue_job("portal.jobs.payments.cancel_stale_payment", payment_id, when,
                              job_id=f"cancel-stale-payment-{payment_id}") for payment_id in work["cancel_stale"])
    queued += sum(enqueue_job("portal.jobs.payments.refund_excess", payment_id, job_id=f"refund-excess-{payment_id}")
                  for payment_id in work["refund_excess"])
    return queued


def reconcile_payment(payment_id: int) -> str:
    """The job: ask the gateway about one payment and book what it says. A retryable GatewayError
    (the gateway unreachable, rate limited) is raised, so RQ retries the job; any other is logged
    and the next tick asks again (a job per minute, never a storm of retries)."""
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.gateway is None or payment.status not in ("pending", "processing"):
        db.session.rollback()
        return "nothing to do"
    try:
        intent = get_gateway().retrieve_intent(payment.gateway_intent_id)
    except GatewayError as exc:
        db.session.rollback()
        if exc.retryable:
            raise
        log.warning("reconcile: could not retrieve %s: %s", payment.gateway_intent_id, exc)
        return "unreachable"
    before = payment.status
    after = apply_intent(intent).status
    return "changed" if after != before else "unchanged"

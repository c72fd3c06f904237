"""Reconciliation with the gateway. The tick decides (``reconcile``: which payments to ask about,
which late payments to refund) and enqueues one job per payment; the jobs do the gateway work.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.gateways import get_gateway
from portal.models import Payment
from portal.queues import enqueue_job
from portal.services.payments.outcomes import apply_intent
from portal.services.payments.stale import ABANDON_AFTER, stale_candidates

log = logging.getLogger(__name__)

RECONCILE_AFTER = timedelta(minutes=10)


def reconcile(at: datetime) -> int:
    """The tick's ``payments`` step: decide, and enqueue one job per payment (queue ``default``,
    deterministic ids, retried with backoff); the jobs talk to the gateway.

    - payments still pending or processing after a while are asked about (lost webhooks heal):
      ``reconcile_payment``. Bank debits clear over days: always asked. An open card attempt is
      asked for its first day; after that it counts as abandoned and is cancelled (no endless polling);
    - open intents that went stale or were abandoned: ``cancel_stale`` (one job per payment);
    - late payments whose refund job was lost: ``refund_excess``.
    Returns how many jobs it handed over."""
    minute = at.strftime("%Y%m%d%H%M")
    asked = db.session.scalars(
        select(Payment.id).where(Payment.gateway.is_not(None), Payment.created_at < at - RECONCILE_AFTER,
                                 (Payment.status == "processing")
                                 | ((Payment.status == "pending") & (Payment.created_at >= at - ABANDON_AFTER))
                                 ).order_by(Payment.id).limit(500)).all()
    queued = sum(enqueue_job("portal.jobs.payments.reconcile", payment_id, at.isoformat(),
                             job_id=f"reconcile-{payment_id}-{minute}") for payment_id in asked)
    stale = [p.id for p in stale_candidates(None, at)]
    queued += sum(enqueue_job("portal.jobs.payments.cancel_stale_payment", payment_id, at.isoformat(),
                              job_id=f"cancel-stale-payment-{payment_id}") for payment_id in stale)
    late = db.session.scalars(select(Payment.id).where(Payment.excess_state == "refund_due")
                              .order_by(Payment.id).limit(100)).all()
    queued += sum(enqueue_job("portal.jobs.payments.refund_excess", payment_id, job_id=f"refund-excess-{payment_id}")
                  for payment_id in late)
    db.session.rollback()  # only read
    return queued


def reconcile_payment(payment_id: int, at: datetime | None = None) -> str:
    """The job: ask the gateway about one payment and book what it says. Raises GatewayError when
    the gateway can't be reached (RQ retries the job)."""
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.gateway is None or payment.status not in ("pending", "processing"):
        db.session.rollback()
        return "nothing to do"
    intent = get_gateway().retrieve_intent(payment.gateway_intent_id)
    before = payment.status
    with clock.frozen(at or clock.now()):
        after = apply_intent(intent).status
    return "changed" if after != before else "unchanged"

"""Recurring-billing jobs (queue ``default``, retried by RQ with backoff; the tick's ``subscriptions``
step enqueues them, one per batch of subscriptions, with an id derived from the batch's subscriptions
and periods)."""
from datetime import datetime

from portal import clock
from portal.jobs import job
from portal.services import subscriptions


@job
def bill_batch(run_id: int, subscription_ids: list[int], at: str) -> dict:
    """Bill the due periods of a batch of subscriptions as of ``at`` (each period once)."""
    moment = datetime.fromisoformat(at)
    with clock.not_before(moment):
        return subscriptions.bill_batch(run_id, subscription_ids, clock.now())

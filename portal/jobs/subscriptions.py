"""Recurring-billing jobs (queue ``default``, retried by RQ with backoff; the tick's ``subscriptions``
step enqueues them, one per batch of subscriptions, with an id derived from the batch's subscriptions
and periods; ``client_cycles`` one per client and billing day, ``client-cycle-<client>-<yyyymmdd>``;
``upcoming_notices`` one per batch of subscriptions and periods)."""
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


@job
def client_cycle(client_id: int, at: str) -> list[int]:
    """Gather a monthly client's open charges for its billing day (once: the day's row is unique)."""
    moment = datetime.fromisoformat(at)
    with clock.not_before(moment):
        return subscriptions.run_cycle(client_id, clock.now())


@job
def upcoming_notices(subscription_ids: list[int], at: str) -> int:
    """The upcoming-invoice notices of a batch of subscriptions (once per period: each is claimed)."""
    moment = datetime.fromisoformat(at)
    with clock.not_before(moment):
        return subscriptions.send_notices(subscription_ids, clock.now())

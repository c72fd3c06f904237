"""The tick: find what is due as of a moment and hand it to the workers.

Runs every minute from ``rq cron`` and on demand with ``flask portal tick
--at``. Each step reads due rows from the database, so a tick after downtime
catches up on the whole backlog, and running it twice does no harm. The tick
only decides: work that calls a gateway or sends mail (autopay charges,
reconciliation, expiring-card notices, deliveries) is enqueued as one RQ job
per invoice, payment or card on the ``default`` queue (``emails`` for mail),
with deterministic job ids and retries; the step returns how many it handed
over. Steps that only update rows (overdue, restrictions) run here.
Later issues add their steps here (overdue invoices, recurring billing,
reminders, dunning); each step takes the moment and returns a count.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from portal import clock
from portal.services import (
    autopay,
    deliveries,
    invoices,
    payment_methods,
    payments,
    restrictions,
    subscriptions,
)

Step = Callable[[datetime], int]
STEPS: list[tuple[str, Step]] = [
    ("overdue", invoices.mark_overdue),
    ("restrictions", restrictions.refresh),
    ("subscriptions", subscriptions.tick_step),
    ("client_cycles", subscriptions.client_cycles_step),
    ("upcoming_notices", subscriptions.upcoming_notices_step),
    ("autopay", autopay.enqueue_due),
    ("payments", payments.reconcile),
    ("expiring_cards", payment_methods.enqueue_expiring),
    ("deliveries", deliveries.sweep),
]


def run_tick(at: datetime | None = None) -> dict[str, int]:
    """Run every step as of ``at`` (default: now). Returns what each did."""
    at = clock.as_utc(at) if at else clock.now()
    with clock.frozen(at):
        return {name: step(at) for name, step in STEPS}

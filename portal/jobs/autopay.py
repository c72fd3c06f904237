"""Autopay jobs (queue ``default``, job id ``autopay-<invoice id>``, retried by RQ with backoff; the
tick's ``autopay`` step enqueues them and is the backstop for a lost one)."""
from datetime import datetime

from portal import clock
from portal.jobs import job
from portal.services import autopay


@job
def charge(invoice_id: int, at: str | None = None) -> int:
    """Charge an invoice whose autopay day has come (once: the claim makes a repeat a no-op)."""
    moment = datetime.fromisoformat(at) if at else None
    with clock.not_before(moment):
        return autopay.charge_now(invoice_id, moment)

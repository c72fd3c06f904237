"""Autopay jobs (queue ``default``, retried by RQ; the tick's ``autopay`` step is the backstop)."""
from portal.jobs import job
from portal.services import autopay


@job
def charge(invoice_id: int) -> int:
    """Charge an invoice issued with autopay due today (once: the claim makes a repeat a no-op)."""
    return autopay.charge_now(invoice_id)

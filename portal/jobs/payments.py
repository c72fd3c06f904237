"""Payment jobs (queue ``default``, retried by RQ; the tick's ``payments`` step sweeps what a lost
job missed)."""
from portal.jobs import job
from portal.services import payments


@job
def cancel_stale(invoice_ids: list[int]) -> int:
    """Cancel the gateway intents made stale by a change to these invoices."""
    return payments.cancel_stale(invoice_ids)


@job
def refund_excess(payment_id: int) -> str:
    """Refund a payment that arrived for an invoice already settled."""
    return payments.refund_excess(payment_id)

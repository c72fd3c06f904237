"""Payment jobs (queue ``default``, deterministic ids, retried by RQ with backoff; the tick's
``payments`` step decides which to enqueue and is the backstop for a lost job)."""
from datetime import datetime

from portal import clock
from portal.jobs import job
from portal.services import payments


def _moment(at: str | None) -> datetime | None:
    return datetime.fromisoformat(at) if at else None


@job
def cancel_stale(invoice_ids: list[int]) -> int:
    """Cancel the gateway intents made stale by a change to these invoices."""
    return payments.cancel_stale(invoice_ids)


@job
def cancel_stale_payment(payment_id: int, at: str | None = None) -> str:
    """Cancel one open intent the tick found stale or abandoned (checked again under its locks)."""
    with clock.not_before(_moment(at)):
        return payments.cancel_stale_payment(payment_id, _moment(at))


@job
def reconcile(payment_id: int, at: str | None = None) -> str:
    """Ask the gateway about one payment still pending or processing, and book what it says."""
    with clock.not_before(_moment(at)):
        return payments.reconcile_payment(payment_id)


@job
def refund_excess(payment_id: int) -> str:
    """Refund a payment that arrived for an invoice already settled."""
    return payments.refund_excess(payment_id)

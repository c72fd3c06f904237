"""Payment-method jobs (queue ``default``, retried by RQ; the tick's ``expiring_cards`` step enqueues them)."""
from datetime import datetime

from portal import clock
from portal.jobs import job
from portal.services import payment_methods


@job
def notify_expiring(method_id: int, at: str) -> bool:
    """Tell a card's client it expires soon (once: the card is claimed with its emails)."""
    moment = datetime.fromisoformat(at)
    with clock.not_before(moment):
        return payment_methods.notify_expiring_card(method_id, moment)

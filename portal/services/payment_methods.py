"""Payment methods saved for a client through the gateway (SetupIntents).

Stub hooks, filled in by the payment-methods work of F4 (issue 5)."""
from __future__ import annotations

from datetime import datetime


def notify_expiring(at: datetime) -> int:
    """The tick's step: the ``payment_method_expiring`` email, once per card. Returns how many went out."""
    return 0


def client_panel(client) -> dict | None:
    """What the staff client page shows about saved methods and autopay. None: nothing."""
    return None


def portal_summary(client_id: int) -> dict | None:
    """What the portal's Billing tab shows about this (None: nothing). Stub for F4."""
    return None

"""Restricting clients who are far behind on payments (settings: ``restrict_overdue_days``).

Stub hooks, filled in by the restriction work of F4 (issue 5)."""
from __future__ import annotations

from datetime import datetime

from portal.services.events import Actor

# What staff may choose to block for a restricted client. Paying is never blocked.
RESTRICTABLE = {
    "new_subscriptions": "Start new subscriptions",
    "payment_methods": "Add or remove payment methods",
    "autopay": "Turn autopay on or off",
    "profile": "Change their portal profile",
}


def lift_if_clear(client_id: int, actor: Actor) -> bool:
    """Called in the transaction of every payment or credit applied: lift the client's restriction
    when no invoice is overdue beyond the limit any more. Returns whether it was lifted."""
    return False


def refresh(at: datetime) -> int:
    """The tick's step: restrict clients with an invoice overdue more than N days. Returns how many changed."""
    return 0


def ensure_allowed(client, action: str) -> None:
    """Raise ServiceError when ``action`` (a RESTRICTABLE key) is blocked for this restricted client."""
    return None

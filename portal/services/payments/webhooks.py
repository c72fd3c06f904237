"""Gateway webhooks: stored once per event id, in the same transaction as their effect; a handler
error rolls both back and the gateway retries. Late or out-of-order events do no harm: the
intent's current state is asked for.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal import clock
from portal.extensions import db
from portal.gateways import get_gateway
from portal.gateways.base import (
    WebhookEvent as GatewayEvent,
)
from portal.models import Payment, WebhookEvent
from portal.services.events import commit
from portal.services.payments.outcomes import apply_intent

# Webhooks and reconciliation ---------------------------------------------------------------------

HANDLED = {"payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.processing",
           "payment_intent.canceled"}


def handle_webhook(event: GatewayEvent, gateway_name: str = "stripe") -> str:
    """Store the event once and apply it, in one transaction. Returns what happened."""
    row = WebhookEvent(gateway=gateway_name, event_id=event.id, type=event.type, payload=event.object,
                       received_at=clock.now())
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return "duplicate"
    if event.type not in HANDLED:
        commit()
        return "ignored"
    intent_id = event.object.get("id")
    if not db.session.scalar(select(Payment.id).where(Payment.gateway_intent_id == intent_id)):
        commit()
        return "unknown intent"
    # Ask the gateway for the intent's current state: late or out-of-order events then do no harm.
    intent = get_gateway().retrieve_intent(intent_id)
    apply_intent(intent)  # commits the event row with its effect
    return "applied"

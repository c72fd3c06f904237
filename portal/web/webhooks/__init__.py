"""Inbound gateway events: POST /webhooks/stripe.

The raw body is verified against the ``Stripe-Signature`` header with the
endpoint secret (``gateways/stripe.py``); anything unsigned, altered, stale or
from the future is a 400 and changes nothing. A verified event goes to
``services.payments.handle_webhook``, which stores it once per event id and
applies it in one transaction. Any other failure answers 500 after a rollback,
so Stripe retries. CSRF does not apply: the signature is the authentication.
"""
from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from portal.extensions import csrf, db
from portal.gateways import get_gateway
from portal.gateways.base import BadSignature
from portal.services import payments

bp = Blueprint("webhooks", __name__)
log = logging.getLogger(__name__)


@bp.post("/webhooks/stripe")
@csrf.exempt
def stripe_webhook():
    try:
        event = get_gateway().parse_webhook(request.get_data(cache=False),
                                            request.headers.get("Stripe-Signature", ""))
    except BadSignature as exc:
        return jsonify(error="bad_signature", message=exc.message), 400
    try:
        result = payments.handle_webhook(event)
    except Exception:  # noqa: BLE001 - any failure: roll back and let Stripe retry
        db.session.rollback()
        log.exception("webhook %s (%s) failed; Stripe will retry", event.id, event.type)
        return jsonify(error="handler_failed", message="The event could not be processed; retry later."), 500
    return jsonify(result=result), 200

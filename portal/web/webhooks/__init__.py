"""Inbound gateway events: POST /webhooks/stripe.

The raw body (at most ``MAX_EVENT_BYTES``, read in bounded chunks whatever the
app's ``MAX_CONTENT_LENGTH``; more is a 413) is verified against the
``Stripe-Signature`` header with the endpoint secret (``gateways/stripe.py``);
anything unsigned, altered, stale or from the future is a 400. A signed body
that is not a well-formed event (not an object, a numeric or over-long id, no
``data.object``, NUL bytes, NaN, deep nesting...) is a 400 as well
(``gateways.base.event_from_json``). Both change and store nothing.

A well-formed event goes to ``services.payments.handle_webhook``, which stores
it once per event id and applies it in one transaction (types we do not handle
are stored and answered 200 "ignored"). If that fails, the transaction is
rolled back and the answer says why: 503 when the database, Redis or the
gateway is unavailable, so Stripe retries; 400 when the database refuses a
value of the body; 500 only for a fault of ours. Every answer is JSON.
CSRF does not apply: the signature is the authentication.
"""
from __future__ import annotations

import logging

import redis.exceptions
from flask import Blueprint, jsonify, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from portal.extensions import csrf, db
from portal.gateways import get_gateway
from portal.gateways.base import MAX_EVENT_BYTES, BadEvent, BadSignature, GatewayError
from portal.services import payments

bp = Blueprint("webhooks", __name__)
log = logging.getLogger(__name__)

_READ_CHUNK = 64 * 1024
# Failures that may pass (the database, Redis or the gateway unavailable, a lost race): Stripe should
# try again later. DataError, a DBAPIError too, is the body's fault and is checked first.
_TRANSIENT = (GatewayError, sa_exc.DBAPIError, sa_exc.TimeoutError,
              redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class _TooLarge(Exception):
    pass


@bp.post("/webhooks/stripe")
@csrf.exempt
def stripe_webhook():
    try:
        return _receive()
    except Exception:  # noqa: BLE001 - the last net: a JSON answer, never Flask's HTML 500
        _rollback()
        log.exception("webhook failed; Stripe will retry")
        return _error(500, "handler_failed", "The event could not be processed; retry later.")


def _receive():
    try:
        payload = _read_body(MAX_EVENT_BYTES)
    except _TooLarge:
        return _error(413, "too_large", f"The body is larger than {MAX_EVENT_BYTES} bytes.")
    except HTTPException as exc:  # the app's MAX_CONTENT_LENGTH, a client that went away...
        status = exc.code or 400
        return _error(status, "too_large" if status == 413 else "bad_request",
                      exc.description or "The body could not be read.")

    gateway = get_gateway()
    try:
        event = gateway.parse_webhook(payload, request.headers.get("Stripe-Signature", ""))
    except BadSignature as exc:
        return _error(400, "bad_signature", exc.message)
    except BadEvent as exc:
        if exc.code == "too_large":
            return _error(413, "too_large", exc.message)
        log.warning("webhook refused: %s", exc.message)
        return _error(400, "invalid_event", exc.message)
    except Exception:  # noqa: BLE001 - the body broke the parser: retrying the same body cannot help
        log.exception("webhook body could not be parsed")
        return _error(400, "invalid_event", "The body is not a well-formed event.")

    try:
        result = payments.handle_webhook(event)
    except Exception as exc:  # noqa: BLE001 - roll back; the answer says whether to retry
        _rollback()
        if isinstance(exc, sa_exc.DataError):
            log.exception("webhook %s (%s): the database refused a value of the event", event.id, event.type)
            return _error(400, "invalid_event", "The event holds a value that cannot be stored.")
        if isinstance(exc, _TRANSIENT):
            log.warning("webhook %s (%s) failed, Stripe will retry: %r", event.id, event.type, exc)
            response, status = _error(503, "unavailable", "The event could not be processed now; retry later.")
            response.headers["Retry-After"] = "60"
            return response, status
        log.exception("webhook %s (%s) failed; Stripe will retry", event.id, event.type)
        return _error(500, "handler_failed", "The event could not be processed; retry later.")
    return jsonify(result=result), 200


def _read_body(limit: int) -> bytes:
    """The raw body, refused as soon as it passes ``limit`` bytes (nothing more is read)."""
    if request.content_length is not None and request.content_length > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    while chunk := request.stream.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _rollback() -> None:
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the database may be the thing that is down
        log.warning("webhook: rollback failed", exc_info=True)


def _error(status: int, error: str, message: str):
    return jsonify(error=error, message=message), status

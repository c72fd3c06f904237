"""The Stripe gateway: PaymentIntents, refunds and signed webhooks through the
official ``stripe`` library.

This is the only module of the portal that imports ``stripe``. It speaks the
interface of :mod:`portal.gateways.base` and hands back plain dataclasses, so
nothing outside this file ever sees a Stripe object or a Stripe exception.

- Every call that changes something (create, confirm, cancel, refund) sends the
  caller's idempotency key, so a retry -- ours, or the library's own automatic
  retry after a timeout or a 5xx -- can never make a second PaymentIntent or
  refund.
- ``api_base`` (``STRIPE_API_BASE``) points the client somewhere other than
  ``https://api.stripe.com``; the tests use it to talk to a Stripe-compatible
  server on loopback.
- Saved methods: a Customer per client, SetupIntents (``usage=off_session``) to save a
  method to it, and off-session charges made by creating a PaymentIntent with
  ``confirm=true``. A declined off-session charge comes back as a 402 ``card_error`` that
  carries the PaymentIntent: it is returned as an Intent with its error, not raised.
- Webhooks are verified by the library over the raw body with the endpoint
  secret and a 300 s tolerance; the library only refuses old timestamps, so
  timestamps more than 300 s in the future are refused here as well. The
  verified body is then parsed and checked by ``base.event_from_json`` (not
  by the library), which raises ``BadEvent`` for anything malformed.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import stripe

from portal.gateways.base import (
    MAX_EVENT_BYTES, BadEvent, BadSignature, GatewayError, Intent, Refund, SavedMethod, SetupIntent, WebhookEvent,
    event_from_json,
)

WEBHOOK_TOLERANCE_SECONDS = 300
# The PaymentIntent's payment method is expanded so we can tell card from bank debit.
_EXPAND = ["payment_method"]
_GENERIC_DECLINE = "generic_decline"
_UNREACHABLE = "The payment provider could not be reached. Please try again in a moment."
_PROVIDER_FAILED = "The payment provider had a problem. Please try again in a moment."


class StripeGateway:
    name = "stripe"

    def __init__(self, secret_key: str, webhook_secret: str | None, api_base: str | None = None,
                 timeout: float = 30.0, max_network_retries: int = 2):
        if not secret_key:
            raise ValueError("StripeGateway needs a secret key (STRIPE_SECRET_KEY)")
        self.webhook_secret = webhook_secret
        self.test_mode = secret_key.startswith(("sk_test_", "rk_test_"))
        self._http = stripe.RequestsClient(timeout=timeout)
        base_addresses: dict[str, str] = {}
        if api_base:
            base_addresses["api"] = api_base.rstrip("/")
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses=base_addresses,  # type: ignore[arg-type]
            max_network_retries=max_network_retries,
            http_client=self._http,
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **kwargs: Any) -> StripeGateway:
        """Build from the portal's settings (``STRIPE_SECRET_KEY``, ``STRIPE_WEBHOOK_SECRET``,
        ``STRIPE_API_BASE``)."""
        # A payer waits on these calls: 10 s per try and one automatic retry (same idempotency key).
        kwargs.setdefault("timeout", float(config.get("STRIPE_TIMEOUT_SECONDS") or 10))
        kwargs.setdefault("max_network_retries", 1)
        return cls(config["STRIPE_SECRET_KEY"], config.get("STRIPE_WEBHOOK_SECRET"),
                   api_base=config.get("STRIPE_API_BASE"), **kwargs)

    def close(self) -> None:
        """Close this thread's pooled HTTP connections."""
        self._http.close()

    # PaymentIntents ---------------------------------------------------------

    def create_intent(self, amount: int, currency: str, idempotency_key: str, metadata: dict[str, str],
                      payment_method_types: list[str], customer_id: str | None = None,
                      save_method: bool = False) -> Intent:
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "metadata": {str(k): str(v) for k, v in metadata.items()},
            "payment_method_types": list(payment_method_types),
        }
        if customer_id:
            params["customer"] = customer_id
        if save_method:
            if not customer_id:
                raise GatewayError("A payment that saves its method needs a customer.", code="parameter_missing")
            # The method the payer confirms with is attached to the customer for off-session charges.
            params["setup_future_usage"] = "off_session"
        with _translated_errors():
            pi = self._client.v1.payment_intents.create(
                params=params, options=_keyed(idempotency_key))  # type: ignore[arg-type]
        return _intent(pi.to_dict())

    def retrieve_intent(self, intent_id: str) -> Intent:
        with _translated_errors():
            pi = self._client.v1.payment_intents.retrieve(
                intent_id, params={"expand": _EXPAND})  # type: ignore[arg-type]
        return _intent(pi.to_dict())

    def confirm_intent(self, intent_id: str, payment_method: str, idempotency_key: str) -> Intent:
        """Confirm with a payment method. A decline raises :class:`GatewayError` whose
        ``code`` is the reason (``card_declined``, ``insufficient_funds``...) and whose
        message can be shown to the payer; the intent stays open for another try and
        ``retrieve_intent`` then shows the same error."""
        with _translated_errors():
            pi = self._client.v1.payment_intents.confirm(
                intent_id, params={"payment_method": payment_method, "expand": _EXPAND},  # type: ignore[arg-type]
                options=_keyed(idempotency_key))
        return _intent(pi.to_dict())

    def cancel_intent(self, intent_id: str, idempotency_key: str) -> Intent:
        with _translated_errors():
            pi = self._client.v1.payment_intents.cancel(
                intent_id, params={"expand": _EXPAND},  # type: ignore[arg-type]
                options=_keyed(idempotency_key))
        return _intent(pi.to_dict())

    # Refunds ----------------------------------------------------------------

    def refund(self, intent_id: str, amount: int, idempotency_key: str) -> Refund:
        with _translated_errors():
            re = self._client.v1.refunds.create(
                params={"payment_intent": intent_id, "amount": amount},  # type: ignore[arg-type]
                options=_keyed(idempotency_key))
        data = re.to_dict()
        return Refund(id=data["id"], intent_id=_id_of(data.get("payment_intent")) or intent_id,
                      amount=int(data["amount"]), currency=str(data["currency"]).upper(),
                      status=str(data.get("status") or "pending"))

    # Customers, saved methods (SetupIntents) and off-session charges -----

    def ensure_customer(self, reference: str, email: str | None, name: str, idempotency_key: str) -> str:
        params: dict[str, Any] = {"name": name, "metadata": {"reference": reference}}
        if email:
            params["email"] = email
        with _translated_errors():
            customer = self._client.v1.customers.create(
                params=params, options=_keyed(idempotency_key))  # type: ignore[arg-type]
        return str(customer.id)

    def create_setup_intent(self, customer_id: str, payment_method_types: list[str], idempotency_key: str,
                            metadata: dict[str, str]) -> SetupIntent:
        params: dict[str, Any] = {
            "customer": customer_id,
            "payment_method_types": list(payment_method_types),
            "usage": "off_session",
            "metadata": {str(k): str(v) for k, v in metadata.items()},
        }
        with _translated_errors():
            seti = self._client.v1.setup_intents.create(
                params=params, options=_keyed(idempotency_key))  # type: ignore[arg-type]
        return _setup_intent(seti.to_dict())

    def retrieve_setup_intent(self, setup_intent_id: str) -> SetupIntent:
        with _translated_errors():
            seti = self._client.v1.setup_intents.retrieve(setup_intent_id)
        return _setup_intent(seti.to_dict())

    def confirm_setup_intent(self, setup_intent_id: str, payment_method: str, idempotency_key: str) -> SetupIntent:
        """Confirm with a PaymentMethod id (the browser's Payment Element usually confirms
        instead, collecting bank-debit mandates itself). A refused card raises GatewayError."""
        with _translated_errors():
            seti = self._client.v1.setup_intents.confirm(
                setup_intent_id, params={"payment_method": payment_method},  # type: ignore[arg-type]
                options=_keyed(idempotency_key))
        return _setup_intent(seti.to_dict())

    def _payment_method(self, payment_method_id: str) -> dict[str, Any]:
        with _translated_errors():
            return self._client.v1.payment_methods.retrieve(payment_method_id).to_dict()

    def retrieve_payment_method(self, payment_method_id: str) -> SavedMethod:
        return _saved_method(self._payment_method(payment_method_id))

    def detach_payment_method(self, payment_method_id: str) -> None:
        try:
            with _translated_errors():
                self._client.v1.payment_methods.detach(payment_method_id)
        except GatewayError as exc:
            # Stripe refuses to detach twice; already detached is what was asked for.
            if exc.retryable or self._payment_method(payment_method_id).get("customer"):
                raise

    def charge_saved_method(self, amount: int, currency: str, customer_id: str, payment_method_id: str,
                            idempotency_key: str, metadata: dict[str, str], off_session: bool = True,
                            payment_method_type: str | None = None) -> Intent:
        kind = payment_method_type or str(self._payment_method(payment_method_id).get("type") or "card")
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "customer": customer_id,
            "payment_method": payment_method_id,
            "payment_method_types": [kind],
            "confirm": True,
            "metadata": {str(k): str(v) for k, v in metadata.items()},
            "expand": _EXPAND,
        }
        if off_session:
            params["off_session"] = True
        try:
            pi = self._client.v1.payment_intents.create(
                params=params, options=_keyed(idempotency_key))  # type: ignore[arg-type]
        except stripe.CardError as exc:
            # A decline: Stripe answers 402 with the PaymentIntent it made in the error body.
            body = exc.json_body if isinstance(exc.json_body, dict) else {}
            error = body.get("error") if isinstance(body.get("error"), dict) else {}
            declined = error.get("payment_intent")
            if not isinstance(declined, dict) or not declined.get("id"):
                raise _gateway_error(exc) from exc
            intent = _intent(declined)
            return replace(intent, error_code=_reason(error) or intent.error_code or "card_declined",
                           error_message=error.get("message") or intent.error_message)
        except stripe.StripeError as exc:
            raise _gateway_error(exc) from exc
        return _intent(pi.to_dict())

    # Webhooks ---------------------------------------------------------------

    def parse_webhook(self, payload: bytes, signature_header: str) -> WebhookEvent:
        if not self.webhook_secret:
            raise BadSignature("No webhook endpoint secret is configured.", code="no_webhook_secret")
        if len(payload) > MAX_EVENT_BYTES:
            raise BadEvent(f"Webhook payload is larger than {MAX_EVENT_BYTES} bytes.", code="too_large")
        try:
            text = payload.decode("utf-8")  # Stripe signs UTF-8 text; the library needs it decoded
        except UnicodeDecodeError:
            raise BadEvent("Webhook payload is not UTF-8 text.", code="invalid_event") from None
        try:
            stripe.WebhookSignature.verify_header(text, signature_header, self.webhook_secret,
                                                  tolerance=WEBHOOK_TOLERANCE_SECONDS)
        except stripe.SignatureVerificationError as exc:
            raise BadSignature(f"Webhook signature refused: {exc.user_message or exc}",
                               code="bad_signature") from None
        # Stripe's check refuses only timestamps that are too old; refuse the future as well.
        timestamp = _signature_timestamp(signature_header)
        if timestamp is None or timestamp > time.time() + WEBHOOK_TOLERANCE_SECONDS:
            raise BadSignature("Webhook timestamp is outside the tolerance zone.", code="bad_signature")
        # Signed, so it is Stripe's (or the secret leaked): still checked field by field, as the
        # library's own parsing would let a list, a numeric id or a NUL byte through to the database.
        return event_from_json(payload)


# Mapping ----------------------------------------------------------------------


def _keyed(idempotency_key: str) -> dict[str, str]:
    if not idempotency_key:
        raise ValueError("an idempotency key is required")
    return {"idempotency_key": idempotency_key}


def _id_of(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("id")
    return value


def _reason(error: Mapping[str, Any]) -> str | None:
    """The most specific reason Stripe gives: the decline code unless it is generic."""
    decline = error.get("decline_code")
    if decline and decline != _GENERIC_DECLINE:
        return str(decline)
    return error.get("code") or decline


def _payment_method_type(data: Mapping[str, Any]) -> str | None:
    pm = data.get("payment_method")
    if isinstance(pm, dict) and pm.get("type"):
        return str(pm["type"])
    error = data.get("last_payment_error") or {}
    pm = error.get("payment_method")
    if isinstance(pm, dict) and pm.get("type"):
        return str(pm["type"])
    return None  # no method attached yet


def _saved_by(data: Mapping[str, Any]) -> SavedMethod | None:
    """The method a ``setup_future_usage`` intent saved: its expanded payment method, once attached
    to the intent's customer."""
    pm = data.get("payment_method")
    if not data.get("setup_future_usage") or not isinstance(pm, dict) or not pm.get("id"):
        return None
    customer = _id_of(data.get("customer"))
    if not customer or _id_of(pm.get("customer")) != customer:
        return None
    return _saved_method(pm)


def _intent(data: Mapping[str, Any]) -> Intent:
    error = data.get("last_payment_error") or {}
    return Intent(
        id=str(data["id"]),
        status=str(data["status"]),
        amount=int(data["amount"]),
        currency=str(data["currency"]).upper(),
        client_secret=data.get("client_secret"),
        payment_method_type=_payment_method_type(data),
        error_code=_reason(error) if error else None,
        error_message=error.get("message") if error else None,
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        saved_method=_saved_by(data),
    )


def _setup_intent(data: Mapping[str, Any]) -> SetupIntent:
    error = data.get("last_setup_error") or {}
    return SetupIntent(
        id=str(data["id"]),
        status=str(data["status"]),
        client_secret=data.get("client_secret"),
        customer=_id_of(data.get("customer")),
        payment_method=_id_of(data.get("payment_method")),
        error_code=_reason(error) if error else None,
        error_message=error.get("message") if error else None,
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
    )


def _saved_method(data: Mapping[str, Any]) -> SavedMethod:
    kind = str(data.get("type") or "")
    details = data.get(kind) if isinstance(data.get(kind), dict) else {}
    if kind == "card":
        return SavedMethod(id=str(data["id"]), type=kind, brand=details.get("brand"), last4=details.get("last4"),
                           exp_month=_int_or_none(details.get("exp_month")),
                           exp_year=_int_or_none(details.get("exp_year")))
    bank = details.get("bank_name")
    if not bank and kind == "sepa_debit" and details.get("bank_code"):
        # Stripe names no bank for SEPA accounts: the country and bank code identify it.
        bank = f"{details.get('country') or ''} bank {details['bank_code']}".strip()
    return SavedMethod(id=str(data["id"]), type=kind, last4=details.get("last4"), bank_name=bank)


def _int_or_none(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def _signature_timestamp(header: str) -> int | None:
    """The ``t=`` of a Stripe-Signature header, read the way the library reads it (first one)."""
    for item in header.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "t":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class _translated_errors:
    """Turn stripe's exceptions into :class:`GatewayError` (a context manager)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not isinstance(exc, stripe.StripeError):
            return False
        raise _gateway_error(exc) from exc


def _gateway_error(exc: stripe.StripeError) -> GatewayError:
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    message = error.get("message") or exc.user_message or str(exc)
    status = exc.http_status
    if isinstance(exc, stripe.CardError):
        # Stripe writes card-error messages for the payer ("Your card was declined.").
        return GatewayError(message, code=_reason(error) or "card_declined", retryable=False)
    if isinstance(exc, stripe.APIConnectionError):  # timeouts and refused connections
        return GatewayError(_UNREACHABLE, code="api_connection_error", retryable=True)
    if isinstance(exc, stripe.RateLimitError):
        return GatewayError(_UNREACHABLE, code="rate_limit", retryable=True)
    if isinstance(exc, stripe.IdempotencyError):
        return GatewayError(message, code="idempotency_error", retryable=False)
    if isinstance(exc, stripe.AuthenticationError):
        return GatewayError(message, code="authentication_error", retryable=False)
    if isinstance(exc, stripe.PermissionError):
        return GatewayError(message, code="permission_error", retryable=False)
    if isinstance(exc, stripe.InvalidRequestError):
        return GatewayError(message, code=exc.code or "invalid_request_error", retryable=False)
    if status is None or status >= 500 or status == 409:
        return GatewayError(_PROVIDER_FAILED, code=exc.code or "api_error", retryable=True)
    return GatewayError(message, code=exc.code or "api_error", retryable=False)

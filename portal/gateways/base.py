"""The one payment-gateway interface. ``stripe.py`` and ``sandbox.py`` implement it.

Amounts are integer minor units; currencies ISO codes (lower-case on the wire
for Stripe, upper-case here). Every call that creates something takes an
idempotency key derived from our own ids, so a retried call never makes two.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# Intent statuses (Stripe's PaymentIntent vocabulary).
REQUIRES_PAYMENT_METHOD = "requires_payment_method"
REQUIRES_CONFIRMATION = "requires_confirmation"
REQUIRES_ACTION = "requires_action"
PROCESSING = "processing"
SUCCEEDED = "succeeded"
CANCELED = "canceled"
OPEN_STATUSES = (REQUIRES_PAYMENT_METHOD, REQUIRES_CONFIRMATION, REQUIRES_ACTION)


@dataclass(frozen=True)
class Intent:
    id: str
    status: str
    amount: int
    currency: str
    client_secret: str | None = None
    payment_method_type: str | None = None
    error_code: str | None = None      # e.g. card_declined, insufficient_funds
    error_message: str | None = None   # safe to show to the payer
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Refund:
    id: str
    intent_id: str
    amount: int
    currency: str
    status: str  # pending, succeeded, failed


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    created: int
    object: dict[str, Any]


class GatewayError(Exception):
    """The gateway refused or failed. ``retryable`` when trying again later may work."""

    def __init__(self, message: str, code: str | None = None, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable


class BadSignature(GatewayError):
    pass


class Gateway(Protocol):
    name: str
    test_mode: bool

    def create_intent(self, amount: int, currency: str, idempotency_key: str, metadata: dict[str, str],
                      payment_method_types: list[str]) -> Intent: ...

    def retrieve_intent(self, intent_id: str) -> Intent: ...

    def confirm_intent(self, intent_id: str, payment_method: str, idempotency_key: str) -> Intent: ...

    def cancel_intent(self, intent_id: str, idempotency_key: str) -> Intent: ...

    def refund(self, intent_id: str, amount: int, idempotency_key: str) -> Refund: ...

    def parse_webhook(self, payload: bytes, signature_header: str) -> WebhookEvent: ...

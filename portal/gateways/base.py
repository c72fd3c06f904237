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
class SetupIntent:
    """Saving a payment method for later (off-session) charges: Stripe's SetupIntent."""
    id: str
    status: str                        # requires_payment_method, requires_action, processing, succeeded, canceled
    client_secret: str | None = None
    customer: str | None = None
    payment_method: str | None = None  # the saved method's id once it succeeded
    error_code: str | None = None      # why the last try failed (card_declined, incorrect_number...)
    error_message: str | None = None   # safe to show to the payer
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SavedMethod:
    """What may be shown about a saved payment method (never the full number)."""
    id: str
    type: str                          # card, us_bank_account, sepa_debit
    brand: str | None = None           # visa, mastercard... (cards)
    last4: str | None = None
    exp_month: int | None = None       # cards
    exp_year: int | None = None        # cards, four digits
    bank_name: str | None = None       # bank accounts


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

    # Saved payment methods (SetupIntents) and off-session charges ------------------------

    def ensure_customer(self, reference: str, email: str | None, name: str, idempotency_key: str) -> str:
        """Create the gateway's customer for one of our clients; returns its id. The same key
        gives the same customer back (callers keep the id, so this runs once per client)."""
        ...

    def create_setup_intent(self, customer_id: str, payment_method_types: list[str], idempotency_key: str,
                            metadata: dict[str, str]) -> SetupIntent:
        """A SetupIntent (usage ``off_session``) the payer confirms to save a method to the customer."""
        ...

    def retrieve_setup_intent(self, setup_intent_id: str) -> SetupIntent: ...

    def confirm_setup_intent(self, setup_intent_id: str, payment_method: str, idempotency_key: str) -> SetupIntent:
        """Confirm on the server. Stripe: ``payment_method`` is a PaymentMethod id. Sandbox:
        ``card:<number>:<MM>/<YY>``, ``sepa_debit:<IBAN>`` or ``us_bank_account:<account>``.
        A refused method raises :class:`GatewayError` (``code``: ``card_declined``,
        ``incorrect_number``, ``invalid_expiry_month``, ``expired_card``...); the SetupIntent stays
        open and ``retrieve_setup_intent`` then shows the same error."""
        ...

    def retrieve_payment_method(self, payment_method_id: str) -> SavedMethod: ...

    def detach_payment_method(self, payment_method_id: str) -> None:
        """Detach the method from its customer: it can never be charged again. Detaching one
        that is already detached is not an error."""
        ...

    def charge_saved_method(self, amount: int, currency: str, customer_id: str, payment_method_id: str,
                            idempotency_key: str, metadata: dict[str, str], off_session: bool = True,
                            payment_method_type: str | None = None) -> Intent:
        """Create and confirm a PaymentIntent on a saved method in one call. A decline does NOT
        raise: the Intent comes back ``requires_payment_method`` with ``error_code`` and
        ``error_message`` set. Bank debits come back ``processing``. Network and API failures
        raise :class:`GatewayError` (``retryable`` when trying again with the same key may work).
        ``payment_method_type`` (the saved method's type, if known) saves Stripe one lookup."""
        ...

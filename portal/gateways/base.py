"""The one payment-gateway interface. ``stripe.py`` and ``sandbox.py`` implement it.

Amounts are integer minor units; currencies ISO codes (lower-case on the wire
for Stripe, upper-case here). Every call that creates something takes an
idempotency key derived from our own ids, so a retried call never makes two.
"""
from __future__ import annotations

import json
import math
import re
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
    # An intent created with ``save_method`` (Stripe's ``setup_future_usage=off_session``): the method
    # it was paid with, once the gateway has saved it to the customer for later off-session charges.
    saved_method: SavedMethod | None = None


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


class BadEvent(GatewayError):
    """A webhook body whose signature is good but which is not a well-formed event: refused (4xx),
    never stored, never retried by us."""


# Inbound webhook events ---------------------------------------------------------------------------
#
# The limits a verified body must meet before anything is stored. The two lengths are those of the
# ``webhook_event`` columns (a test holds them equal); Stripe's object ids are at most 255 characters.
MAX_EVENT_BYTES = 1024 * 1024        # Stripe's event bodies are a few kB; nested lists are truncated
EVENT_ID_MAX_LENGTH = 100
EVENT_TYPE_MAX_LENGTH = 100
OBJECT_ID_MAX_LENGTH = 255
MAX_EVENT_DEPTH = 64                 # containers inside containers, counting the event itself
MAX_EVENT_INTEGER = 2**63 - 1        # every Stripe number fits a signed 64-bit integer
_EVENT_ID = re.compile(r"[A-Za-z0-9_-]+")
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.-]+")


def _no_constants(name: str) -> Any:
    raise BadEvent(f"Webhook payload holds {name}, which is not JSON.", code="invalid_event")


def event_from_json(payload: bytes) -> WebhookEvent:
    """Parse a verified webhook body into a :class:`WebhookEvent`, or raise :class:`BadEvent`.

    What comes back is safe to store and to act on: ``id`` and ``type`` are non-empty strings of
    safe characters within their column lengths, ``created`` an integer of seconds, ``object`` a
    dict whose ``id``, when present (always for ``payment_intent.*`` events), is a string that
    looks like a Stripe id; no string anywhere holds a NUL or an unpaired surrogate (PostgreSQL
    refuses both), no number is NaN, infinite or beyond 64 bits, nothing nests deeper than
    :data:`MAX_EVENT_DEPTH`."""
    if len(payload) > MAX_EVENT_BYTES:
        raise BadEvent(f"Webhook payload is larger than {MAX_EVENT_BYTES} bytes.", code="too_large")
    try:
        text = payload.decode("utf-8")
        data = json.loads(text, parse_constant=_no_constants)
    except BadEvent:
        raise
    except (ValueError, RecursionError):  # not UTF-8, not JSON, a BOM, 4300+ digits, nested too deep
        raise BadEvent("Webhook payload is not a JSON event.", code="invalid_event") from None
    _check_values(data)
    if not isinstance(data, dict):
        raise BadEvent("Webhook payload is not a JSON object.", code="invalid_event")
    event_id = _word(data.get("id"), _EVENT_ID, EVENT_ID_MAX_LENGTH, "event id")
    event_type = _word(data.get("type"), _EVENT_TYPE, EVENT_TYPE_MAX_LENGTH, "event type")
    created = data.get("created", 0)
    if type(created) is not int or created < 0:
        raise BadEvent("Webhook event's created is not a timestamp.", code="invalid_event")
    body = data.get("data")
    obj = body.get("object") if isinstance(body, dict) else None
    if not isinstance(obj, dict):
        raise BadEvent("Webhook event has no data.object.", code="invalid_event")
    if "id" in obj or event_type.startswith("payment_intent."):
        _word(obj.get("id"), _EVENT_ID, OBJECT_ID_MAX_LENGTH, "object id")
    return WebhookEvent(id=event_id, type=event_type, created=created, object=obj)


def _word(value: Any, pattern: re.Pattern[str], max_length: int, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_length or not pattern.fullmatch(value):
        raise BadEvent(f"Webhook event's {what} is missing or malformed.", code="invalid_event")
    return value


def _check_values(root: Any) -> None:
    """Walk the parsed body without recursion: depth, strings and numbers (see event_from_json)."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_string(value)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if abs(value) > MAX_EVENT_INTEGER:
                raise BadEvent("Webhook payload holds a number out of range.", code="invalid_event")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise BadEvent("Webhook payload holds a number out of range.", code="invalid_event")
        elif isinstance(value, (dict, list)):
            if depth > MAX_EVENT_DEPTH:
                raise BadEvent("Webhook payload nests too deeply.", code="invalid_event")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_string(key)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)


def _check_string(value: str) -> None:
    if "\x00" in value:
        raise BadEvent("Webhook payload holds a NUL character.", code="invalid_event")
    try:
        value.isascii() or value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadEvent("Webhook payload holds an unpaired surrogate.", code="invalid_event") from None


class Gateway(Protocol):
    name: str
    test_mode: bool

    def create_intent(self, amount: int, currency: str, idempotency_key: str, metadata: dict[str, str],
                      payment_method_types: list[str], customer_id: str | None = None,
                      save_method: bool = False) -> Intent:
        """A PaymentIntent the payer confirms. With ``save_method`` (and the client's ``customer_id``)
        the method it is paid with is saved to that customer for off-session charges (Stripe's
        ``setup_future_usage=off_session``): the succeeded intent then carries it as ``saved_method``."""
        ...

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

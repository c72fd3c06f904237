"""A small Stripe-compatible HTTP server for the tests (tests only, never the app).

It speaks just enough of Stripe's v1 API, on 127.0.0.1, for the official
``stripe`` library to drive it through ``STRIPE_API_BASE``:

    POST /v1/payment_intents                 amount, currency, metadata[..], payment_method_types[..],
                                             customer, setup_future_usage (off_session, on_session)
    GET  /v1/payment_intents/{id}            expand[]=payment_method
    POST /v1/payment_intents/{id}/confirm    payment_method=<one of TEST_PAYMENT_METHODS or a pm_ id>
    POST /v1/payment_intents/{id}/cancel
    POST /v1/refunds                         payment_intent, amount (optional: the rest)
    POST /v1/customers                       email, name, metadata[..]
    POST /v1/setup_intents                   customer, payment_method_types[..], usage, metadata[..]
    GET  /v1/setup_intents/{id}              expand[]=payment_method
    POST /v1/setup_intents/{id}/confirm      payment_method=<a test token or a pm_ id>
    GET  /v1/payment_methods/{id}
    POST /v1/payment_methods/{id}/detach

A PaymentIntent created with ``confirm=true`` (``customer``, ``payment_method``,
``off_session=true``) is created and confirmed in one call, as Stripe does for charging a
saved method: a decline answers 402 ``card_error`` with the ``payment_intent`` in the error
body, and an off-session charge of a card that needs authentication declines
``authentication_required``. A SetupIntent attaches its method to its customer; a declining
test card is refused while saving it (402 with the ``setup_intent`` in the error body), except
``pm_card_chargeCustomerFail`` (4000 0000 0000 0341), which attaches and then declines every
charge. A method attached to a customer can only be charged with that customer, and a detached
one never again.

Like Stripe it takes form-encoded bodies, a ``Bearer`` secret key, and honours
``Idempotency-Key``: the same key with the same parameters replays the first
response (``Idempotent-Replayed: true``); the same key with other parameters
answers 400 ``idempotency_error``. Results are saved once an endpoint has run
(2xx and card declines), not for requests refused before running.

Test payment methods follow Stripe's documented ones: ``pm_card_visa``
succeeds, ``pm_card_chargeDeclined`` is declined (402 ``card_error``
``card_declined``), ``pm_card_chargeDeclinedInsufficientFunds`` declines with
``insufficient_funds``, ``pm_usBankAccount`` and ``pm_sepaDebit`` go to
``processing`` until a test calls :meth:`FakeStripe.succeed_processing` or
:meth:`FakeStripe.fail_processing`.

Fault switches for the tests: :meth:`FakeStripe.fail_next_with_500` (before the
endpoint runs, or after it ran -- the response is "lost") and
:meth:`FakeStripe.delay_next_seconds` (the endpoint runs, the answer comes late:
the client times out).

Webhooks: :func:`build_event` makes an event body the way Stripe sends it and
:func:`sign_payload` signs it the way Stripe does
(``Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">``).

    with FakeStripe() as fake:
        gateway = StripeGateway(fake.secret_key, WHSEC, api_base=fake.url)
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import socket
import string
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

API_VERSION = "2026-10-28.endive"
DEFAULT_SECRET_KEY = "sk_test_fakeportal0000000000"


# Stripe's documented test payment methods (https://docs.stripe.com/testing) ---------------

@dataclass(frozen=True)
class PaymentMethodSpec:
    type: str                         # card, us_bank_account, sepa_debit
    outcome: str                      # succeeded, declined, processing, requires_action
    details: dict[str, Any] = field(default_factory=dict)
    code: str | None = None           # for declines
    decline_code: str | None = None
    message: str | None = None
    attaches: bool = False            # a declining card that can still be saved to a customer


def _card(brand: str, last4: str) -> dict[str, Any]:
    return {"brand": brand, "last4": last4, "exp_month": 12, "exp_year": 2034, "funding": "credit",
            "country": "US"}


_DECLINED = "Your card was declined."
TEST_PAYMENT_METHODS: dict[str, PaymentMethodSpec] = {
    "pm_card_visa": PaymentMethodSpec("card", "succeeded", _card("visa", "4242")),
    "pm_card_mastercard": PaymentMethodSpec("card", "succeeded", _card("mastercard", "4444")),
    "pm_card_chargeDeclined": PaymentMethodSpec(
        "card", "declined", _card("visa", "0002"), "card_declined", "generic_decline", _DECLINED),
    "pm_card_chargeDeclinedInsufficientFunds": PaymentMethodSpec(
        "card", "declined", _card("visa", "9995"), "card_declined", "insufficient_funds",
        "Your card has insufficient funds."),
    "pm_card_chargeDeclinedLostCard": PaymentMethodSpec(
        "card", "declined", _card("visa", "9987"), "card_declined", "lost_card", _DECLINED),
    "pm_card_chargeDeclinedExpiredCard": PaymentMethodSpec(
        "card", "declined", _card("visa", "0069"), "expired_card", "expired_card", "Your card has expired."),
    "pm_card_chargeDeclinedIncorrectCvc": PaymentMethodSpec(
        "card", "declined", _card("visa", "0127"), "incorrect_cvc", "incorrect_cvc",
        "Your card's security code is incorrect."),
    "pm_card_chargeDeclinedProcessingError": PaymentMethodSpec(
        "card", "declined", _card("visa", "0119"), "processing_error", "processing_error",
        "An error occurred while processing your card. Try again in a little bit."),
    "pm_card_chargeCustomerFail": PaymentMethodSpec(
        "card", "declined", _card("visa", "0341"), "card_declined", "generic_decline", _DECLINED, attaches=True),
    "pm_card_authenticationRequired": PaymentMethodSpec("card", "requires_action", _card("visa", "3184")),
    "pm_usBankAccount": PaymentMethodSpec(
        "us_bank_account", "processing",
        {"bank_name": "STRIPE TEST BANK", "last4": "6789", "account_type": "checking",
         "account_holder_type": "individual", "routing_number": "110000000"}),
    "pm_sepaDebit": PaymentMethodSpec(
        "sepa_debit", "processing", {"bank_code": "37040044", "country": "DE", "last4": "3000"}),
}


# Webhooks -------------------------------------------------------------------------------

def sign_payload(payload: bytes, secret: str, timestamp: int | float | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send for ``payload`` (the raw body)."""
    ts = int(time.time() if timestamp is None else timestamp)
    mac = hmac.new(secret.encode("utf-8"), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def build_event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None,
                created: int | None = None) -> bytes:
    """An event body as Stripe posts it to a webhook endpoint (pretty-printed JSON)."""
    event = {
        "id": event_id or new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()) if created is None else created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    return json.dumps(event, indent=2).encode("utf-8")


# Helpers --------------------------------------------------------------------------------

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def decode_form(raw: str) -> dict[str, Any]:
    """Stripe's form encoding: ``a[b]=1&c[0]=x&c[1]=y`` -> ``{"a": {"b": "1"}, "c": ["x", "y"]}``."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        head = key.split("[", 1)[0]
        path = [head] + re.findall(r"\[([^\]]*)\]", key[len(head):])
        node = result
        for part in path[:-1]:
            node = node.setdefault(part, {})
        last = path[-1]
        if last == "":
            last = str(len(node))
        node[last] = value
    return _listify(result, top=True)


def _listify(node: Any, top: bool = False, parent: str | None = None) -> Any:
    if not isinstance(node, dict):
        return node
    out = {k: _listify(v, parent=k) for k, v in node.items()}
    if not top and parent != "metadata" and out and all(k.isdigit() for k in out):
        return [out[k] for k in sorted(out, key=int)]
    return out


def _money(amount: int, currency: str) -> str:
    major, minor = divmod(amount, 100)
    return f"{major}.{minor:02d} {currency}"


class StripeApiError(Exception):
    """An error answer in Stripe's shape: ``{"error": {...}}`` with an HTTP status."""

    def __init__(self, status: int, error: dict[str, Any], save: bool = False):
        super().__init__(error.get("message"))
        self.status = status
        self.error = error
        self.save = save  # card declines are results of a run endpoint: idempotency saves them


def _invalid(message: str, code: str | None = None, param: str | None = None, status: int = 400,
             **extra: Any) -> StripeApiError:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        error["param"] = param
    error.update(extra)
    return StripeApiError(status, error)


@dataclass
class RequestRecord:
    method: str
    path: str
    idempotency_key: str | None
    status: int = 0
    replayed: bool = False


@dataclass
class _Saved:
    fingerprint: tuple
    status: int
    body: dict[str, Any]


# The server -----------------------------------------------------------------------------

class FakeStripe:
    """Start with ``start()`` (or ``with FakeStripe() as fake``); ``url`` is the API base."""

    def __init__(self, secret_key: str = DEFAULT_SECRET_KEY):
        self.secret_key = secret_key
        self.intents: dict[str, dict[str, Any]] = {}
        self.payment_methods: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.customers: dict[str, dict[str, Any]] = {}
        self.setup_intents: dict[str, dict[str, Any]] = {}
        self._detached: set[str] = set()     # pm ids detached from their customer: unusable
        self.events: list[dict[str, Any]] = []
        self.requests: list[RequestRecord] = []
        self.errors: list[str] = []          # unexpected exceptions inside the fake
        self._pm_tokens: dict[str, str] = {}  # pm id -> the test token it was made from
        self._refunded: dict[str, int] = {}  # intent id -> amount refunded so far
        self._idempotency: dict[str, _Saved] = {}
        self._fail_500: list[bool] = []      # one entry per injected 500: after_processing?
        self._delays: list[float] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeStripe is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeStripe:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="fake-stripe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # fault injection

    def fail_next_with_500(self, times: int = 1, *, after_processing: bool = False) -> None:
        """The next ``times`` requests answer 500 ``api_error``. With ``after_processing`` the
        endpoint runs first (and its result is saved under the idempotency key) and only the
        answer is lost, as when a connection breaks on the way back."""
        with self._lock:
            self._fail_500.extend([after_processing] * times)

    def delay_next_seconds(self, seconds: float, times: int = 1) -> None:
        """The next ``times`` requests run at once but are answered ``seconds`` late."""
        with self._lock:
            self._delays.extend([seconds] * times)

    # moving time along for delayed methods

    def succeed_processing(self, intent_id: str) -> dict[str, Any]:
        """A bank debit settles: processing -> succeeded (emits ``payment_intent.succeeded``)."""
        with self._lock:
            pi = self.intents[intent_id]
            assert pi["status"] == "processing", pi["status"]
            pi["status"] = "succeeded"
            pi["amount_received"] = pi["amount"]
            self._emit("payment_intent.succeeded", self._render(pi))
            return self._render(pi)

    def fail_processing(self, intent_id: str, code: str = "insufficient_funds",
                        message: str = "The customer's account has insufficient funds to cover this payment.",
                        ) -> dict[str, Any]:
        """A bank debit fails: processing -> requires_payment_method with ``last_payment_error``
        (emits ``payment_intent.payment_failed``)."""
        with self._lock:
            pi = self.intents[intent_id]
            assert pi["status"] == "processing", pi["status"]
            pm = self.payment_methods.get(pi["payment_method"] or "")
            pi["status"] = "requires_payment_method"
            pi["last_payment_error"] = {"type": "invalid_request_error", "code": code, "message": message,
                                        "payment_method": pm}
            pi["payment_method"] = None
            self._emit("payment_intent.payment_failed", self._render(pi))
            return self._render(pi)

    def settle_refund(self, refund_id: str, status: str = "succeeded") -> dict[str, Any]:
        """A pending (bank debit) refund completes or fails (emits ``refund.updated``)."""
        with self._lock:
            refund = self.refunds[refund_id]
            refund["status"] = status
            if status == "failed":
                self._refunded[refund["payment_intent"]] -= refund["amount"]
            self._emit("refund.updated", dict(refund))
            return dict(refund)

    # webhooks

    def intent_json(self, intent_id: str) -> dict[str, Any]:
        with self._lock:
            return self._render(self.intents[intent_id])

    def webhook(self, event_type: str, intent_id: str, secret: str, *, timestamp: int | None = None,
                event_id: str | None = None) -> tuple[bytes, str]:
        """(body, Stripe-Signature header) of an event about an intent, as it is now."""
        payload = build_event(event_type, self.intent_json(intent_id), event_id=event_id)
        return payload, sign_payload(payload, secret, timestamp)

    # HTTP -> Stripe semantics

    def handle(self, method: str, target: str, body: bytes, headers: Any) -> tuple[int, dict, dict, float]:
        """Answer one request: (status, JSON body, extra headers, seconds to wait before answering)."""
        parts = urlsplit(target)
        key = headers.get("Idempotency-Key") if method == "POST" else None
        record = RequestRecord(method, parts.path, key)
        out_headers = {"Request-Id": new_id("req", 14), "Stripe-Version": headers.get("Stripe-Version") or API_VERSION}
        if key:
            out_headers["Idempotency-Key"] = key
        with self._lock:
            self.requests.append(record)
            status, answer = self._answer(method, parts.path, parts.query if method == "GET" else
                                          body.decode("utf-8"), headers, key, record)
            delay = self._delays.pop(0) if self._delays else 0.0
            record.status = status
        if record.replayed:
            out_headers["Idempotent-Replayed"] = "true"
        return status, answer, out_headers, delay

    def _answer(self, method: str, path: str, form: str, headers: Any, key: str | None,
                record: RequestRecord) -> tuple[int, dict]:
        auth = headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return 401, {"error": {"type": "invalid_request_error", "message":
                                   "You did not provide an API key. You need to provide your API key in the "
                                   "Authorization header, using Bearer auth."}}
        if not hmac.compare_digest(auth[len("Bearer "):].encode(), self.secret_key.encode()):
            return 401, {"error": {"type": "invalid_request_error", "message":
                                   f"Invalid API Key provided: {auth[7:15]}****"}}
        lost_answer = False
        if self._fail_500:
            if not self._fail_500[0]:
                self._fail_500.pop(0)
                return 500, _api_error()
            lost_answer = True
            self._fail_500.pop(0)
        fingerprint = (method, path, tuple(sorted(parse_qsl(form, keep_blank_values=True))))
        saved = self._idempotency.get(key) if key else None
        if saved is not None:
            if saved.fingerprint != fingerprint:
                return 400, {"error": {
                    "type": "idempotency_error",
                    "message": "Keys for idempotent requests can only be used with the same parameters they "
                               f"were first used with. Try using a key other than '{key}' if you meant to "
                               "execute a different request."}}
            record.replayed = True
            status, answer = saved.status, saved.body
        else:
            try:
                status, answer = 200, self._route(method, path, decode_form(form))
                save = True
            except StripeApiError as exc:
                status, answer, save = exc.status, {"error": exc.error}, exc.save
            if key and save:
                self._idempotency[key] = _Saved(fingerprint, status, answer)
        if lost_answer:
            return 500, _api_error()
        return status, answer

    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        m = re.fullmatch(r"/v1/payment_intents(?:/([^/]+))?(?:/(confirm|cancel))?", path)
        if m:
            intent_id, action = m.groups()
            if method == "POST" and intent_id is None:
                return self._create_intent(params)
            if intent_id is not None:
                pi = self.intents.get(intent_id)
                if pi is None:
                    raise _invalid(f"No such payment_intent: '{intent_id}'", "resource_missing", "intent",
                                   status=404)
                if method == "GET" and action is None:
                    return self._render(pi, params.get("expand"))
                if method == "POST" and action == "confirm":
                    return self._confirm(pi, params)
                if method == "POST" and action == "cancel":
                    return self._cancel(pi, params)
        if method == "POST" and path == "/v1/refunds":
            return self._refund(params)
        if method == "POST" and path == "/v1/customers":
            return self._create_customer(params)
        m = re.fullmatch(r"/v1/setup_intents(?:/([^/]+))?(?:/(confirm))?", path)
        if m:
            setup_id, action = m.groups()
            if method == "POST" and setup_id is None:
                return self._create_setup_intent(params)
            if setup_id is not None:
                seti = self.setup_intents.get(setup_id)
                if seti is None:
                    raise _invalid(f"No such setupintent: '{setup_id}'", "resource_missing", "intent", status=404)
                if method == "GET" and action is None:
                    return self._render_setup(seti, params.get("expand"))
                if method == "POST" and action == "confirm":
                    return self._confirm_setup(seti, params)
        m = re.fullmatch(r"/v1/payment_methods/([^/]+)(?:/(detach))?", path)
        if m:
            pm_id, action = m.groups()
            pm = self.payment_methods.get(pm_id)
            if pm is None:
                raise _invalid(f"No such PaymentMethod: '{pm_id}'", "resource_missing", "payment_method",
                               status=404)
            if method == "GET" and action is None:
                return json.loads(json.dumps(pm))
            if method == "POST" and action == "detach":
                return self._detach(pm)
        raise _invalid(f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
                       "or we can help at https://support.stripe.com/.", status=404)

    # endpoints

    def _create_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        amount = params.get("amount")
        if amount is None:
            raise _invalid("Missing required param: amount.", "parameter_missing", "amount")
        if not re.fullmatch(r"\d+", amount):
            raise _invalid(f"Invalid integer: {amount}", "parameter_invalid_integer", "amount")
        if int(amount) < 1:
            raise _invalid("This value must be greater than or equal to 1.", "parameter_invalid_integer", "amount")
        currency = params.get("currency")
        if not currency:
            raise _invalid("Missing required param: currency.", "parameter_missing", "currency")
        if not re.fullmatch(r"[A-Za-z]{3}", currency):
            raise _invalid(f"Invalid currency: {currency.lower()}.", "parameter_invalid_string", "currency")
        metadata = params.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise _invalid("Invalid object", "parameter_invalid_string", "metadata")
        types = params.get("payment_method_types") or ["card"]
        if not isinstance(types, list):
            raise _invalid("Invalid array", "parameter_invalid_string", "payment_method_types")
        customer = params.get("customer")
        if customer and customer not in self.customers:
            raise _invalid(f"No such customer: '{customer}'", "resource_missing", "customer")
        future_usage = params.get("setup_future_usage") or None
        if future_usage not in (None, "off_session", "on_session"):
            raise _invalid("Invalid setup_future_usage: must be one of off_session or on_session",
                           "parameter_invalid_string", "setup_future_usage")
        confirm = params.get("confirm") == "true"
        off_session = params.get("off_session") in ("true", "one_off", "recurring")
        if off_session and not confirm:
            raise _invalid("You may only specify `off_session` when `confirm` is true.", "parameter_invalid_string",
                           "off_session")
        intent_id = new_id("pi")
        pi = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": int(amount),
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": "automatic",
            "client_secret": f"{intent_id}_secret_{new_id('x', 25)[2:]}",
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "currency": currency.lower(),
            "customer": customer or None,
            "description": params.get("description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": dict(metadata),
            "next_action": None,
            "payment_method": None,
            "payment_method_types": list(types),
            "setup_future_usage": future_usage,
            "status": "requires_payment_method",
            "canceled_at": None,
            "cancellation_reason": None,
        }
        self.intents[intent_id] = pi
        self._emit("payment_intent.created", self._render(pi))
        if confirm:
            return self._confirm(pi, {"payment_method": params.get("payment_method"), "expand": params.get("expand"),
                                      "off_session": off_session})
        return self._render(pi, params.get("expand"))

    def _payment_method(self, ref: str) -> tuple[dict[str, Any], PaymentMethodSpec]:
        if ref in self.payment_methods:
            return self.payment_methods[ref], TEST_PAYMENT_METHODS[self._pm_tokens[ref]]
        spec = TEST_PAYMENT_METHODS.get(ref)
        if spec is None:
            raise _invalid(f"No such PaymentMethod: '{ref}'", "resource_missing", "payment_method")
        pm = {"id": new_id("pm"), "object": "payment_method", "type": spec.type, spec.type: dict(spec.details),
              "billing_details": {"address": None, "email": None, "name": None, "phone": None},
              "created": int(time.time()), "customer": None, "livemode": False,
              "metadata": {}}
        self.payment_methods[pm["id"]] = pm
        self._pm_tokens[pm["id"]] = ref
        return pm, spec

    def _confirm(self, pi: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
            raise _invalid(f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}.",
                           "payment_intent_unexpected_state", payment_intent=self._render(pi))
        ref = params.get("payment_method") or pi["payment_method"]
        if not ref:
            raise _invalid("You cannot confirm this PaymentIntent because it's missing a payment method. "
                           "Update the PaymentIntent with a payment method and then confirm it again.",
                           "payment_intent_unexpected_state", payment_intent=self._render(pi))
        pm, spec = self._payment_method(ref)
        self._check_owner(pm, pi["customer"])
        if spec.type not in pi["payment_method_types"]:
            raise _invalid(f"The PaymentMethod provided ({spec.type}) is not allowed for this PaymentIntent. "
                           "Please attach a PaymentMethod of one of the following types: "
                           f"{', '.join(pi['payment_method_types'])}.",
                           "payment_intent_incompatible_payment_method", "payment_method")
        pi["last_payment_error"] = None
        pi["next_action"] = None
        if spec.outcome == "requires_action" and params.get("off_session"):
            # Off session nobody can authenticate: Stripe declines at once.
            pi["latest_charge"] = new_id("ch")
            error = {"type": "card_error", "code": "authentication_required",
                     "decline_code": "authentication_required", "charge": pi["latest_charge"],
                     "message": "Your card was declined. This transaction requires authentication.",
                     "payment_method": pm, "doc_url": "https://stripe.com/docs/error-codes/authentication-required"}
            pi["status"] = "requires_payment_method"
            pi["last_payment_error"] = error
            self._emit("payment_intent.payment_failed", self._render(pi))
            raise StripeApiError(402, {**error, "payment_intent": self._render(pi)}, save=True)
        if spec.outcome == "requires_action":
            pi["status"] = "requires_action"
            pi["payment_method"] = pm["id"]
            pi["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {}}
            self._emit("payment_intent.requires_action", self._render(pi))
            return self._render(pi, params.get("expand"))
        pi["latest_charge"] = new_id("ch")
        if spec.outcome == "declined":
            error = {"type": "card_error", "code": spec.code, "decline_code": spec.decline_code,
                     "message": spec.message, "charge": pi["latest_charge"], "payment_method": pm,
                     "doc_url": f"https://stripe.com/docs/error-codes/{(spec.code or '').replace('_', '-')}"}
            pi["status"] = "requires_payment_method"
            pi["payment_method"] = None
            pi["last_payment_error"] = error
            self._emit("payment_intent.payment_failed", self._render(pi))
            raise StripeApiError(402, {**error, "payment_intent": self._render(pi)}, save=True)
        pi["payment_method"] = pm["id"]
        if pi.get("setup_future_usage") and pi["customer"] and not pm["customer"]:
            # Stripe attaches the method a payment saves to the intent's customer once it goes through.
            pm["customer"] = pi["customer"]
            self._emit("payment_method.attached", json.loads(json.dumps(pm)))
        if spec.outcome == "processing":
            pi["status"] = "processing"
            self._emit("payment_intent.processing", self._render(pi))
        else:
            pi["status"] = "succeeded"
            pi["amount_received"] = pi["amount"]
            self._emit("payment_intent.succeeded", self._render(pi))
        return self._render(pi, params.get("expand"))

    def _cancel(self, pi: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
            raise _invalid(f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. "
                           "Only a PaymentIntent with one of the following statuses may be canceled: "
                           "requires_payment_method, requires_capture, requires_confirmation, requires_action, "
                           "processing.", "payment_intent_unexpected_state",
                           payment_intent=self._render(pi))
        pi["status"] = "canceled"
        pi["canceled_at"] = int(time.time())
        pi["cancellation_reason"] = params.get("cancellation_reason")
        self._emit("payment_intent.canceled", self._render(pi))
        return self._render(pi, params.get("expand"))

    def _refund(self, params: dict[str, Any]) -> dict[str, Any]:
        intent_id = params.get("payment_intent")
        if not intent_id:
            raise _invalid("One of the following params should be provided for this request: payment_intent "
                           "or charge.", "parameter_missing", "payment_intent")
        pi = self.intents.get(intent_id)
        if pi is None:
            raise _invalid(f"No such payment_intent: '{intent_id}'", "resource_missing", "payment_intent")
        if pi["status"] != "succeeded":
            raise _invalid("This PaymentIntent does not have a successful charge to refund.",
                           "charge_not_refundable", "payment_intent")
        already = self._refunded.get(intent_id, 0)
        remaining = pi["amount_received"] - already
        if remaining <= 0:
            raise _invalid(f"Charge {pi['latest_charge']} has already been refunded.", "charge_already_refunded")
        raw = params.get("amount")
        if raw is None:
            amount = remaining
        elif not re.fullmatch(r"\d+", raw) or int(raw) < 1:
            raise _invalid(f"Invalid positive integer: {raw}", "parameter_invalid_integer", "amount")
        else:
            amount = int(raw)
        if amount > remaining:
            raise _invalid(f"Refund amount ({_money(amount, pi['currency'])}) is greater than unrefunded amount "
                           f"on charge ({_money(remaining, pi['currency'])})", "amount_too_large", "amount")
        pm = self.payment_methods.get(pi["payment_method"] or "")
        card = pm is None or pm["type"] == "card"
        refund = {
            "id": new_id("re"),
            "object": "refund",
            "amount": amount,
            "charge": pi["latest_charge"],
            "created": int(time.time()),
            "currency": pi["currency"],
            "metadata": dict(params.get("metadata") or {}),
            "payment_intent": intent_id,
            "reason": params.get("reason"),
            "status": "succeeded" if card else "pending",
        }
        self.refunds[refund["id"]] = refund
        self._refunded[intent_id] = already + amount
        self._emit("refund.created", dict(refund))
        return dict(refund)

    def _check_owner(self, pm: dict[str, Any], customer: str | None) -> None:
        if pm["id"] in self._detached:
            raise _invalid("The provided PaymentMethod was previously used with a PaymentIntent without Customer "
                           "attachment, shared with a connected account without Customer attachment, or was "
                           "detached from a Customer. It may not be used again. To use a PaymentMethod multiple "
                           "times, you must attach it to a Customer first.", "payment_method_unexpected_state",
                           "payment_method")
        if pm["customer"] and pm["customer"] != customer:
            raise _invalid(f"The provided PaymentMethod belongs to a Customer ({pm['customer']}); include that "
                           "Customer in the `customer` parameter.", "payment_method_unexpected_state",
                           "payment_method")

    def _create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        metadata = params.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise _invalid("Invalid object", "parameter_invalid_string", "metadata")
        customer = {"id": new_id("cus", 14), "object": "customer", "created": int(time.time()),
                    "email": params.get("email") or None, "name": params.get("name") or None,
                    "metadata": dict(metadata), "livemode": False,
                    "invoice_settings": {"default_payment_method": None}}
        self.customers[customer["id"]] = customer
        self._emit("customer.created", dict(customer))
        return json.loads(json.dumps(customer))

    def _create_setup_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = params.get("customer")
        if customer and customer not in self.customers:
            raise _invalid(f"No such customer: '{customer}'", "resource_missing", "customer")
        types = params.get("payment_method_types") or ["card"]
        if not isinstance(types, list):
            raise _invalid("Invalid array", "parameter_invalid_string", "payment_method_types")
        usage = params.get("usage") or "off_session"
        if usage not in ("off_session", "on_session"):
            raise _invalid("Invalid usage: must be one of off_session or on_session", "parameter_invalid_string",
                           "usage")
        metadata = params.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise _invalid("Invalid object", "parameter_invalid_string", "metadata")
        setup_id = new_id("seti")
        seti = {
            "id": setup_id,
            "object": "setup_intent",
            "cancellation_reason": None,
            "client_secret": f"{setup_id}_secret_{new_id('x', 25)[2:]}",
            "created": int(time.time()),
            "customer": customer or None,
            "description": params.get("description"),
            "last_setup_error": None,
            "latest_attempt": None,
            "livemode": False,
            "mandate": None,
            "metadata": dict(metadata),
            "next_action": None,
            "payment_method": None,
            "payment_method_types": list(types),
            "status": "requires_payment_method",
            "usage": usage,
        }
        self.setup_intents[setup_id] = seti
        self._emit("setup_intent.created", self._render_setup(seti))
        return self._render_setup(seti, params.get("expand"))

    def _confirm_setup(self, seti: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        if seti["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
            raise _invalid(f"You cannot confirm this SetupIntent because it has a status of {seti['status']}.",
                           "setup_intent_unexpected_state", setup_intent=self._render_setup(seti))
        ref = params.get("payment_method") or seti["payment_method"]
        if not ref:
            raise _invalid("You cannot confirm this SetupIntent because it's missing a payment method.",
                           "setup_intent_unexpected_state", setup_intent=self._render_setup(seti))
        pm, spec = self._payment_method(ref)
        self._check_owner(pm, seti["customer"])
        if spec.type not in seti["payment_method_types"]:
            raise _invalid(f"The PaymentMethod provided ({spec.type}) is not allowed for this SetupIntent. "
                           "Please attach a PaymentMethod of one of the following types: "
                           f"{', '.join(seti['payment_method_types'])}.",
                           "setup_intent_incompatible_payment_method", "payment_method")
        seti["last_setup_error"] = None
        seti["next_action"] = None
        seti["latest_attempt"] = new_id("setatt")
        if spec.outcome == "declined" and not spec.attaches:
            error = {"type": "card_error", "code": spec.code, "decline_code": spec.decline_code,
                     "message": spec.message, "payment_method": pm,
                     "doc_url": f"https://stripe.com/docs/error-codes/{(spec.code or '').replace('_', '-')}"}
            seti["status"] = "requires_payment_method"
            seti["payment_method"] = None
            seti["last_setup_error"] = error
            self._emit("setup_intent.setup_failed", self._render_setup(seti))
            raise StripeApiError(402, {**error, "setup_intent": self._render_setup(seti)}, save=True)
        seti["payment_method"] = pm["id"]
        if spec.outcome == "requires_action":
            seti["status"] = "requires_action"
            seti["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {}}
            self._emit("setup_intent.requires_action", self._render_setup(seti))
            return self._render_setup(seti, params.get("expand"))
        if seti["customer"]:
            pm["customer"] = seti["customer"]
            self._emit("payment_method.attached", json.loads(json.dumps(pm)))
        if spec.type != "card":
            seti["mandate"] = new_id("mandate")
        seti["status"] = "succeeded"
        self._emit("setup_intent.succeeded", self._render_setup(seti))
        return self._render_setup(seti, params.get("expand"))

    def _detach(self, pm: dict[str, Any]) -> dict[str, Any]:
        if not pm["customer"]:
            raise _invalid("The payment method you provided is not attached to a customer so detachment is "
                           "impossible.", "payment_method_unexpected_state")
        pm["customer"] = None
        self._detached.add(pm["id"])
        self._emit("payment_method.detached", json.loads(json.dumps(pm)))
        return json.loads(json.dumps(pm))

    # rendering

    def _render_setup(self, seti: dict[str, Any], expand: Any = None) -> dict[str, Any]:
        data = json.loads(json.dumps(seti))
        expand = expand if isinstance(expand, list) else ([expand] if expand else [])
        if "payment_method" in expand and data["payment_method"]:
            data["payment_method"] = json.loads(json.dumps(self.payment_methods[data["payment_method"]]))
        return data

    def _render(self, pi: dict[str, Any], expand: Any = None) -> dict[str, Any]:
        data = json.loads(json.dumps(pi))
        expand = expand if isinstance(expand, list) else ([expand] if expand else [])
        if "payment_method" in expand and data["payment_method"]:
            data["payment_method"] = json.loads(json.dumps(self.payment_methods[data["payment_method"]]))
        return data

    def _emit(self, event_type: str, obj: dict[str, Any]) -> None:
        self.events.append({"id": new_id("evt"), "object": "event", "type": event_type, "created": int(time.time()),
                            "data": {"object": obj}})


def _api_error() -> dict[str, Any]:
    return {"error": {"type": "api_error", "message": "An unknown error occurred"}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeStripe

    def __init__(self, *args: Any, **kwargs: Any):
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):  # type: ignore[override]
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):  # type: ignore[override]
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake keep-alive handler threads so they end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):  # type: ignore[override]
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client went away (a timeout on its side)
            return
        self.fake.errors.append(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, answer, headers, delay = fake.handle(method, self.path, body, self.headers)
        except Exception:  # a bug in the fake: answer like Stripe would, and let the test see it
            fake.errors.append(traceback.format_exc())
            status, answer, headers, delay = 500, _api_error(), {}, 0.0
        if delay and fake._stopping.wait(delay):
            self.close_connection = True
            return
        data = json.dumps(answer, indent=2).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

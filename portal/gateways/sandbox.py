"""Test mode: a gateway that moves no money.

(Over 400 lines on purpose: it is one fake of one API -- intents, setup intents, customers, saved
methods, refunds -- whose parts share the same Redis state and locks; split, the fake would be
harder to compare with Stripe's object model, which it mirrors.)

It behaves like Stripe for Stripe's documented test numbers, keeps its
intents in Redis (so the web process, the worker and the tick agree), and
settles bank debits later: they stay ``processing`` until ``SETTLE_AFTER``
has passed, then the next ``retrieve_intent`` (the reconciliation job, run by
the tick) finds them succeeded or failed. Refused in production config.

Payment methods are strings: ``card:<number>``, ``us_bank_account:<account>``,
``sepa_debit:<IBAN>``.

Saved methods (SetupIntents): ``confirm_setup_intent`` takes ``card:<number>:<MM>/<YY>`` (the
expiry is required and must not have passed), ``sepa_debit:<IBAN>`` or
``us_bank_account:<account>``, and keeps a ``pm_sbx_…`` method with its details and its test
number, so that ``charge_saved_method`` later behaves like that test card: 4242… succeeds,
4000000000000002 declines, 4000000000009995 has insufficient funds, 4000000000000341 (Stripe's
"attaches, then every charge declines") declines, a card past its expiry declines
``expired_card``, and bank accounts go ``processing`` and settle like ``confirm_intent``'s. Unlike
Stripe, which may refuse a declining card while saving it, the sandbox saves every test card so
off-session declines can be tried. Customers and saved methods are kept without expiry.
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timedelta

from portal.gateways.base import (
    CANCELED, PROCESSING, REQUIRES_ACTION, REQUIRES_PAYMENT_METHOD, SUCCEEDED, BadSignature, GatewayError, Intent,
    Refund, SavedMethod, SetupIntent, WebhookEvent,
)

# Stripe's documented test cards → outcome (None = succeeds).
CARDS: dict[str, tuple[str, str] | None] = {
    "4242424242424242": None,
    "4000056655665556": None,
    "5555555555554444": None,
    "4000000000000002": ("card_declined", "Your card was declined."),
    "4000000000009995": ("insufficient_funds", "Your card has insufficient funds."),
    "4000000000009987": ("lost_card", "Your card was declined."),
    "4000000000009979": ("stolen_card", "Your card was declined."),
    "4000000000000069": ("expired_card", "Your card has expired."),
    "4000000000000127": ("incorrect_cvc", "Your card's security code is incorrect."),
    "4000000000000119": ("processing_error", "An error occurred while processing your card. Try again."),
}
# Bank debits: account / IBAN → settles successfully?
BANK_ACCOUNTS = {
    "000123456789": True,
    "000111111116": False,
    "DE89370400440532013000": True,
    "DE62370400440532013001": False,
}
# Cards that can be saved but whose every off-session charge fails (Stripe's test numbers).
SAVED_ONLY_CARDS: dict[str, tuple[str, str]] = {
    "4000000000000341": ("card_declined", "Your card was declined."),
    "4000002760003184": ("authentication_required",
                         "Your bank asks you to confirm this payment yourself. Please pay the invoice online."),
}
BANK_NAMES = {"us_bank_account": "STRIPE TEST BANK"}
NOT_A_TEST_CARD = "Your card was declined. In test mode, use a test card such as 4242 4242 4242 4242."
_EXPIRY = re.compile(r"\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*")
SETTLE_AFTER = timedelta(minutes=5)
TTL_SECONDS = 60 * 60 * 24 * 60


class SandboxGateway:
    name = "sandbox"
    test_mode = True

    def __init__(self, redis, now: Callable[[], datetime], prefix: str = "portal:sandbox"):
        self.redis = redis
        self.now = now
        self.prefix = prefix

    # storage ---------------------------------------------------------------
    def _key(self, kind: str, ident: str) -> str:
        return f"{self.prefix}:{kind}:{ident}"

    def _load(self, intent_id: str) -> dict:
        raw = self.redis.get(self._key("pi", intent_id))
        if raw is None:
            raise GatewayError(f"No such payment intent: {intent_id}", code="resource_missing")
        return json.loads(raw)

    def _save(self, data: dict) -> None:
        self.redis.set(self._key("pi", data["id"]), json.dumps(data), ex=TTL_SECONDS)

    @contextmanager
    def _serial(self, intent_id: str):
        """One change at a time per intent, as Stripe does: a confirm and a cancel racing for the
        same intent never both win (a Redis lock around the read-modify-write)."""
        lock = self.redis.lock(self._key("lock", intent_id), timeout=30, blocking_timeout=15)
        if not lock.acquire():
            raise GatewayError("The payment is busy; try again.", code="lock_timeout", retryable=True)
        try:
            yield
        finally:
            try:
                lock.release()
            except Exception:  # noqa: BLE001 - expired meanwhile: nothing to release
                pass

    def _idempotent(self, key: str, params: dict, action: Callable[[], dict]) -> dict:
        """Same key + same params → the first answer again; same key + other params → refused."""
        fingerprint = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        slot = self._key("idem", key)
        stored = self.redis.get(slot)
        if stored is not None:
            saved = json.loads(stored)
            if saved["fingerprint"] != fingerprint:
                raise GatewayError("Keys for idempotent requests can only be used with the same parameters.",
                                   code="idempotency_error")
            if saved.get("error"):
                raise GatewayError(saved["error"]["message"], code=saved["error"]["code"])
            return saved["result"]
        try:
            result = action()
        except GatewayError as exc:
            if exc.code in CODES_REPLAYED:
                self.redis.set(slot, json.dumps({"fingerprint": fingerprint,
                                                 "error": {"code": exc.code, "message": exc.message}}),
                               ex=TTL_SECONDS)
            raise
        self.redis.set(slot, json.dumps({"fingerprint": fingerprint, "result": result}), ex=TTL_SECONDS)
        return result

    @staticmethod
    def _intent(data: dict) -> Intent:
        saved = data.get("saved_method")
        return Intent(
            id=data["id"], status=data["status"], amount=data["amount"], currency=data["currency"],
            client_secret=data["client_secret"], payment_method_type=data.get("payment_method_type"),
            error_code=data.get("error_code"), error_message=data.get("error_message"),
            metadata=data.get("metadata") or {}, saved_method=SavedMethod(**saved) if saved else None,
        )

    def _settle(self, data: dict) -> dict:
        if data["status"] == PROCESSING and data.get("settle_at"):
            if self.now() >= datetime.fromisoformat(data["settle_at"]):
                if data.get("settles_ok"):
                    data["status"] = SUCCEEDED
                else:
                    data.update(status=REQUIRES_PAYMENT_METHOD, error_code="debit_failed",
                                error_message="The bank debit failed: the account could not be debited.")
                data["settle_at"] = None
                self._save(data)
        return data

    # the interface ------------------------------------------------------------
    def create_intent(self, amount, currency, idempotency_key, metadata, payment_method_types, customer_id=None,
                      save_method=False) -> Intent:
        if amount <= 0:
            raise GatewayError("The amount must be above zero.", code="amount_too_small")
        if save_method and not customer_id:
            raise GatewayError("A payment that saves its method needs a customer.", code="parameter_missing")

        def create() -> dict:
            if customer_id:
                self._get("cus", customer_id, "customer")
            ident = "pi_sbx_" + secrets.token_hex(12)
            data = {
                "id": ident, "status": REQUIRES_PAYMENT_METHOD, "amount": amount, "currency": currency.upper(),
                "client_secret": f"{ident}_secret_{secrets.token_hex(12)}", "metadata": metadata,
                "payment_method_types": list(payment_method_types), "refunded": 0,
                "customer": customer_id, "setup_future_usage": "off_session" if save_method else None,
            }
            self._save(data)
            return data

        params = {"op": "create", "amount": amount, "currency": currency.upper(), "metadata": metadata,
                  "types": list(payment_method_types)}
        if customer_id or save_method:
            params.update(customer=customer_id, save_method=bool(save_method))
        return self._intent(self._idempotent(idempotency_key, params, create))

    def retrieve_intent(self, intent_id) -> Intent:
        data = self._load(intent_id)
        if data["status"] == PROCESSING and data.get("settle_at"):
            with self._serial(intent_id):
                data = self._settle(self._load(intent_id))
        return self._intent(data)

    def confirm_intent(self, intent_id, payment_method, idempotency_key) -> Intent:
        def confirm() -> dict:
            data = self._settle(self._load(intent_id))
            if data["status"] in (SUCCEEDED, PROCESSING, CANCELED):
                raise GatewayError(f"This payment is already {data['status']}.", code="payment_intent_unexpected_state")
            kind, _, number = (payment_method or "").partition(":")
            number, _, expiry = number.partition(":") if kind == "card" else (number, "", "")
            number = number.replace(" ", "").upper() if kind == "sepa_debit" else number.replace(" ", "")
            if kind not in data["payment_method_types"]:
                raise GatewayError("That payment method is not accepted for this invoice.",
                                   code="payment_method_not_available")
            data.update(payment_method_type=kind, error_code=None, error_message=None)
            if kind == "card":
                if number not in CARDS:
                    outcome = ("card_declined", "Your card was declined. In test mode, use a test card "
                                                "such as 4242 4242 4242 4242.")
                else:
                    outcome = CARDS[number]
                if outcome is not None:
                    data.update(error_code=outcome[0], error_message=outcome[1])
                    self._save(data)
                    raise GatewayError(outcome[1], code=outcome[0])
                data["status"] = SUCCEEDED
            elif kind in ("us_bank_account", "sepa_debit"):
                if number not in BANK_ACCOUNTS:
                    raise GatewayError("Use a test account: 000123456789 (US) or DE89370400440532013000 (SEPA).",
                                       code="invalid_bank_account")
                data.update(status=PROCESSING, settles_ok=BANK_ACCOUNTS[number],
                            settle_at=(self.now() + SETTLE_AFTER).isoformat())
            else:
                raise GatewayError("Unknown payment method.", code="payment_method_invalid")
            if data.get("setup_future_usage") and data.get("customer"):
                self._keep_method(data, kind, number, expiry)
            self._save(data)
            return data

        with self._serial(intent_id):
            return self._intent(self._idempotent(idempotency_key, {"op": "confirm", "intent": intent_id,
                                                                   "pm": payment_method}, confirm))

    def cancel_intent(self, intent_id, idempotency_key) -> Intent:
        def cancel() -> dict:
            data = self._settle(self._load(intent_id))
            if data["status"] in (SUCCEEDED, PROCESSING):
                raise GatewayError(f"A {data['status']} payment cannot be canceled.",
                                   code="payment_intent_unexpected_state")
            data["status"] = CANCELED
            self._save(data)
            return data

        with self._serial(intent_id):
            return self._intent(self._idempotent(idempotency_key, {"op": "cancel", "intent": intent_id}, cancel))

    def refund(self, intent_id, amount, idempotency_key) -> Refund:
        def refund() -> dict:
            data = self._settle(self._load(intent_id))
            if data["status"] != SUCCEEDED:
                raise GatewayError("Only a succeeded payment can be refunded.", code="charge_not_refundable")
            if amount <= 0 or data["refunded"] + amount > data["amount"]:
                raise GatewayError("The refund is more than what is left of the payment.",
                                   code="amount_too_large")
            data["refunded"] += amount
            self._save(data)
            return {"id": "re_sbx_" + secrets.token_hex(10), "intent_id": intent_id, "amount": amount,
                    "currency": data["currency"], "status": "succeeded"}

        with self._serial(intent_id):
            result = self._idempotent(idempotency_key, {"op": "refund", "intent": intent_id, "amount": amount},
                                      refund)
        return Refund(**result)

    def parse_webhook(self, payload: bytes, signature_header: str) -> WebhookEvent:
        raise BadSignature("The sandbox sends no webhooks.", code="no_webhooks")

    # Saved payment methods ----------------------------------------------------------------
    def _get(self, kind: str, ident: str, what: str) -> dict:
        raw = self.redis.get(self._key(kind, ident or "-"))
        if raw is None:
            raise GatewayError(f"No such {what}: {ident}", code="resource_missing")
        return json.loads(raw)

    def _put(self, kind: str, data: dict, keep: bool = False) -> None:
        self.redis.set(self._key(kind, data["id"]), json.dumps(data), ex=None if keep else TTL_SECONDS)

    @staticmethod
    def _setup_intent(data: dict) -> SetupIntent:
        return SetupIntent(id=data["id"], status=data["status"], client_secret=data["client_secret"],
                           customer=data["customer"], payment_method=data.get("payment_method"),
                           error_code=data.get("error_code"), error_message=data.get("error_message"),
                           metadata=data.get("metadata") or {})

    def ensure_customer(self, reference, email, name, idempotency_key) -> str:
        def create() -> dict:
            data = {"id": "cus_sbx_" + secrets.token_hex(10), "reference": reference, "email": email, "name": name}
            self._put("cus", data, keep=True)
            return data

        params = {"op": "customer", "reference": reference, "email": email, "name": name}
        return self._idempotent(idempotency_key, params, create)["id"]

    def create_setup_intent(self, customer_id, payment_method_types, idempotency_key, metadata) -> SetupIntent:
        def create() -> dict:
            self._get("cus", customer_id, "customer")
            ident = "seti_sbx_" + secrets.token_hex(12)
            data = {"id": ident, "status": REQUIRES_PAYMENT_METHOD, "customer": customer_id,
                    "client_secret": f"{ident}_secret_{secrets.token_hex(12)}", "usage": "off_session",
                    "payment_method": None, "payment_method_types": list(payment_method_types),
                    "metadata": metadata, "error_code": None, "error_message": None}
            self._put("seti", data)
            return data

        params = {"op": "setup", "customer": customer_id, "types": list(payment_method_types), "metadata": metadata}
        return self._setup_intent(self._idempotent(idempotency_key, params, create))

    def retrieve_setup_intent(self, setup_intent_id) -> SetupIntent:
        return self._setup_intent(self._get("seti", setup_intent_id, "setup intent"))

    def confirm_setup_intent(self, setup_intent_id, payment_method, idempotency_key) -> SetupIntent:
        def confirm() -> dict:
            data = self._get("seti", setup_intent_id, "setup intent")
            if data["status"] in (SUCCEEDED, CANCELED):
                raise GatewayError(f"This setup is already {data['status']}.", code="setup_intent_unexpected_state")
            kind, _, details = (payment_method or "").partition(":")
            if kind not in data["payment_method_types"]:
                raise GatewayError("That payment method is not accepted here.", code="payment_method_not_available")
            try:
                method = self._new_method(kind, details)
            except GatewayError as exc:
                data.update(error_code=exc.code, error_message=exc.message)
                self._put("seti", data)
                raise
            method["customer"] = data["customer"]
            self._put("pm", method, keep=True)
            data.update(status=SUCCEEDED, payment_method=method["id"], error_code=None, error_message=None)
            self._put("seti", data)
            return data

        params = {"op": "confirm_setup", "setup": setup_intent_id, "pm": payment_method}
        return self._setup_intent(self._idempotent(idempotency_key, params, confirm))

    def _new_method(self, kind: str, details: str) -> dict:
        """A saved method from what the payer typed, checked like Stripe checks it."""
        method = {"id": "pm_sbx_" + secrets.token_hex(12), "type": kind, "brand": None, "last4": None,
                  "exp_month": None, "exp_year": None, "bank_name": None, "number": None}
        if kind == "card":
            raw, _, expiry = details.partition(":")
            number = "".join(raw.split()).replace("-", "")
            if not number.isdigit() or not 12 <= len(number) <= 19 or not _luhn_ok(number):
                raise GatewayError("Your card number is incorrect.", code="incorrect_number")
            if number not in CARDS and number not in SAVED_ONLY_CARDS:
                raise GatewayError(NOT_A_TEST_CARD, code="card_declined")
            month, year = self._expiry(expiry)
            method.update(brand=_brand(number), last4=number[-4:], exp_month=month, exp_year=year, number=number)
        elif kind in ("us_bank_account", "sepa_debit"):
            number = "".join(details.split()).replace("-", "")
            number = number.upper() if kind == "sepa_debit" else number
            if number not in BANK_ACCOUNTS:
                raise GatewayError("Use a test account: 000123456789 (US) or DE89370400440532013000 (SEPA).",
                                   code="invalid_bank_account")
            bank = BANK_NAMES.get(kind) or f"{number[:2]} bank {number[4:12]}"
            method.update(last4=number[-4:], bank_name=bank, number=number)
        else:
            raise GatewayError("Unknown payment method.", code="payment_method_invalid")
        return method

    def _expiry(self, text: str) -> tuple[int, int]:
        match = _EXPIRY.fullmatch(text or "")
        if not match:
            raise GatewayError("Enter the card's expiry date as MM/YY.", code="invalid_expiry_month")
        month, year = int(match.group(1)), int(match.group(2))
        year += 2000 if year < 100 else 0
        if not 1 <= month <= 12:
            raise GatewayError("Your card's expiration month is invalid.", code="invalid_expiry_month")
        today = self.now()
        if (year, month) < (today.year, today.month):
            raise GatewayError("Your card has expired.", code="expired_card")
        if year > today.year + 50:
            raise GatewayError("Your card's expiration year is invalid.", code="invalid_expiry_year")
        return month, year

    def _keep_method(self, data: dict, kind: str, number: str, expiry: str) -> None:
        """``setup_future_usage``: save the method this intent is paid with to its customer."""
        method = {"id": "pm_sbx_" + secrets.token_hex(12), "type": kind, "brand": None, "last4": number[-4:],
                  "exp_month": None, "exp_year": None, "bank_name": None, "number": number}
        if kind == "card":
            method["brand"] = _brand(number)
            try:
                method["exp_month"], method["exp_year"] = self._expiry(expiry) if expiry else (None, None)
            except GatewayError:
                pass  # the payment itself never read the expiry: keep the card, without one
        else:
            method["bank_name"] = BANK_NAMES.get(kind) or f"{number[:2]} bank {number[4:12]}"
        method["customer"] = data["customer"]
        self._put("pm", method, keep=True)
        data["payment_method"] = method["id"]
        data["saved_method"] = {key: method[key] for key in
                                ("id", "type", "brand", "last4", "exp_month", "exp_year", "bank_name")}

    def retrieve_payment_method(self, payment_method_id) -> SavedMethod:
        data = self._get("pm", payment_method_id, "payment method")
        return SavedMethod(id=data["id"], type=data["type"], brand=data["brand"], last4=data["last4"],
                           exp_month=data["exp_month"], exp_year=data["exp_year"], bank_name=data["bank_name"])

    def detach_payment_method(self, payment_method_id) -> None:
        data = self._get("pm", payment_method_id, "payment method")
        if data.get("customer"):
            data["customer"] = None
            self._put("pm", data, keep=True)

    def charge_saved_method(self, amount, currency, customer_id, payment_method_id, idempotency_key, metadata,
                            off_session=True, payment_method_type=None) -> Intent:
        if amount <= 0:
            raise GatewayError("The amount must be above zero.", code="amount_too_small")

        def charge() -> dict:
            method = self._get("pm", payment_method_id, "payment method")
            if not customer_id or method.get("customer") != customer_id:
                raise GatewayError("This payment method is not attached to the customer (was it removed?).",
                                   code="payment_method_unexpected_state")
            ident = "pi_sbx_" + secrets.token_hex(12)
            data = {
                "id": ident, "status": SUCCEEDED, "amount": amount, "currency": currency.upper(),
                "client_secret": f"{ident}_secret_{secrets.token_hex(12)}", "metadata": metadata,
                "payment_method_types": [method["type"]], "payment_method_type": method["type"], "refunded": 0,
                "customer": customer_id, "payment_method": method["id"], "off_session": bool(off_session),
            }
            if method["type"] == "card":
                number = method["number"]
                outcome = SAVED_ONLY_CARDS.get(number) or CARDS.get(number, ("card_declined", NOT_A_TEST_CARD))
                now = self.now()
                if method["exp_year"] and (method["exp_year"], method["exp_month"]) < (now.year, now.month):
                    outcome = ("expired_card", "Your card has expired.")
                if outcome is not None and outcome[0] == "authentication_required" and not off_session:
                    data["status"] = REQUIRES_ACTION
                elif outcome is not None:
                    data.update(status=REQUIRES_PAYMENT_METHOD, error_code=outcome[0], error_message=outcome[1])
            else:
                data.update(status=PROCESSING, settles_ok=BANK_ACCOUNTS[method["number"]],
                            settle_at=(self.now() + SETTLE_AFTER).isoformat())
            self._save(data)
            return data

        params = {"op": "charge", "amount": amount, "currency": currency.upper(), "customer": customer_id,
                  "pm": payment_method_id, "metadata": metadata, "off_session": bool(off_session)}
        return self._intent(self._idempotent(idempotency_key, params, charge))


def _luhn_ok(number: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(number)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in ("51", "52", "53", "54", "55") or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number[:2] in ("34", "37"):
        return "amex"
    if number.startswith(("6011", "65")):
        return "discover"
    return "unknown"


CODES_REPLAYED = {code for outcome in CARDS.values() if outcome for code in (outcome[0],)}

"""Test mode: a gateway that moves no money.

It behaves like Stripe for Stripe's documented test numbers, keeps its
intents in Redis (so the web process, the worker and the tick agree), and
settles bank debits later: they stay ``processing`` until ``SETTLE_AFTER``
has passed, then the next ``retrieve_intent`` (the reconciliation job, run by
the tick) finds them succeeded or failed. Refused in production config.

Payment methods are strings: ``card:<number>``, ``us_bank_account:<account>``,
``sepa_debit:<IBAN>``.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from portal.gateways.base import (
    CANCELED, PROCESSING, REQUIRES_PAYMENT_METHOD, SUCCEEDED, BadSignature, GatewayError, Intent, Refund,
    WebhookEvent,
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
        return Intent(
            id=data["id"], status=data["status"], amount=data["amount"], currency=data["currency"],
            client_secret=data["client_secret"], payment_method_type=data.get("payment_method_type"),
            error_code=data.get("error_code"), error_message=data.get("error_message"),
            metadata=data.get("metadata") or {},
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
    def create_intent(self, amount, currency, idempotency_key, metadata, payment_method_types) -> Intent:
        if amount <= 0:
            raise GatewayError("The amount must be above zero.", code="amount_too_small")

        def create() -> dict:
            ident = "pi_sbx_" + secrets.token_hex(12)
            data = {
                "id": ident, "status": REQUIRES_PAYMENT_METHOD, "amount": amount, "currency": currency.upper(),
                "client_secret": f"{ident}_secret_{secrets.token_hex(12)}", "metadata": metadata,
                "payment_method_types": list(payment_method_types), "refunded": 0,
            }
            self._save(data)
            return data

        params = {"op": "create", "amount": amount, "currency": currency.upper(), "metadata": metadata,
                  "types": list(payment_method_types)}
        return self._intent(self._idempotent(idempotency_key, params, create))

    def retrieve_intent(self, intent_id) -> Intent:
        return self._intent(self._settle(self._load(intent_id)))

    def confirm_intent(self, intent_id, payment_method, idempotency_key) -> Intent:
        def confirm() -> dict:
            data = self._settle(self._load(intent_id))
            if data["status"] in (SUCCEEDED, PROCESSING, CANCELED):
                raise GatewayError(f"This payment is already {data['status']}.", code="payment_intent_unexpected_state")
            kind, _, number = (payment_method or "").partition(":")
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
            self._save(data)
            return data

        return self._intent(self._idempotent(idempotency_key, {"op": "confirm", "intent": intent_id,
                                                               "pm": payment_method}, confirm))

    def cancel_intent(self, intent_id, idempotency_key) -> Intent:
        def cancel() -> dict:
            data = self._settle(self._load(intent_id))
            if data["status"] == SUCCEEDED:
                raise GatewayError("A succeeded payment cannot be canceled.", code="payment_intent_unexpected_state")
            data["status"] = CANCELED
            self._save(data)
            return data

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

        result = self._idempotent(idempotency_key, {"op": "refund", "intent": intent_id, "amount": amount}, refund)
        return Refund(**result)

    def parse_webhook(self, payload: bytes, signature_header: str) -> WebhookEvent:
        raise BadSignature("The sandbox sends no webhooks.", code="no_webhooks")


CODES_REPLAYED = {code for outcome in CARDS.values() if outcome for code in (outcome[0],)}

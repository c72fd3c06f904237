"""The Stripe gateway, through the official ``stripe`` library doing real HTTP to a
Stripe-compatible server on loopback (tests/support/fake_stripe.py), and Stripe
webhooks signed exactly the way Stripe signs them.
"""
from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from portal.gateways import base
from portal.gateways.base import BadSignature, GatewayError
from portal.gateways.stripe import StripeGateway
from tests.support.fake_stripe import FakeStripe, build_event, sign_payload

WHSEC = "whsec_test_portal_endpoint_secret"
INVOICE = {"invoice_id": "42", "invoice_number": "INV-0042"}


@pytest.fixture
def fake():
    server = FakeStripe().start()
    yield server
    server.stop()
    assert server.errors == [], "the fake Stripe server raised:\n" + "\n".join(server.errors)


@pytest.fixture
def make_gateway(fake):
    made: list[StripeGateway] = []

    def make(**kwargs) -> StripeGateway:
        options = {"api_base": fake.url, "timeout": 2.0, "max_network_retries": 0, **kwargs}
        secret_key = options.pop("secret_key", fake.secret_key)
        gateway = StripeGateway(secret_key, WHSEC, **options)
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.close()


@pytest.fixture
def gateway(make_gateway) -> StripeGateway:
    return make_gateway()


def keys_sent(fake: FakeStripe) -> list[str | None]:
    return [r.idempotency_key for r in fake.requests if r.method == "POST"]


def paid_intent(gateway: StripeGateway, amount: int = 5000, method: str = "pm_card_visa",
                types: tuple[str, ...] = ("card",)) -> base.Intent:
    intent = gateway.create_intent(amount, "USD", f"create-{amount}-{method}", dict(INVOICE), list(types))
    return gateway.confirm_intent(intent.id, method, f"confirm-{intent.id}")


# PaymentIntents --------------------------------------------------------------------------

def test_create_confirm_and_retrieve_a_card_payment(gateway, fake):
    intent = gateway.create_intent(12_550, "EUR", "invoice-42-attempt-1", dict(INVOICE), ["card"])

    assert intent.id.startswith("pi_")
    assert intent.status == base.REQUIRES_PAYMENT_METHOD
    assert (intent.amount, intent.currency) == (12_550, "EUR")
    assert intent.client_secret and intent.client_secret.startswith(intent.id + "_secret_")
    assert intent.metadata == INVOICE
    on_server = fake.intents[intent.id]  # what Stripe received, form-encoded
    assert (on_server["amount"], on_server["currency"]) == (12_550, "eur")
    assert on_server["metadata"] == INVOICE
    assert on_server["payment_method_types"] == ["card"]

    confirmed = gateway.confirm_intent(intent.id, "pm_card_visa", "invoice-42-attempt-1-confirm")
    assert confirmed.status == base.SUCCEEDED
    assert confirmed.payment_method_type == "card"
    assert confirmed.error_code is None

    again = gateway.retrieve_intent(intent.id)
    assert (again.id, again.status, again.amount, again.currency) == (intent.id, base.SUCCEEDED, 12_550, "EUR")
    assert again.metadata == INVOICE
    assert keys_sent(fake) == ["invoice-42-attempt-1", "invoice-42-attempt-1-confirm"]


@pytest.mark.parametrize("method, kind", [("pm_usBankAccount", "us_bank_account"), ("pm_sepaDebit", "sepa_debit")])
def test_a_bank_debit_is_processing_until_it_settles(gateway, fake, method, kind):
    intent = gateway.create_intent(9_900, "USD", "k-create", {}, ["card", kind])
    confirmed = gateway.confirm_intent(intent.id, method, "k-confirm")
    assert (confirmed.status, confirmed.payment_method_type) == (base.PROCESSING, kind)
    assert gateway.retrieve_intent(intent.id).status == base.PROCESSING

    fake.succeed_processing(intent.id)
    settled = gateway.retrieve_intent(intent.id)
    assert (settled.status, settled.payment_method_type) == (base.SUCCEEDED, kind)


def test_a_failed_bank_debit_goes_back_to_needing_a_payment_method(gateway, fake):
    intent = gateway.create_intent(9_900, "EUR", "k-create", {}, ["sepa_debit"])
    gateway.confirm_intent(intent.id, "pm_sepaDebit", "k-confirm")

    fake.fail_processing(intent.id)
    failed = gateway.retrieve_intent(intent.id)
    assert failed.status == base.REQUIRES_PAYMENT_METHOD
    assert failed.error_code == "insufficient_funds"
    assert failed.error_message
    assert failed.payment_method_type == "sepa_debit"


def test_a_method_the_intent_does_not_allow_is_refused(gateway, fake):
    intent = gateway.create_intent(1_000, "USD", "k-create", {}, ["card"])
    with pytest.raises(GatewayError) as caught:
        gateway.confirm_intent(intent.id, "pm_usBankAccount", "k-confirm")
    assert caught.value.code == "payment_intent_incompatible_payment_method"
    assert not caught.value.retryable
    assert fake.intents[intent.id]["status"] == base.REQUIRES_PAYMENT_METHOD


def test_cancel_an_open_intent_but_not_a_paid_one(gateway, fake):
    intent = gateway.create_intent(1_000, "USD", "k-create", {}, ["card"])
    canceled = gateway.cancel_intent(intent.id, "k-cancel")
    assert canceled.status == base.CANCELED
    assert keys_sent(fake)[-1] == "k-cancel"

    paid = paid_intent(gateway)
    with pytest.raises(GatewayError) as caught:
        gateway.cancel_intent(paid.id, "k-cancel-paid")
    assert caught.value.code == "payment_intent_unexpected_state"
    assert not caught.value.retryable
    assert gateway.retrieve_intent(paid.id).status == base.SUCCEEDED


def test_an_unknown_intent_is_a_clear_error(gateway):
    with pytest.raises(GatewayError) as caught:
        gateway.retrieve_intent("pi_doesnotexist")
    assert caught.value.code == "resource_missing"
    assert not caught.value.retryable


def test_a_wrong_secret_key_is_refused_and_not_retried(make_gateway, fake):
    gateway = make_gateway(secret_key="sk_test_wrong", max_network_retries=2)
    with pytest.raises(GatewayError) as caught:
        gateway.create_intent(1_000, "USD", "k", {}, ["card"])
    assert caught.value.code == "authentication_error"
    assert not caught.value.retryable
    assert fake.intents == {}
    assert len(fake.requests) == 1


def test_built_from_the_portal_settings_with_stripe_api_base(fake):
    gateway = StripeGateway.from_config({"STRIPE_SECRET_KEY": fake.secret_key, "STRIPE_WEBHOOK_SECRET": WHSEC,
                                         "STRIPE_API_BASE": fake.url}, timeout=2.0)
    try:
        assert gateway.name == "stripe" and gateway.test_mode
        intent = gateway.create_intent(700, "USD", "from-config", {}, ["card"])
        assert intent.id in fake.intents
    finally:
        gateway.close()


# Idempotency -----------------------------------------------------------------------------

def test_the_same_key_replays_the_same_intent(gateway, fake):
    first = gateway.create_intent(5_000, "USD", "invoice-7-attempt-1", dict(INVOICE), ["card"])
    second = gateway.create_intent(5_000, "USD", "invoice-7-attempt-1", dict(INVOICE), ["card"])

    assert second == first
    assert list(fake.intents) == [first.id]
    assert [r.replayed for r in fake.requests] == [False, True]


def test_the_same_key_with_a_different_amount_is_refused(gateway, fake):
    first = gateway.create_intent(5_000, "USD", "invoice-7-attempt-1", dict(INVOICE), ["card"])
    with pytest.raises(GatewayError) as caught:
        gateway.create_intent(5_001, "USD", "invoice-7-attempt-1", dict(INVOICE), ["card"])

    assert caught.value.code == "idempotency_error"
    assert not caught.value.retryable
    assert list(fake.intents) == [first.id]
    assert fake.intents[first.id]["amount"] == 5_000


# Declines --------------------------------------------------------------------------------

def test_card_declined(gateway, fake):
    intent = gateway.create_intent(5_000, "USD", "k-create", dict(INVOICE), ["card"])
    with pytest.raises(GatewayError) as caught:
        gateway.confirm_intent(intent.id, "pm_card_chargeDeclined", "k-confirm-1")

    assert caught.value.code == "card_declined"
    assert caught.value.message == "Your card was declined."
    assert not caught.value.retryable
    after = gateway.retrieve_intent(intent.id)
    assert after.status == base.REQUIRES_PAYMENT_METHOD
    assert (after.error_code, after.error_message) == ("card_declined", "Your card was declined.")

    # The same confirm again (same key, same card) replays the decline: no second charge attempt.
    charges_tried = fake.intents[intent.id]["latest_charge"]
    with pytest.raises(GatewayError) as again:
        gateway.confirm_intent(intent.id, "pm_card_chargeDeclined", "k-confirm-1")
    assert again.value.code == "card_declined"
    assert fake.requests[-1].replayed
    assert fake.intents[intent.id]["latest_charge"] == charges_tried

    # The intent stays open: another card, with a new attempt key, pays.
    paid = gateway.confirm_intent(intent.id, "pm_card_visa", "k-confirm-2")
    assert paid.status == base.SUCCEEDED
    assert paid.error_code is None


def test_insufficient_funds_names_the_reason(gateway):
    intent = gateway.create_intent(5_000, "USD", "k-create", {}, ["card"])
    with pytest.raises(GatewayError) as caught:
        gateway.confirm_intent(intent.id, "pm_card_chargeDeclinedInsufficientFunds", "k-confirm")
    assert caught.value.code == "insufficient_funds"
    assert caught.value.message == "Your card has insufficient funds."
    assert not caught.value.retryable


# Failures on the way: 500s, timeouts, no server ------------------------------------------

@pytest.mark.parametrize("after_processing", [False, True], ids=["500-before-running", "500-answer-lost"])
def test_a_500_then_a_retry_with_the_same_key_makes_one_intent(gateway, fake, after_processing):
    fake.fail_next_with_500(after_processing=after_processing)
    with pytest.raises(GatewayError) as caught:
        gateway.create_intent(5_000, "USD", "invoice-9-attempt-1", dict(INVOICE), ["card"])
    assert caught.value.retryable
    assert len(fake.intents) == (1 if after_processing else 0)

    intent = gateway.create_intent(5_000, "USD", "invoice-9-attempt-1", dict(INVOICE), ["card"])

    assert list(fake.intents) == [intent.id]
    assert keys_sent(fake) == ["invoice-9-attempt-1", "invoice-9-attempt-1"]
    assert fake.requests[-1].replayed is after_processing


def test_the_library_retries_a_500_itself_with_the_same_key(make_gateway, fake):
    gateway = make_gateway(max_network_retries=2)
    fake.fail_next_with_500(after_processing=True)

    intent = gateway.create_intent(5_000, "USD", "invoice-9-attempt-1", dict(INVOICE), ["card"])

    assert list(fake.intents) == [intent.id]
    assert [(r.status, r.idempotency_key, r.replayed) for r in fake.requests] == [
        (500, "invoice-9-attempt-1", False), (200, "invoice-9-attempt-1", True)]


def test_a_timeout_is_retryable_and_the_retry_makes_no_duplicate(make_gateway, fake):
    gateway = make_gateway(timeout=0.4)
    fake.delay_next_seconds(5)  # Stripe creates the intent, but the answer comes too late

    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        gateway.create_intent(5_000, "USD", "invoice-11-attempt-1", dict(INVOICE), ["card"])
    assert time.monotonic() - started < 3
    assert caught.value.retryable
    assert caught.value.code == "api_connection_error"
    assert len(fake.intents) == 1

    intent = gateway.create_intent(5_000, "USD", "invoice-11-attempt-1", dict(INVOICE), ["card"])
    assert list(fake.intents) == [intent.id]
    assert fake.requests[-1].replayed


def test_the_library_retries_a_timeout_itself_with_the_same_key(make_gateway, fake):
    gateway = make_gateway(timeout=0.4, max_network_retries=1)
    fake.delay_next_seconds(5)

    intent = gateway.create_intent(5_000, "USD", "invoice-12-attempt-1", dict(INVOICE), ["card"])

    assert list(fake.intents) == [intent.id]
    assert keys_sent(fake) == ["invoice-12-attempt-1", "invoice-12-attempt-1"]


def test_no_server_at_all_is_retryable(make_gateway):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gateway = make_gateway(api_base=f"http://127.0.0.1:{port}")
    with pytest.raises(GatewayError) as caught:
        gateway.retrieve_intent("pi_123")
    assert caught.value.retryable


# Refunds ---------------------------------------------------------------------------------

def test_partial_then_full_refund_and_never_more_than_was_paid(gateway, fake):
    paid = paid_intent(gateway, amount=5_000)

    part = gateway.refund(paid.id, 2_000, "refund-1")
    assert (part.intent_id, part.amount, part.currency, part.status) == (paid.id, 2_000, "USD", "succeeded")
    assert part.id.startswith("re_")

    with pytest.raises(GatewayError) as too_much:
        gateway.refund(paid.id, 3_001, "refund-2")
    assert too_much.value.code == "amount_too_large"
    assert not too_much.value.retryable

    rest = gateway.refund(paid.id, 3_000, "refund-3")
    assert rest.amount == 3_000

    with pytest.raises(GatewayError) as nothing_left:
        gateway.refund(paid.id, 1, "refund-4")
    assert nothing_left.value.code == "charge_already_refunded"
    assert sorted(r["amount"] for r in fake.refunds.values()) == [2_000, 3_000]
    assert keys_sent(fake)[-4:] == ["refund-1", "refund-2", "refund-3", "refund-4"]


def test_a_retried_refund_with_the_same_key_refunds_once(gateway, fake):
    paid = paid_intent(gateway, amount=5_000)
    fake.fail_next_with_500(after_processing=True)
    with pytest.raises(GatewayError) as caught:
        gateway.refund(paid.id, 1_000, "refund-1")
    assert caught.value.retryable

    refund = gateway.refund(paid.id, 1_000, "refund-1")

    assert list(fake.refunds) == [refund.id]
    with pytest.raises(GatewayError) as other_amount:
        gateway.refund(paid.id, 1_500, "refund-1")
    assert other_amount.value.code == "idempotency_error"


def test_an_unpaid_intent_cannot_be_refunded(gateway, fake):
    intent = gateway.create_intent(5_000, "USD", "k-create", {}, ["card"])
    with pytest.raises(GatewayError) as caught:
        gateway.refund(intent.id, 1_000, "refund-1")
    assert caught.value.code == "charge_not_refundable"
    assert fake.refunds == {}


def test_a_bank_debit_refund_is_pending(gateway, fake):
    intent = gateway.create_intent(5_000, "EUR", "k-create", {}, ["sepa_debit"])
    gateway.confirm_intent(intent.id, "pm_sepaDebit", "k-confirm")
    fake.succeed_processing(intent.id)
    assert gateway.refund(intent.id, 5_000, "refund-1").status == "pending"


# Webhooks, signed the way Stripe signs them ----------------------------------------------

def signed_event(fake: FakeStripe, gateway: StripeGateway, *, offset: int = 0) -> tuple[bytes, str, base.Intent]:
    intent = paid_intent(gateway)
    payload = build_event("payment_intent.succeeded", fake.intent_json(intent.id), event_id="evt_test_1")
    return payload, sign_payload(payload, WHSEC, time.time() + offset), intent


def test_a_correctly_signed_webhook_is_accepted(gateway, fake):
    payload, header, intent = signed_event(fake, gateway)
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)

    event = gateway.parse_webhook(payload, header)

    assert (event.id, event.type) == ("evt_test_1", "payment_intent.succeeded")
    assert abs(event.created - time.time()) < 60
    assert event.object["id"] == intent.id
    assert event.object["status"] == "succeeded"
    assert event.object["metadata"] == INVOICE
    assert isinstance(event.object, dict)


def test_an_event_the_server_emitted_can_be_delivered(gateway, fake):
    intent = paid_intent(gateway)
    emitted = [e for e in fake.events if e["type"] == "payment_intent.succeeded"]
    assert [e["data"]["object"]["id"] for e in emitted] == [intent.id]
    payload, header = fake.webhook("payment_intent.succeeded", intent.id, WHSEC)
    assert gateway.parse_webhook(payload, header).object["amount"] == 5_000


@pytest.mark.parametrize("offset", [-299, 299])
def test_timestamps_within_300_seconds_are_accepted(gateway, fake, offset):
    payload, header, _ = signed_event(fake, gateway, offset=offset)
    assert gateway.parse_webhook(payload, header).type == "payment_intent.succeeded"


@pytest.mark.parametrize("offset", [-301, 301, -86_400, 86_400], ids=["301s-old", "301s-future", "a-day-old",
                                                                       "a-day-ahead"])
def test_timestamps_more_than_300_seconds_away_are_refused(gateway, fake, offset):
    payload, header, _ = signed_event(fake, gateway, offset=offset)
    with pytest.raises(BadSignature):
        gateway.parse_webhook(payload, header)


def test_a_wrong_secret_is_refused(gateway, fake):
    payload, _, _ = signed_event(fake, gateway)
    with pytest.raises(BadSignature):
        gateway.parse_webhook(payload, sign_payload(payload, "whsec_someone_else"))


def test_one_changed_body_byte_is_refused(gateway, fake):
    payload, header, _ = signed_event(fake, gateway)
    gateway.parse_webhook(payload, header)  # untouched: fine

    richer = payload.replace(b'"amount": 5000', b'"amount": 9000', 1)
    assert richer != payload and len(richer) == len(payload)
    with pytest.raises(BadSignature):
        gateway.parse_webhook(richer, header)
    for position in (0, len(payload) // 2, len(payload) - 1):
        changed = bytearray(payload)
        changed[position] ^= 0x01
        with pytest.raises(BadSignature):
            gateway.parse_webhook(bytes(changed), header)


def test_a_moved_timestamp_breaks_the_signature(gateway, fake):
    payload, header, _ = signed_event(fake, gateway)
    ts, v1 = re.fullmatch(r"t=(\d+),(v1=.+)", header).groups()
    with pytest.raises(BadSignature):
        gateway.parse_webhook(payload, f"t={int(ts) + 1},{v1}")


@pytest.mark.parametrize("header", ["", "garbage", "v1=abc", "t=notanumber,v1=abc", "t=123"])
def test_missing_or_malformed_signature_headers_are_refused(gateway, fake, header):
    payload, _, _ = signed_event(fake, gateway)
    with pytest.raises(BadSignature):
        gateway.parse_webhook(payload, header)


def test_a_rolled_secret_header_with_several_signatures_is_accepted(gateway, fake):
    # While an endpoint secret is being rolled Stripe sends one v1 per secret (and a v0 in test mode).
    payload, header, _ = signed_event(fake, gateway)
    ts, good = re.fullmatch(r"t=(\d+),v1=(\w+)", header).groups()
    old = sign_payload(payload, "whsec_old_secret", int(ts)).split("v1=")[1]
    event = gateway.parse_webhook(payload, f"t={ts},v1={old},v1={good},v0={'0' * 64}")
    assert event.id == "evt_test_1"


def test_a_signed_body_that_is_not_json_is_refused(gateway):
    payload = b"not json at all"
    with pytest.raises(base.BadEvent) as caught:
        gateway.parse_webhook(payload, sign_payload(payload, WHSEC))
    assert caught.value.code == "invalid_event"


def test_without_an_endpoint_secret_every_webhook_is_refused(fake):
    gateway = StripeGateway(fake.secret_key, None, api_base=fake.url)
    try:
        payload = build_event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
        with pytest.raises(BadSignature):
            gateway.parse_webhook(payload, sign_payload(payload, ""))
    finally:
        gateway.close()


# Customers, saved methods (SetupIntents) and off-session charges --------------------------

def saved_method(gateway: StripeGateway, token: str = "pm_card_visa", types: tuple[str, ...] = ("card",),
                 key: str = "1") -> tuple[str, base.SetupIntent]:
    customer = gateway.ensure_customer(f"client-{key}", "ana@acme.example", "Acme Ltd", f"client-{key}-customer")
    setup = gateway.create_setup_intent(customer, list(types), f"client-{key}-setup-1", {"client_id": key})
    return customer, gateway.confirm_setup_intent(setup.id, token, f"client-{key}-setup-1-confirm")


def test_a_customer_is_created_once_per_key(gateway, fake):
    first = gateway.ensure_customer("client-7", "ana@acme.example", "Acme Ltd", "client-7-customer")
    again = gateway.ensure_customer("client-7", "ana@acme.example", "Acme Ltd", "client-7-customer")

    assert first == again and first.startswith("cus_")
    assert list(fake.customers) == [first]
    on_server = fake.customers[first]
    assert (on_server["email"], on_server["name"], on_server["metadata"]) == (
        "ana@acme.example", "Acme Ltd", {"reference": "client-7"})
    assert keys_sent(fake) == ["client-7-customer", "client-7-customer"] and fake.requests[-1].replayed


def test_saving_a_card_with_a_setup_intent(gateway, fake):
    customer = gateway.ensure_customer("client-1", None, "Acme Ltd", "client-1-customer")
    setup = gateway.create_setup_intent(customer, ["card", "sepa_debit"], "client-1-setup-1", {"client_id": "1"})

    assert setup.id.startswith("seti_") and setup.status == base.REQUIRES_PAYMENT_METHOD
    assert setup.client_secret.startswith(setup.id + "_secret_")
    assert (setup.customer, setup.payment_method, setup.metadata) == (customer, None, {"client_id": "1"})
    on_server = fake.setup_intents[setup.id]
    assert (on_server["usage"], on_server["payment_method_types"]) == ("off_session", ["card", "sepa_debit"])

    done = gateway.confirm_setup_intent(setup.id, "pm_card_visa", "client-1-setup-1-confirm")
    assert done.status == base.SUCCEEDED and done.payment_method.startswith("pm_")
    assert fake.payment_methods[done.payment_method]["customer"] == customer
    assert gateway.retrieve_setup_intent(setup.id) == done
    method = gateway.retrieve_payment_method(done.payment_method)
    assert (method.id, method.type, method.brand, method.last4, method.exp_month, method.exp_year) == (
        done.payment_method, "card", "visa", "4242", 12, 2034)
    assert keys_sent(fake) == ["client-1-customer", "client-1-setup-1", "client-1-setup-1-confirm"]


def test_a_setup_intent_replays_under_the_same_key(gateway, fake):
    customer = gateway.ensure_customer("client-1", None, "Acme Ltd", "c")
    first = gateway.create_setup_intent(customer, ["card"], "setup-key", {})
    assert gateway.create_setup_intent(customer, ["card"], "setup-key", {}) == first
    assert list(fake.setup_intents) == [first.id]
    with pytest.raises(GatewayError) as caught:
        gateway.create_setup_intent(customer, ["card", "sepa_debit"], "setup-key", {})
    assert caught.value.code == "idempotency_error"


def test_a_declined_card_is_not_saved_and_the_setup_shows_why(gateway, fake):
    customer = gateway.ensure_customer("client-1", None, "Acme Ltd", "c")
    setup = gateway.create_setup_intent(customer, ["card"], "s", {})
    with pytest.raises(GatewayError) as caught:
        gateway.confirm_setup_intent(setup.id, "pm_card_chargeDeclined", "s-confirm")
    assert (caught.value.code, caught.value.message, caught.value.retryable) == (
        "card_declined", "Your card was declined.", False)
    after = gateway.retrieve_setup_intent(setup.id)
    assert (after.status, after.error_code, after.payment_method) == (base.REQUIRES_PAYMENT_METHOD, "card_declined",
                                                                       None)
    assert gateway.confirm_setup_intent(setup.id, "pm_card_mastercard", "s-confirm-2").status == base.SUCCEEDED


@pytest.mark.parametrize("token, kind, bank, last4", [
    ("pm_usBankAccount", "us_bank_account", "STRIPE TEST BANK", "6789"),
    ("pm_sepaDebit", "sepa_debit", "DE bank 37040044", "3000"),
])
def test_a_saved_bank_account_has_a_bank_name_and_last4(gateway, token, kind, bank, last4):
    _, done = saved_method(gateway, token, types=(kind,))
    method = gateway.retrieve_payment_method(done.payment_method)
    assert (method.type, method.bank_name, method.last4, method.brand, method.exp_year) == (kind, bank, last4,
                                                                                            None, None)


def test_charging_a_saved_card_off_session(gateway, fake):
    customer, done = saved_method(gateway)
    intent = gateway.charge_saved_method(7_500, "EUR", customer, done.payment_method, "invoice-9-autopay-1",
                                         dict(INVOICE), payment_method_type="card")

    assert (intent.status, intent.amount, intent.currency) == (base.SUCCEEDED, 7_500, "EUR")
    assert (intent.payment_method_type, intent.error_code, intent.metadata) == ("card", None, INVOICE)
    on_server = fake.intents[intent.id]
    assert (on_server["customer"], on_server["payment_method"]) == (customer, done.payment_method)
    create = [r for r in fake.requests if r.path == "/v1/payment_intents"]
    assert [r.idempotency_key for r in create] == ["invoice-9-autopay-1"]
    assert not any(r.method == "GET" for r in fake.requests), "the type was given: no lookup"
    assert gateway.refund(intent.id, 7_500, "refund-1").amount == 7_500


def test_a_declined_off_session_charge_is_returned_not_raised(gateway, fake):
    # Stripe's 4000 0000 0000 0341: saving works, every charge is declined (402 with the intent).
    customer, done = saved_method(gateway, "pm_card_chargeCustomerFail")
    assert done.status == base.SUCCEEDED

    intent = gateway.charge_saved_method(5_000, "USD", customer, done.payment_method, "invoice-3-autopay-1", {})

    assert intent.id in fake.intents and intent.id.startswith("pi_")
    assert intent.status == base.REQUIRES_PAYMENT_METHOD
    assert (intent.error_code, intent.error_message) == ("card_declined", "Your card was declined.")
    assert intent.payment_method_type == "card"
    assert fake.requests[-1].status == 402
    assert [r.method for r in fake.requests[-2:]] == ["GET", "POST"], "no type given: looked up first"
    # The same key replays the same declined intent: no second charge attempt.
    again = gateway.charge_saved_method(5_000, "USD", customer, done.payment_method, "invoice-3-autopay-1", {},
                                        payment_method_type="card")
    assert again.id == intent.id and again.error_code == "card_declined"
    assert fake.requests[-1].replayed and len(fake.intents) == 1
    assert gateway.retrieve_intent(intent.id).error_code == "card_declined"


def test_an_off_session_charge_that_needs_authentication_is_declined(gateway, fake):
    customer = gateway.ensure_customer("client-1", None, "Acme Ltd", "c")
    setup = gateway.create_setup_intent(customer, ["card"], "s", {})
    pending = gateway.confirm_setup_intent(setup.id, "pm_card_authenticationRequired", "s-confirm")
    assert pending.status == base.REQUIRES_ACTION
    intent = gateway.charge_saved_method(5_000, "USD", customer, pending.payment_method, "k", {},
                                         payment_method_type="card")
    assert (intent.status, intent.error_code) == (base.REQUIRES_PAYMENT_METHOD, "authentication_required")


def test_charging_a_saved_bank_account_is_processing(gateway, fake):
    customer, done = saved_method(gateway, "pm_sepaDebit", types=("sepa_debit",))
    intent = gateway.charge_saved_method(5_000, "EUR", customer, done.payment_method, "k", {},
                                         payment_method_type="sepa_debit")
    assert (intent.status, intent.payment_method_type) == (base.PROCESSING, "sepa_debit")
    fake.succeed_processing(intent.id)
    assert gateway.retrieve_intent(intent.id).status == base.SUCCEEDED


def test_a_charge_that_fails_on_the_way_is_retryable_and_made_once(gateway, fake):
    customer, done = saved_method(gateway)
    fake.fail_next_with_500(after_processing=True)
    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved_method(5_000, "USD", customer, done.payment_method, "k", {}, payment_method_type="card")
    assert caught.value.retryable
    intent = gateway.charge_saved_method(5_000, "USD", customer, done.payment_method, "k", {},
                                         payment_method_type="card")
    assert intent.status == base.SUCCEEDED and list(fake.intents) == [intent.id]


def test_a_detached_method_cannot_be_charged_again(gateway, fake):
    customer, done = saved_method(gateway)
    gateway.detach_payment_method(done.payment_method)
    assert fake.payment_methods[done.payment_method]["customer"] is None
    gateway.detach_payment_method(done.payment_method)  # already detached: fine
    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved_method(5_000, "USD", customer, done.payment_method, "k", {}, payment_method_type="card")
    assert caught.value.code == "payment_method_unexpected_state" and not caught.value.retryable
    with pytest.raises(GatewayError) as missing:
        gateway.retrieve_payment_method("pm_doesnotexist")
    assert missing.value.code == "resource_missing"


def test_another_customers_method_cannot_be_charged(gateway):
    _, done = saved_method(gateway, key="1")
    other = gateway.ensure_customer("client-2", None, "Other", "client-2-customer")
    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved_method(5_000, "USD", other, done.payment_method, "k", {}, payment_method_type="card")
    assert caught.value.code == "payment_method_unexpected_state"


# The house rule ---------------------------------------------------------------------------

def test_only_the_stripe_gateway_imports_stripe():
    portal = Path(__file__).resolve().parents[2] / "portal"
    importers = sorted(
        str(path.relative_to(portal)) for path in portal.rglob("*.py")
        if re.search(r"^\s*(import stripe\b|from stripe\b)", path.read_text(encoding="utf-8"), re.MULTILINE)
    )
    assert importers == ["gateways/stripe.py"]

"""The sandbox gateway behaves like Stripe's test mode, on a real Redis."""
from datetime import datetime, timedelta, timezone

import pytest

from portal.gateways.base import PROCESSING, REQUIRES_PAYMENT_METHOD, SUCCEEDED, GatewayError
from portal.gateways.sandbox import SETTLE_AFTER, SandboxGateway


class Clock:
    def __init__(self):
        self.at = datetime(2026, 11, 22, 9, tzinfo=timezone.utc)

    def __call__(self):
        return self.at


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sandbox(redis_server, clock):
    redis_server.client().flushall()
    return SandboxGateway(redis_server.client(), clock)


TYPES = ["card", "us_bank_account", "sepa_debit"]


def test_4242_succeeds(sandbox):
    intent = sandbox.create_intent(12300, "EUR", "inv-1-attempt-1", {"invoice_id": "1"}, TYPES)
    assert intent.status == REQUIRES_PAYMENT_METHOD and intent.client_secret
    done = sandbox.confirm_intent(intent.id, "card:4242 4242 4242 4242", "inv-1-confirm-1")
    assert done.status == SUCCEEDED
    assert sandbox.retrieve_intent(intent.id).status == SUCCEEDED


@pytest.mark.parametrize("number, code", [
    ("4000000000000002", "card_declined"),
    ("4000000000009995", "insufficient_funds"),
    ("4000000000000069", "expired_card"),
])
def test_test_cards_decline_like_stripe(sandbox, number, code):
    intent = sandbox.create_intent(5000, "EUR", f"k-{number}", {}, TYPES)
    with pytest.raises(GatewayError) as caught:
        sandbox.confirm_intent(intent.id, f"card:{number}", f"c-{number}")
    assert caught.value.code == code
    after = sandbox.retrieve_intent(intent.id)
    assert after.status == REQUIRES_PAYMENT_METHOD and after.error_code == code
    assert sandbox.confirm_intent(intent.id, "card:4242424242424242", f"c2-{number}").status == SUCCEEDED


def test_same_key_replays_and_other_params_are_refused(sandbox):
    first = sandbox.create_intent(5000, "EUR", "same-key", {}, TYPES)
    again = sandbox.create_intent(5000, "EUR", "same-key", {}, TYPES)
    assert again.id == first.id
    with pytest.raises(GatewayError) as caught:
        sandbox.create_intent(6000, "EUR", "same-key", {}, TYPES)
    assert caught.value.code == "idempotency_error"


@pytest.mark.parametrize("method, settles", [
    ("sepa_debit:DE89370400440532013000", SUCCEEDED),
    ("us_bank_account:000123456789", SUCCEEDED),
    ("sepa_debit:DE62370400440532013001", REQUIRES_PAYMENT_METHOD),
])
def test_bank_debits_process_then_settle_later(sandbox, clock, method, settles):
    intent = sandbox.create_intent(5000, "EUR", f"k-{method}", {}, TYPES)
    assert sandbox.confirm_intent(intent.id, method, f"c-{method}").status == PROCESSING
    clock.at += SETTLE_AFTER - timedelta(seconds=1)
    assert sandbox.retrieve_intent(intent.id).status == PROCESSING
    clock.at += timedelta(seconds=2)
    assert sandbox.retrieve_intent(intent.id).status == settles


def test_refunds_never_exceed_the_payment(sandbox):
    intent = sandbox.create_intent(10000, "EUR", "r", {}, TYPES)
    sandbox.confirm_intent(intent.id, "card:4242424242424242", "rc")
    assert sandbox.refund(intent.id, 4000, "r1").amount == 4000
    assert sandbox.refund(intent.id, 4000, "r1").amount == 4000  # replayed, not refunded twice
    with pytest.raises(GatewayError):
        sandbox.refund(intent.id, 6001, "r2")
    assert sandbox.refund(intent.id, 6000, "r3").amount == 6000

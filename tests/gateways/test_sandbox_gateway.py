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


# Saved methods (SetupIntents) and off-session charges ---------------------------------------

def saved(sandbox, method="card:4242 4242 4242 4242:12/34", types=TYPES, key="c1"):
    customer = sandbox.ensure_customer("client-1", "ana@acme.example", "Acme Ltd", f"customer-{key}")
    setup = sandbox.create_setup_intent(customer, list(types), f"setup-{key}", {"client_id": "1"})
    done = sandbox.confirm_setup_intent(setup.id, method, f"confirm-{key}")
    return customer, done


def test_a_customer_is_made_once_per_key(sandbox):
    first = sandbox.ensure_customer("client-1", "ana@acme.example", "Acme Ltd", "client-1-customer")
    assert first.startswith("cus_sbx_")
    assert sandbox.ensure_customer("client-1", "ana@acme.example", "Acme Ltd", "client-1-customer") == first
    assert sandbox.ensure_customer("client-2", None, "Other", "client-2-customer") != first
    with pytest.raises(GatewayError) as caught:
        sandbox.ensure_customer("client-1", "ben@acme.example", "Acme Ltd", "client-1-customer")
    assert caught.value.code == "idempotency_error"


def test_saving_a_card_through_a_setup_intent(sandbox):
    customer = sandbox.ensure_customer("client-1", "ana@acme.example", "Acme Ltd", "cust")
    setup = sandbox.create_setup_intent(customer, ["card"], "setup-1", {"client_id": "1"})
    assert (setup.status, setup.customer, setup.payment_method) == (REQUIRES_PAYMENT_METHOD, customer, None)
    assert setup.client_secret.startswith(setup.id + "_secret_") and setup.metadata == {"client_id": "1"}
    assert sandbox.create_setup_intent(customer, ["card"], "setup-1", {"client_id": "1"}).id == setup.id

    done = sandbox.confirm_setup_intent(setup.id, "card:4242 4242 4242 4242:12/34", "setup-1-confirm")
    assert done.status == SUCCEEDED and done.payment_method.startswith("pm_sbx_")
    again = sandbox.confirm_setup_intent(setup.id, "card:4242 4242 4242 4242:12/34", "setup-1-confirm")
    assert again.payment_method == done.payment_method, "the same confirmation is replayed, not repeated"
    assert sandbox.retrieve_setup_intent(setup.id) == done
    method = sandbox.retrieve_payment_method(done.payment_method)
    assert (method.type, method.brand, method.last4, method.exp_month, method.exp_year, method.bank_name) == (
        "card", "visa", "4242", 12, 2034, None)
    with pytest.raises(GatewayError) as caught:
        sandbox.confirm_setup_intent(setup.id, "card:5555555555554444:12/34", "setup-1-confirm-2")
    assert caught.value.code == "setup_intent_unexpected_state"


@pytest.mark.parametrize("method, code", [
    ("card:4242 4242 4242 4241:12/34", "incorrect_number"),
    ("card:1234:12/34", "incorrect_number"),
    ("card:4111111111111111:12/34", "card_declined"),          # a real-looking number, not a test card
    ("card:4242424242424242", "invalid_expiry_month"),
    ("card:4242424242424242:13/30", "invalid_expiry_month"),
    ("card:4242424242424242:10/26", "expired_card"),             # the clock says November 2026
    ("sepa_debit:DE00123456789", "invalid_bank_account"),
])
def test_a_bad_card_or_account_is_refused_and_the_setup_stays_open(sandbox, method, code):
    customer = sandbox.ensure_customer("client-1", None, "Acme Ltd", "cust")
    setup = sandbox.create_setup_intent(customer, TYPES, "setup", {})
    with pytest.raises(GatewayError) as caught:
        sandbox.confirm_setup_intent(setup.id, method, "confirm-bad")
    assert caught.value.code == code and caught.value.message
    after = sandbox.retrieve_setup_intent(setup.id)
    assert (after.status, after.error_code, after.payment_method) == (REQUIRES_PAYMENT_METHOD, code, None)
    fixed = sandbox.confirm_setup_intent(setup.id, "card:4242424242424242:11/26", "confirm-good")
    assert fixed.status == SUCCEEDED and fixed.error_code is None


def test_a_method_the_setup_does_not_allow_is_refused(sandbox):
    customer = sandbox.ensure_customer("client-1", None, "Acme Ltd", "cust")
    setup = sandbox.create_setup_intent(customer, ["card"], "setup", {})
    with pytest.raises(GatewayError) as caught:
        sandbox.confirm_setup_intent(setup.id, "sepa_debit:DE89370400440532013000", "confirm")
    assert caught.value.code == "payment_method_not_available"


@pytest.mark.parametrize("method, kind, bank, last4", [
    ("sepa_debit:DE89 3704 0044 0532 0130 00", "sepa_debit", "DE bank 37040044", "3000"),
    ("us_bank_account:000123456789", "us_bank_account", "STRIPE TEST BANK", "6789"),
])
def test_saving_a_bank_account_keeps_bank_name_and_last4(sandbox, method, kind, bank, last4):
    _, done = saved(sandbox, method)
    found = sandbox.retrieve_payment_method(done.payment_method)
    assert (found.type, found.bank_name, found.last4, found.brand, found.exp_month) == (kind, bank, last4, None, None)


@pytest.mark.parametrize("number, code", [
    ("4242424242424242", None),
    ("4000000000000002", "card_declined"),
    ("4000000000009995", "insufficient_funds"),
    ("4000000000000341", "card_declined"),
    ("4000002760003184", "authentication_required"),
])
def test_charging_a_saved_card_behaves_like_its_test_number_and_never_raises_a_decline(sandbox, number, code):
    customer, done = saved(sandbox, f"card:{number}:12/34")
    intent = sandbox.charge_saved_method(5000, "EUR", customer, done.payment_method, "inv-1-autopay-1",
                                         {"invoice_id": "1"})
    assert intent.id.startswith("pi_sbx_") and (intent.amount, intent.currency) == (5000, "EUR")
    assert intent.payment_method_type == "card" and intent.metadata == {"invoice_id": "1"}
    if code is None:
        assert (intent.status, intent.error_code) == (SUCCEEDED, None)
        assert sandbox.refund(intent.id, 1000, "refund-1").amount == 1000
    else:
        assert (intent.status, intent.error_code) == (REQUIRES_PAYMENT_METHOD, code) and intent.error_message
    assert sandbox.retrieve_intent(intent.id) == intent


def test_a_charge_is_idempotent(sandbox):
    customer, done = saved(sandbox)
    first = sandbox.charge_saved_method(5000, "EUR", customer, done.payment_method, "k", {})
    assert sandbox.charge_saved_method(5000, "EUR", customer, done.payment_method, "k", {}) == first
    with pytest.raises(GatewayError) as caught:
        sandbox.charge_saved_method(5001, "EUR", customer, done.payment_method, "k", {})
    assert caught.value.code == "idempotency_error"
    assert sandbox.charge_saved_method(5000, "EUR", customer, done.payment_method, "k2", {}).id != first.id


def test_a_saved_card_past_its_expiry_declines(sandbox, clock):
    customer, done = saved(sandbox, "card:4242424242424242:11/26")
    assert sandbox.charge_saved_method(100, "EUR", customer, done.payment_method, "k1", {}).status == SUCCEEDED
    clock.at = datetime(2026, 12, 1, tzinfo=timezone.utc)
    late = sandbox.charge_saved_method(100, "EUR", customer, done.payment_method, "k2", {})
    assert (late.status, late.error_code) == (REQUIRES_PAYMENT_METHOD, "expired_card")


@pytest.mark.parametrize("account, settles", [
    ("sepa_debit:DE89370400440532013000", SUCCEEDED),
    ("sepa_debit:DE62370400440532013001", REQUIRES_PAYMENT_METHOD),
    ("us_bank_account:000123456789", SUCCEEDED),
])
def test_charging_a_saved_bank_account_processes_then_settles(sandbox, clock, account, settles):
    customer, done = saved(sandbox, account)
    intent = sandbox.charge_saved_method(5000, "EUR", customer, done.payment_method, "k", {})
    assert intent.status == PROCESSING and intent.payment_method_type == account.split(":")[0]
    clock.at += SETTLE_AFTER + timedelta(seconds=1)
    assert sandbox.retrieve_intent(intent.id).status == settles


def test_a_detached_method_or_another_customer_cannot_be_charged(sandbox):
    customer, done = saved(sandbox)
    other = sandbox.ensure_customer("client-2", None, "Other", "other")
    with pytest.raises(GatewayError) as caught:
        sandbox.charge_saved_method(100, "EUR", other, done.payment_method, "k1", {})
    assert caught.value.code == "payment_method_unexpected_state"
    sandbox.detach_payment_method(done.payment_method)
    sandbox.detach_payment_method(done.payment_method)  # twice is fine
    with pytest.raises(GatewayError) as caught:
        sandbox.charge_saved_method(100, "EUR", customer, done.payment_method, "k2", {})
    assert caught.value.code == "payment_method_unexpected_state"
    with pytest.raises(GatewayError) as caught:
        sandbox.retrieve_payment_method("pm_sbx_nope")
    assert caught.value.code == "resource_missing"

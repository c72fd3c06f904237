"""The credit note split rules (billing.credit_notes): pure arithmetic, field errors."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.billing.credit_notes import Room, Split, check_split, parse_split
from tests.support.profiles import examples

PAID_100 = Room(total=10000, amount_due=0, received=10000)
OPEN_100 = Room(total=10000, amount_due=10000, received=0)


def test_parse_reads_amounts_and_blank_is_zero():
    split, errors = parse_split({"to_due": "12.50", "to_balance": "", "to_refund": " 3 ", "to_outside": "0"}, "EUR")
    assert errors == {}
    assert split == Split(to_due=1250, to_balance=0, to_refund=300, to_outside=0)
    assert split.amount == 1550 and split.post_payment == 300


def test_parse_refuses_what_is_not_an_amount():
    split, errors = parse_split({"to_due": "abc", "to_balance": "-1", "to_refund": "1.234", "to_outside": "NaN"},
                                "EUR")
    assert errors == {"to_due": "Use an amount like 25.00.", "to_balance": "Enter zero or more.",
                      "to_refund": "Use an amount like 25.00.", "to_outside": "Use an amount like 25.00."}
    assert split.amount == 0


def test_parse_follows_the_currency_exponent():
    split, errors = parse_split({"to_due": "500"}, "JPY")
    assert errors == {} and split.to_due == 500
    assert parse_split({"to_due": "5.5"}, "JPY")[1] == {"to_due": "Use an amount like 25.00."}


def test_a_split_within_every_limit_passes():
    assert check_split(Split(to_due=4000), OPEN_100, "EUR") == {}
    room = Room(total=10000, amount_due=6000, received=4000, refundable=4000)
    assert check_split(Split(to_due=6000, to_refund=1000, to_balance=2000, to_outside=1000), room, "EUR") == {}


def test_nothing_to_credit_is_refused():
    assert check_split(Split(), OPEN_100, "EUR") == {"amount": "Enter an amount above zero in at least one part."}


def test_negative_parts_are_refused():
    assert check_split(Split(to_due=-1, to_balance=2), OPEN_100, "EUR") == {"to_due": "Enter zero or more."}


def test_to_due_is_at_most_the_amount_due():
    room = Room(total=10000, amount_due=2500, received=7500)
    assert check_split(Split(to_due=2501), room, "EUR") == {"to_due": "At most €25.00 is due."}
    assert check_split(Split(to_due=1), PAID_100, "EUR") == {"to_due": "Nothing is due on this invoice."}


def test_a_refund_needs_a_payment_and_room_on_it():
    assert check_split(Split(to_refund=100), PAID_100, "EUR") == {"payment_id": "Choose the payment to refund."}
    room = Room(total=10000, amount_due=0, received=10000, refundable=3000)
    assert check_split(Split(to_refund=3001), room, "EUR") == {
        "to_refund": "At most €30.00 of this payment can be refunded."}
    assert check_split(Split(to_refund=3000), room, "EUR") == {}


def test_money_given_back_is_at_most_what_the_invoice_received_less_earlier_notes():
    room = Room(total=10000, amount_due=6000, received=4000, credited=1000, credited_after_payment=1000)
    errors = check_split(Split(to_balance=2000, to_outside=1001), room, "EUR")
    assert list(errors) == ["to_balance"] and "at most €30.00" in errors["to_balance"]
    assert check_split(Split(to_balance=2000, to_outside=1000), room, "EUR") == {}
    # Lowering what is due is not money given back: an unpaid invoice takes it.
    assert check_split(Split(to_due=6000), room, "EUR") == {}
    errors = check_split(Split(to_outside=1), OPEN_100, "EUR")
    assert errors == {"to_outside": "The invoice has received no money that a credit note could give back."}


def test_all_credit_notes_together_are_at_most_the_total():
    room = Room(total=10000, amount_due=0, received=10000, credited=9000, credited_after_payment=9000)
    assert check_split(Split(to_balance=1000), room, "EUR") == {}
    errors = check_split(Split(to_balance=1001), room, "EUR")
    assert errors["amount"] == "Credit notes on this invoice can total at most €100.00; €10.00 is left."
    full = Room(total=10000, amount_due=0, received=10000, credited=10000, credited_after_payment=0)
    assert check_split(Split(to_outside=1), full, "EUR")["amount"] == \
        "Credit notes already cover this invoice's whole total."


def test_messages_use_the_locale():
    room = Room(total=1000000, amount_due=250000, received=0)
    assert check_split(Split(to_due=250001), room, "EUR", "de_DE") == {"to_due": "At most 2.500,00\xa0€ is due."}


amounts = st.integers(min_value=0, max_value=10**7)


@pytest.mark.money_property
@settings(max_examples=examples(400))
@given(st.builds(Split, to_due=amounts, to_balance=amounts, to_refund=amounts, to_outside=amounts),
       st.builds(Room, total=amounts, amount_due=amounts, received=amounts, credited=amounts,
                 credited_after_payment=amounts, refundable=st.one_of(st.none(), amounts)))
def test_a_split_passes_exactly_when_every_rule_holds(split, room):
    holds = (split.amount > 0 and split.to_due <= room.amount_due
             and (split.to_refund == 0 or (room.refundable is not None and split.to_refund <= room.refundable))
             and split.post_payment <= room.received - room.credited_after_payment
             and room.credited + split.amount <= room.total)
    assert (check_split(split, room, "EUR") == {}) == holds

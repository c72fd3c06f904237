"""The one parser for typed money, quantities and percentages (``billing.money``): length and
shape are checked before anything is converted; magnitude and decimals on digits and exponent."""
from __future__ import annotations

from decimal import Decimal

import pytest

from portal.billing import money
from portal.billing.money import MoneyError, parse_amount, parse_decimal, to_minor

HOSTILE = ["1e1000000", "1e-1000000", "9" * 1_000_000, "NaN", "Infinity", "-Infinity", "sNaN", "१२३", "１２",
           "12,5", "0x10", "1_000", "--1", "1.2.3", ".", "-", "e5", "1e", "+5", "1 000", "12.50€"]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: t[:12])
def test_hostile_text_is_refused_with_a_reason_and_never_overflows(text):
    for call in (lambda: to_minor(text, "EUR"), lambda: parse_amount(text, "EUR", max_minor=10 ** 14),
                 lambda: parse_decimal(text, max_places=3, max_value=1_000_000)):
        with pytest.raises(MoneyError) as caught:
            call()
        assert str(caught.value) and caught.value.reason in {"format", "places", "range"}


def test_the_length_is_checked_before_anything_is_converted(monkeypatch):
    seen = []

    class Spy(Decimal):
        def __new__(cls, value="0", *args):
            seen.append(len(str(value)))
            return Decimal.__new__(cls, value, *args)

    monkeypatch.setattr(money, "Decimal", Spy)
    for text in ("9" * 1_000_000, "1" * 33, "x" * 10_000):
        with pytest.raises(MoneyError):
            parse_amount(text, "EUR", max_minor=10 ** 12)
        with pytest.raises(MoneyError):
            to_minor(text, "EUR")
    assert all(n <= money.MAX_INPUT_LENGTH for n in seen), seen


def test_amounts_read_as_people_type_them():
    assert parse_amount(" 12.50 ", "EUR", max_minor=10 ** 12) == 1250
    assert parse_amount("1,234.05", "USD", max_minor=10 ** 12) == 123405
    assert parse_amount("12.500", "EUR", max_minor=10 ** 12) == 1250
    assert parse_amount(".5", "EUR", max_minor=10 ** 12) == 50
    assert parse_amount("1.234", "KWD", max_minor=10 ** 12) == 1234
    assert parse_amount("30000000000", "VND", max_minor=10 ** 14) == 30_000_000_000
    assert parse_amount("-5", "EUR", max_minor=10 ** 12, allow_negative=True) == -500


@pytest.mark.parametrize("text, currency, reason, message", [
    ("", "EUR", "blank", "Enter an amount, like 25.00."),
    ("abc", "EUR", "format", "Use an amount like 25.00."),
    ("1.234", "EUR", "places", "EUR amounts have at most 2 decimals."),
    ("1.5", "JPY", "places", "JPY amounts have at most 0 decimals."),
    ("-1", "EUR", "negative", "Enter zero or more."),
    ("100000000000000000000", "EUR", "range", "At most €1,000,000,000,000.00."),
    ("1e20", "EUR", "range", "At most €1,000,000,000,000.00."),
    ("1e1000000", "EUR", "range", "At most €1,000,000,000,000.00."),
    ("9" * 1_000_000, "EUR", "range", "At most €1,000,000,000,000.00."),
    ("1000000000000.01", "EUR", "range", "At most €1,000,000,000,000.00."),
])
def test_amount_messages(text, currency, reason, message):
    with pytest.raises(MoneyError) as caught:
        parse_amount(text, currency, max_minor=10 ** 14)
    assert (caught.value.reason, str(caught.value)) == (reason, message)


def test_decimals_for_quantities_and_percentages():
    assert parse_decimal("2.5", max_places=3, max_value=1_000_000) == Decimal("2.5")
    assert parse_decimal("1,000", max_places=3, max_value=1_000_000) == 1000
    assert parse_decimal("100", max_places=4, max_value=100) == 100
    for text, reason, message in (("1.2345", "places", "Use at most 3 decimal places."),
                                  ("0", "range", "Enter a number above zero."),
                                  ("-1", "negative", "Enter zero or more."),
                                  ("1000001", "range", "At most 1,000,000."),
                                  ("1e1000000", "range", "At most 1,000,000."),
                                  ("lots", "format", "Use a number like 2.5.")):
        with pytest.raises(MoneyError) as caught:
            parse_decimal(text, max_places=3, max_value=1_000_000, allow_zero=False)
        assert (caught.value.reason, str(caught.value)) == (reason, message), text


def test_to_minor_takes_ints_and_decimals_from_code_and_refuses_absurd_ones():
    assert to_minor(5, "JPY") == 5 and to_minor(Decimal("12.5"), "EUR") == 1250
    with pytest.raises(MoneyError):
        to_minor(Decimal("1e1000000"), "EUR")
    with pytest.raises(MoneyError):
        to_minor(Decimal("NaN"), "EUR")
    with pytest.raises(MoneyError):
        to_minor(10 ** 40, "EUR")

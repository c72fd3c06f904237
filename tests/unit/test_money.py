from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.billing.money import Money, MoneyError, format_money, round_half_up, to_major, to_minor


def test_amounts_parse_to_minor_units_per_currency():
    assert to_minor("12.50", "EUR") == 1250
    assert to_minor("1,234.05", "USD") == 123405
    assert to_minor("500", "JPY") == 500
    assert to_minor("1.234", "KWD") == 1234


def test_more_decimals_than_the_currency_has_are_refused_not_rounded():
    with pytest.raises(MoneyError):
        to_minor("12.505", "EUR")
    with pytest.raises(MoneyError):
        to_minor("1.5", "JPY")


@pytest.mark.parametrize("bad", ["abc", "", "NaN", "Infinity"])
def test_garbage_is_not_an_amount(bad):
    with pytest.raises(MoneyError):
        to_minor(bad, "EUR")


def test_floats_are_not_money():
    with pytest.raises(MoneyError):
        to_minor(12.5, "EUR")
    with pytest.raises(MoneyError):
        Money(12.5, "EUR")


def test_currencies_do_not_mix():
    with pytest.raises(MoneyError):
        Money(100, "EUR") + Money(100, "USD")


def test_half_up_rounding():
    assert round_half_up(Decimal("2.5")) == 3
    assert round_half_up(Decimal("2.4999")) == 2
    assert round_half_up(Decimal("-2.5")) == -3


def test_formatting_uses_the_locale():
    assert format_money(123450, "EUR", "en_IE") == "€1,234.50"
    assert format_money(123450, "EUR", "pt_PT").replace("\xa0", " ") == "1 234,50 €"


@pytest.mark.money_property
@given(st.integers(min_value=-10**12, max_value=10**12), st.sampled_from(["EUR", "USD", "JPY", "KWD"]))
def test_minor_to_major_and_back_is_exact(minor, currency):
    assert to_minor(to_major(minor, currency), currency) == minor

"""Money: integer minor units plus an ISO 4217 currency code. Never float.

Rounding rule (documented, used everywhere): ROUND_HALF_UP to the minor unit,
applied per line (see ``invoice_math``), never on the sum.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from babel.numbers import format_currency, get_currency_precision, list_currencies


class MoneyError(ValueError):
    pass


def exponent(currency: str) -> int:
    """Digits after the decimal point: EUR 2, JPY 0, KWD 3."""
    return get_currency_precision(currency)


def valid_currency(code: str | None) -> bool:
    return bool(code) and code in list_currencies()


def round_half_up(value: Decimal) -> int:
    """A Decimal amount of minor units → int, half away from zero."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_minor(amount: str | Decimal | int, currency: str) -> int:
    """Parse a major-unit amount ("12.50") into minor units (1250).

    Refuses more decimals than the currency has, rather than rounding what a
    person typed.
    """
    if isinstance(amount, float):
        raise MoneyError("floats are not money")
    try:
        value = Decimal(str(amount).strip().replace(",", "")) if not isinstance(amount, Decimal) else amount
    except InvalidOperation as exc:
        raise MoneyError(f"{amount!r} is not an amount") from exc
    if not value.is_finite():
        raise MoneyError(f"{amount!r} is not an amount")
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{currency} amounts have at most {exponent(currency)} decimals")
    return int(scaled)


def to_major(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


def format_money(minor: int, currency: str, locale: str = "en_US") -> str:
    return format_currency(to_major(minor, currency), currency, locale=locale)


@dataclass(frozen=True)
class Money:
    minor: int
    currency: str

    def __post_init__(self):
        if not isinstance(self.minor, int) or isinstance(self.minor, bool):
            raise MoneyError("Money.minor must be an int of minor units")
        if not valid_currency(self.currency):
            raise MoneyError(f"unknown currency {self.currency!r}")

    def _same(self, other: "Money") -> None:
        if not isinstance(other, Money) or other.currency != self.currency:
            raise MoneyError("cannot mix currencies")

    def __add__(self, other: "Money") -> "Money":
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: "Money") -> "Money":
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> "Money":
        return Money(-self.minor, self.currency)

    def format(self, locale: str = "en_US") -> str:
        return format_money(self.minor, self.currency, locale)

"""Money: integer minor units plus an ISO 4217 currency code. Never float.

Rounding rule (documented, used everywhere): ROUND_HALF_UP to the minor unit,
applied per line (see ``invoice_math``), never on the sum.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from babel.numbers import format_currency, get_currency_precision, list_currencies


class MoneyError(ValueError):
    """A typed amount or number that cannot be used. ``reason`` says why, for callers that word it
    their own way: ``blank``, ``format``, ``places``, ``range`` (too large, or zero where it must be
    above zero) or ``negative``. The message is one a person understands."""

    def __init__(self, message: str = "", reason: str = "format"):
        super().__init__(message)
        self.reason = reason


def exponent(currency: str) -> int:
    """Digits after the decimal point: EUR 2, JPY 0, KWD 3."""
    return get_currency_precision(currency)


def valid_currency(code: str | None) -> bool:
    return bool(code) and code in list_currencies()


def round_half_up(value: Decimal) -> int:
    """A Decimal amount of minor units → int, half away from zero."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# Reading what a person typed ----------------------------------------------------------------
#
# Every money, quantity, rate and percentage field goes through ``parse_amount`` or
# ``parse_decimal`` (and other code through ``to_minor``). The raw text is checked for length and
# shape (ASCII digits, an optional minus, thousands commas, one decimal point, an optional
# exponent) before ``Decimal`` sees it, then its magnitude and decimals are checked on the digits
# and exponent alone, with no arithmetic: "1e1000000", a million digits, "NaN", "Infinity" and
# non-ASCII digits are refused at once, never converted.

MAX_INPUT_LENGTH = 32          # characters, after trimming surrounding spaces
MAX_MAGNITUDE_DIGITS = 18      # |value| < 10^18 in major units, whatever the caller's own cap
_NUMBER = re.compile(
    r"(?P<sign>-)?(?P<int>[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)?(?:\.(?P<frac>[0-9]*))?(?:[eE](?P<exp>[+-]?[0-9]+))?")
_NUMBER_CHARS = frozenset("0123456789,.-")


def _example(places: int) -> str:
    return "25" + ("." + "0" * places if places else "")


def _read(text, example: str, what: str) -> Decimal:
    """Text (or an int/Decimal from code) → a finite Decimal of sane magnitude; MoneyError else."""
    if isinstance(text, float):
        raise MoneyError("floats are not money")
    if isinstance(text, bool) or text is None:
        raise MoneyError(f"Enter {what}, like {example}.", "blank")
    if isinstance(text, Decimal):
        value = text
    elif isinstance(text, int):
        if text.bit_length() > 64:
            raise MoneyError("That amount is too large.", "range")
        value = Decimal(text)
    else:
        raw = str(text).strip()
        if not raw:
            raise MoneyError(f"Enter {what}, like {example}.", "blank")
        if len(raw) > MAX_INPUT_LENGTH:
            if set(raw) <= _NUMBER_CHARS:
                raise MoneyError("That amount is too large.", "range")
            raise MoneyError(f"Use {what} like {example}.")
        match = _NUMBER.fullmatch(raw)
        if match is None or not (match["int"] or match["frac"]):
            raise MoneyError(f"Use {what} like {example}.")
        try:
            value = Decimal(raw.replace(",", ""))
        except InvalidOperation:  # pragma: no cover - the pattern admits only what Decimal reads
            raise MoneyError(f"Use {what} like {example}.") from None
    if not value.is_finite():
        raise MoneyError(f"Use {what} like {example}.")
    if value and value.adjusted() >= MAX_MAGNITUDE_DIGITS:
        raise MoneyError("That amount is too large.", "range")
    return value


def _places(value: Decimal) -> int:
    """Decimals that matter ("12.500" has 1), from the digits and exponent: no arithmetic."""
    _sign, digits, exp = value.as_tuple()
    if not any(digits):
        return 0
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exp + trailing))


def _scaled_int(value: Decimal, places: int) -> int:
    """value × 10^places as an exact int (the caller checked it is whole), by integer math."""
    sign, digits, exp = value.as_tuple()
    if not any(digits):
        return 0
    number = int("".join(map(str, digits)))
    shift = exp + places
    number = number * 10 ** shift if shift >= 0 else number // 10 ** -shift
    return -number if sign else number


def _to_minor_checked(value: Decimal, currency: str, message: str) -> int:
    places = exponent(currency)
    if _places(value) > places:
        raise MoneyError(message.format(currency=currency, places=places), "places")
    return _scaled_int(value, places)


def to_minor(amount: str | Decimal | int, currency: str) -> int:
    """Parse a major-unit amount ("12.50") into minor units (1250).

    Refuses more decimals than the currency has, rather than rounding what a
    person typed. Safe on any input: a string longer than ``MAX_INPUT_LENGTH``,
    an exponent, NaN, non-ASCII digits or a magnitude of 10^18 or more raise
    MoneyError (never ``decimal.Overflow``). Negative amounts are returned; the
    caller decides. Pages use ``parse_amount``, which also caps and words it.
    """
    value = _read(amount, _example(exponent(currency)), "an amount")
    return _to_minor_checked(value, currency, "{currency} amounts have at most {places} decimals")


def parse_amount(text: str, currency: str, *, max_minor: int, allow_negative: bool = False) -> int:
    """What a person typed in a money field → minor units, or MoneyError with the message to show
    beside the field ("Use an amount like 25.00.", "At most €1,000,000.00.")."""
    example = _example(exponent(currency))
    try:
        value = _read(text, example, "an amount")
    except MoneyError as exc:
        if exc.reason == "range":
            raise MoneyError(f"At most {format_money(max_minor, currency)}.", "range") from None
        raise
    minor = _to_minor_checked(value, currency, "{currency} amounts have at most {places} decimals.")
    if minor < 0 and not allow_negative:
        raise MoneyError("Enter zero or more.", "negative")
    if abs(minor) > max_minor:
        raise MoneyError(f"At most {format_money(max_minor, currency)}.", "range")
    return minor


def parse_decimal(text: str, *, max_places: int, max_value: int | Decimal, allow_zero: bool = True,
                  example: str = "2.5") -> Decimal:
    """A typed quantity, rate or percentage → Decimal (exactly as typed, never rounded), or
    MoneyError with the message to show. Negative numbers are refused; zero when ``allow_zero`` is
    False."""
    limit = Decimal(max_value)
    try:
        value = _read(text, example, "a number")
    except MoneyError as exc:
        if exc.reason == "range":
            raise MoneyError(f"At most {limit:,}.", "range") from None
        raise
    if _places(value) > max_places:
        raise MoneyError(f"Use at most {max_places} decimal places.", "places")
    if value < 0:
        raise MoneyError("Enter zero or more.", "negative")
    if value == 0 and not allow_zero:
        raise MoneyError("Enter a number above zero.", "range")
    if value > limit:
        raise MoneyError(f"At most {limit:,}.", "range")
    return value


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

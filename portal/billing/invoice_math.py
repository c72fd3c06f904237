"""Invoice totals, computed once, the same way everywhere.

Rules (half-up rounding to the minor unit, per line):

1. ``gross = round(quantity × unit_price)``.
2. A line discount is a percentage of ``gross`` (rounded) or a fixed amount
   (capped at ``gross``).
3. An invoice discount ``D`` is a percentage of the discounted lines' sum
   (rounded once) or a fixed amount (capped at that sum); it is spread over
   the lines in proportion to their discounted amounts, largest remainder
   first, so the parts add up to exactly ``D``.
4. Tax applies per line to what is left (``net``):
   exclusive: ``tax = round(net × rate / 100)``, added on top;
   inclusive: ``tax = net − round(net × 100 / (100 + rate))``, already inside.
5. ``subtotal = Σ gross``; ``discounts = Σ line and invoice discounts``;
   ``taxes = Σ exclusive taxes``; ``total = subtotal − discounts + taxes``.
   Inclusive taxes are reported (``included_taxes``) but not added.
6. ``amount_due = total − amount_paid − credit_applied − credit_noted`` (never below 0: money above
   what is due goes to the client's credit balance).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from portal.billing.money import round_half_up

HUNDRED = Decimal(100)


@dataclass(frozen=True)
class TaxRate:
    name: str
    percent: Decimal
    inclusive: bool = False

    def __post_init__(self):
        if not isinstance(self.percent, Decimal):
            raise TypeError("tax percent must be a Decimal")
        if self.percent < 0 or self.percent > 100:
            raise ValueError("tax percent must be between 0 and 100")


@dataclass(frozen=True)
class Discount:
    """``percent`` (a Decimal 0–100) or ``fixed`` (int minor units ≥ 0)."""

    kind: str
    value: Decimal | int

    def __post_init__(self):
        if self.kind == "percent":
            if not isinstance(self.value, Decimal) or not 0 <= self.value <= 100:
                raise ValueError("a percent discount is a Decimal between 0 and 100")
        elif self.kind == "fixed":
            if not isinstance(self.value, int) or isinstance(self.value, bool) or self.value < 0:
                raise ValueError("a fixed discount is a non-negative int of minor units")
        else:
            raise ValueError("discount kind is 'percent' or 'fixed'")

    def of(self, amount: int) -> int:
        if self.kind == "percent":
            return round_half_up(Decimal(amount) * self.value / HUNDRED)
        return min(int(self.value), amount)


@dataclass(frozen=True)
class Line:
    quantity: Decimal
    unit_price: int
    discount: Discount | None = None
    tax: TaxRate | None = None

    def __post_init__(self):
        if not isinstance(self.quantity, Decimal):
            raise TypeError("quantity must be a Decimal")
        if not isinstance(self.unit_price, int) or isinstance(self.unit_price, bool):
            raise TypeError("unit_price must be an int of minor units")
        if self.quantity <= 0:
            raise ValueError("quantity must be positive")
        if self.unit_price < 0:
            raise ValueError("unit price cannot be negative")


@dataclass(frozen=True)
class LineTotals:
    gross: int
    line_discount: int
    invoice_discount: int
    net: int
    tax: int
    tax_inclusive: bool
    total: int

    @property
    def discount(self) -> int:
        return self.line_discount + self.invoice_discount


@dataclass(frozen=True)
class TaxLine:
    name: str
    percent: Decimal
    inclusive: bool
    base: int
    amount: int


@dataclass(frozen=True)
class Totals:
    lines: tuple[LineTotals, ...]
    subtotal: int
    discounts: int
    taxes: int
    included_taxes: int
    total: int
    tax_breakdown: tuple[TaxLine, ...] = field(default_factory=tuple)


def allocate(amount: int, weights: list[int]) -> list[int]:
    """Split ``amount`` in proportion to ``weights`` (largest remainder); parts sum to ``amount``."""
    total = sum(weights)
    if amount == 0 or total == 0:
        return [0] * len(weights)
    shares = [amount * w // total for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(amount * weights[i] % total), i))
    for i in remainders[: amount - sum(shares)]:
        shares[i] += 1
    return shares


def compute(lines: list[Line], invoice_discount: Discount | None = None) -> Totals:
    gross = [round_half_up(line.quantity * line.unit_price) for line in lines]
    line_discounts = [line.discount.of(g) if line.discount else 0 for line, g in zip(lines, gross)]
    after_line = [g - d for g, d in zip(gross, line_discounts)]
    whole = invoice_discount.of(sum(after_line)) if invoice_discount else 0
    spread = allocate(whole, after_line)

    results: list[LineTotals] = []
    breakdown: dict[tuple[str, Decimal, bool], list[int]] = {}
    for line, g, ld, shared, base in zip(lines, gross, line_discounts, spread, after_line):
        net = base - shared
        tax = 0
        inclusive = bool(line.tax and line.tax.inclusive)
        if line.tax is not None:
            if inclusive:
                tax = net - round_half_up(Decimal(net) * HUNDRED / (HUNDRED + line.tax.percent))
            else:
                tax = round_half_up(Decimal(net) * line.tax.percent / HUNDRED)
            key = (line.tax.name, line.tax.percent, inclusive)
            bucket = breakdown.setdefault(key, [0, 0])
            bucket[0] += net - tax if inclusive else net
            bucket[1] += tax
        total = net if inclusive else net + tax
        results.append(LineTotals(g, ld, shared, net, tax, inclusive, total))

    subtotal = sum(gross)
    discounts = sum(r.discount for r in results)
    taxes = sum(r.tax for r in results if not r.tax_inclusive)
    included = sum(r.tax for r in results if r.tax_inclusive)
    return Totals(
        lines=tuple(results),
        subtotal=subtotal,
        discounts=discounts,
        taxes=taxes,
        included_taxes=included,
        total=subtotal - discounts + taxes,
        tax_breakdown=tuple(
            TaxLine(name, percent, inclusive, base, amount)
            for (name, percent, inclusive), (base, amount) in sorted(
                breakdown.items(), key=lambda item: (item[0][1], item[0][0], item[0][2]))
        ),
    )


def amount_due(total: int, amount_paid: int, credit_applied: int = 0, credit_noted: int = 0) -> int:
    """What is still owed: the total less money received, credit applied and credit notes that lowered it."""
    return total - amount_paid - credit_applied - credit_noted


def allocate_oldest_first(amount: int, dues: list[int]) -> tuple[list[int], int]:
    """Spread ``amount`` over amounts due, in the order given (oldest first): each gets at most what
    it is due. Returns the part for each and what is left over (the excess, for the credit balance)."""
    if amount < 0 or any(due < 0 for due in dues):
        raise ValueError("amounts must not be negative")
    parts = []
    left = amount
    for due in dues:
        part = min(due, left)
        parts.append(part)
        left -= part
    return parts, left

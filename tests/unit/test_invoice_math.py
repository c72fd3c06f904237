from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.billing.invoice_math import Discount, Line, TaxRate, allocate, amount_due, compute
from portal.billing.money import round_half_up
from tests.support.profiles import examples

rates = st.builds(
    TaxRate,
    name=st.sampled_from(["VAT", "GST", "Sales tax"]),
    percent=st.decimals(min_value=0, max_value=30, places=3),
    inclusive=st.booleans(),
)
percent_discounts = st.builds(Discount, kind=st.just("percent"), value=st.decimals(min_value=0, max_value=100, places=2))
fixed_discounts = st.builds(Discount, kind=st.just("fixed"), value=st.integers(min_value=0, max_value=10**7))
discounts = st.one_of(st.none(), percent_discounts, fixed_discounts)
lines = st.builds(
    Line,
    quantity=st.decimals(min_value=Decimal("0.001"), max_value=1000, places=3),
    unit_price=st.integers(min_value=0, max_value=10**8),
    discount=discounts,
    tax=st.one_of(st.none(), rates),
)


@pytest.mark.money_property
@settings(max_examples=examples(300))
@given(st.lists(lines, min_size=1, max_size=12), discounts)
def test_total_is_subtotal_minus_discounts_plus_taxes(invoice_lines, invoice_discount):
    totals = compute(invoice_lines, invoice_discount)
    assert totals.total == totals.subtotal - totals.discounts + totals.taxes
    assert totals.total == sum(line.total for line in totals.lines)
    for value in (totals.subtotal, totals.discounts, totals.taxes, totals.included_taxes, totals.total):
        assert isinstance(value, int) and not isinstance(value, bool)


@pytest.mark.money_property
@settings(max_examples=examples(300))
@given(st.lists(lines, min_size=1, max_size=12), discounts)
def test_each_line_follows_the_rounding_rule(invoice_lines, invoice_discount):
    totals = compute(invoice_lines, invoice_discount)
    for line, result in zip(invoice_lines, totals.lines):
        assert result.gross == round_half_up(line.quantity * line.unit_price)
        assert 0 <= result.discount <= result.gross
        assert result.net == result.gross - result.discount
        if line.tax is None:
            assert result.tax == 0 and result.total == result.net
        elif line.tax.inclusive:
            base = round_half_up(Decimal(result.net) * 100 / (100 + line.tax.percent))
            assert result.tax == result.net - base
            assert result.total == result.net
        else:
            assert result.tax == round_half_up(Decimal(result.net) * line.tax.percent / 100)
            assert result.total == result.net + result.tax


@pytest.mark.money_property
@settings(max_examples=examples(200))
@given(st.lists(lines, min_size=1, max_size=12), discounts)
def test_tax_breakdown_adds_up(invoice_lines, invoice_discount):
    totals = compute(invoice_lines, invoice_discount)
    assert sum(t.amount for t in totals.tax_breakdown if not t.inclusive) == totals.taxes
    assert sum(t.amount for t in totals.tax_breakdown if t.inclusive) == totals.included_taxes
    keys = [(t.name, t.percent, t.inclusive) for t in totals.tax_breakdown]
    assert len(keys) == len(set(keys)), "one breakdown line per rate"


@pytest.mark.money_property
@given(st.integers(min_value=0, max_value=10**9), st.lists(st.integers(min_value=0, max_value=10**8), min_size=1))
def test_allocation_parts_sum_exactly(amount, weights):
    parts = allocate(amount, weights)
    if sum(weights) == 0:
        assert parts == [0] * len(weights)
    else:
        assert sum(parts) == amount
        assert all(p >= 0 for p in parts)


def test_worked_example_exclusive_tax_and_discounts():
    vat = TaxRate("VAT", Decimal("23"))
    totals = compute(
        [
            Line(Decimal("10"), 12000, tax=vat),  # 10 h design at 120.00
            Line(Decimal("1"), 50000, discount=Discount("percent", Decimal("10")), tax=vat),  # 500.00 − 10 %
        ],
        invoice_discount=Discount("fixed", 10000),  # 100.00 off the whole invoice
    )
    # gross 1200.00 + 500.00; line discount 50.00; invoice discount 100.00 spread 1200:450
    assert totals.subtotal == 170000
    assert [line.invoice_discount for line in totals.lines] == [7273, 2727]
    assert totals.discounts == 5000 + 10000
    assert totals.taxes == round_half_up(Decimal(112727) * 23 / 100) + round_half_up(Decimal(42273) * 23 / 100)
    assert totals.total == 170000 - 15000 + totals.taxes


def test_inclusive_tax_is_inside_the_price():
    totals = compute([Line(Decimal("1"), 12300, tax=TaxRate("VAT", Decimal("23"), inclusive=True))])
    assert totals.total == 12300
    assert totals.included_taxes == 2300
    assert totals.taxes == 0
    [row] = totals.tax_breakdown
    assert (row.base, row.amount) == (10000, 2300)


def test_fixed_discount_cannot_exceed_the_line():
    totals = compute([Line(Decimal("1"), 1000, discount=Discount("fixed", 5000))])
    assert totals.total == 0


@pytest.mark.parametrize("bad", [
    lambda: Line(Decimal("1"), 10.5),
    lambda: Line(1.5, 100),
    lambda: Line(Decimal("0"), 100),
    lambda: Line(Decimal("1"), -1),
    lambda: TaxRate("VAT", 23.0),
    lambda: Discount("percent", Decimal("150")),
    lambda: Discount("fixed", -5),
    lambda: Discount("half", 5),
])
def test_floats_and_nonsense_are_refused(bad):
    with pytest.raises((TypeError, ValueError)):
        bad()


def test_amount_due():
    assert amount_due(10000, 2500, 1000) == 6500

"""Money as the business writes it (its locale): the one helper every service's emails and pages use."""
from __future__ import annotations

from portal.billing.money import format_money
from portal.services.business import get_business


def money(amount: int, currency: str, locale: str | None = None) -> str:
    """``amount`` minor units of ``currency`` in the business's locale (or ``locale`` when given)."""
    return format_money(amount, currency, locale or get_business().locale)

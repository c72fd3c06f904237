"""The catalogue: tax rates and the services the business sells.

Input arrives as typed (strings); it is parsed and checked here, and a bad
value raises ``CatalogueInvalid`` (field → message) with nothing saved.
Nothing is ever deleted: a rate or service is deactivated, so invoices and
charges that name it keep working. Invoice lines copy a rate's name, percent
and kind when they are made, so editing a rate later changes no invoice.
"""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from portal.billing.money import (
    MoneyError,
    parse_amount,
    parse_decimal,
    to_major,
    valid_currency,
)
from portal.extensions import db
from portal.models import Service, TaxRate
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor, commit, record_event
from portal.services.settings import get_business

MAX_PERCENT_PLACES = 4
MAX_UNIT_PRICE = 1_000_000_000_000  # minor units (10 billion in a 2-decimal currency)
MAX_QUANTITY = 1_000_000
QUANTITY_PLACES = 3


class CatalogueInvalid(ServiceError):
    """Bad input: ``errors`` maps a field name to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("Please correct the marked fields.")
        self.errors = errors


# Reading ---------------------------------------------------------------------------


def parse_price(text: str, currency: str, errors: dict, field: str = "unit_price") -> int | None:
    """A typed price → minor units, or None with the reason in ``errors[field]``."""
    try:
        return parse_amount(text, currency, max_minor=MAX_UNIT_PRICE)
    except MoneyError as exc:
        errors[field] = {
            "places": str(exc),
            "negative": "The price can't be negative.",
            "range": "That price is too large.",
        }.get(exc.reason, "Enter the price, like 120.00.")
        return None


def parse_quantity(text: str) -> Decimal:
    """A typed quantity ("2.5"; blank is 1) of a charge or an invoice line → Decimal, or MoneyError
    with the message to show."""
    try:
        return parse_decimal((text or "").strip() or "1", max_places=QUANTITY_PLACES, max_value=MAX_QUANTITY,
                             allow_zero=False)
    except MoneyError as exc:
        if exc.reason == "range" and str(exc).startswith("At most"):
            raise
        raise MoneyError("Use a positive number, up to 3 decimals.", exc.reason) from None


def list_tax_rates(active_only: bool = False) -> list[TaxRate]:
    query = select(TaxRate).order_by(TaxRate.active.desc(), func.lower(TaxRate.name), TaxRate.id)
    if active_only:
        query = query.where(TaxRate.active.is_(True))
    return list(db.session.scalars(query))


def list_services(active_only: bool = False) -> list[Service]:
    query = select(Service).order_by(Service.active.desc(), func.lower(Service.name), Service.id)
    if active_only:
        query = query.where(Service.active.is_(True))
    return list(db.session.scalars(query))


def get_tax_rate(rate_id: int) -> TaxRate:
    rate = db.session.get(TaxRate, rate_id)
    if rate is None:
        raise NotFound("No such tax rate.")
    return rate


def get_service(service_id: int) -> Service:
    service = db.session.get(Service, service_id)
    if service is None:
        raise NotFound("No such service.")
    return service


def tax_rate_form_values(rate: TaxRate) -> dict:
    """What the edit form shows for a rate: the percent as typed, without trailing zeros."""
    return {
        "name": rate.name,
        "percent": format(Decimal(rate.percent).normalize(), "f"),
        "inclusive": "inclusive" if rate.inclusive else "exclusive",
        "active": rate.active,
    }


def service_form_values(service: Service) -> dict:
    """What the edit form shows for a service: the unit price in major units ("120.00")."""
    return {
        "name": service.name,
        "description": service.description or "",
        "unit_price": format(to_major(service.unit_price, service.currency), "f"),
        "currency": service.currency,
        "tax_rate_id": str(service.tax_rate_id) if service.tax_rate_id else "",
        "active": service.active,
    }


def new_service_defaults() -> dict:
    return {"currency": get_business().currency, "active": True}


# Parsing ---------------------------------------------------------------------------

def _text(values: dict, key: str) -> str:
    value = values.get(key)
    return value.strip() if isinstance(value, str) else ""


def _flag(values: dict, key: str, default: bool) -> bool:
    value = values.get(key, default)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "y", "yes", "true", "on")
    return bool(value)


def parse_percent(text: str) -> Decimal:
    """ "7.25" or "7.25%" → Decimal("7.2500"). Raises ValueError with the message to show."""
    raw = (text or "").strip().removesuffix("%").strip()
    try:
        value = parse_decimal(raw, max_places=MAX_PERCENT_PLACES, max_value=100, example="7.25")
    except MoneyError as exc:
        if exc.reason in ("range", "negative"):
            raise ValueError("Use a percentage between 0 and 100.") from None
        if exc.reason == "places":
            raise ValueError(str(exc)) from None
        raise ValueError("Enter the rate as a percentage, like 20 or 7.25.") from None
    return value.quantize(Decimal(1).scaleb(-MAX_PERCENT_PLACES))


def _parse_tax_rate(values: dict) -> tuple[dict, dict[str, str]]:
    errors: dict[str, str] = {}
    name = _text(values, "name")
    if not name:
        errors["name"] = "Name the tax rate, like VAT or Sales tax."
    elif len(name) > 100:
        errors["name"] = "Keep the name under 100 characters."
    percent = None
    try:
        percent = parse_percent(values.get("percent") or "")
    except ValueError as exc:
        errors["percent"] = str(exc)
    kind = _text(values, "inclusive") or "exclusive"
    if kind not in ("exclusive", "inclusive"):
        errors["inclusive"] = "Choose whether prices include this tax."
    cleaned = {"name": name, "percent": percent, "inclusive": kind == "inclusive",
               "active": _flag(values, "active", True)}
    return cleaned, errors


def _rate_snapshot(rate: TaxRate) -> dict:
    return {"name": rate.name, "percent": format(Decimal(rate.percent), "f"), "inclusive": rate.inclusive,
            "active": rate.active}


def _invalid(errors: dict[str, str]) -> None:
    if errors:
        raise CatalogueInvalid(errors)


# Tax rates ---------------------------------------------------------------------------

def create_tax_rate(values: dict, actor: Actor) -> TaxRate:
    cleaned, errors = _parse_tax_rate(values)
    _invalid(errors)
    rate = TaxRate(**cleaned)
    db.session.add(rate)
    db.session.flush()
    record_event("tax_rate.created", "tax_rate", rate.id, actor, after=_rate_snapshot(rate))
    commit()
    return rate


def update_tax_rate(rate: TaxRate, values: dict, actor: Actor) -> TaxRate:
    """Edit a rate. Invoice lines made with it keep the name and percent they copied."""
    cleaned, errors = _parse_tax_rate(values)
    _invalid(errors)
    before = _rate_snapshot(rate)
    for key, value in cleaned.items():
        setattr(rate, key, value)
    db.session.flush()
    after = _rate_snapshot(rate)
    changed = [k for k in after if before[k] != after[k]]
    if changed:
        record_event("tax_rate.updated", "tax_rate", rate.id, actor,
                     before={k: before[k] for k in changed}, after={k: after[k] for k in changed})
    commit()
    return rate


def set_tax_rate_active(rate: TaxRate, active: bool, actor: Actor) -> TaxRate:
    """Deactivate (or reactivate) a rate: inactive rates are no longer offered for new lines."""
    if rate.active != active:
        rate.active = active
        record_event("tax_rate.activated" if active else "tax_rate.deactivated", "tax_rate", rate.id, actor,
                     before={"active": not active}, after={"active": active})
    commit()
    return rate


# Services ---------------------------------------------------------------------------

def _parse_service(values: dict, current: Service | None) -> tuple[dict, dict[str, str]]:
    errors: dict[str, str] = {}
    name = _text(values, "name")
    if not name:
        errors["name"] = "Name the service."
    elif len(name) > 200:
        errors["name"] = "Keep the name under 200 characters."
    description = _text(values, "description")
    if len(description) > 5000:
        errors["description"] = "Keep the description under 5,000 characters."
    currency = _text(values, "currency").upper() or get_business().currency
    if not valid_currency(currency):
        errors["currency"] = "Use a three-letter currency code, like EUR."
    unit_price = None
    price_text = _text(values, "unit_price")
    if not price_text:
        errors["unit_price"] = "Enter the price, like 120.00."
    elif "currency" not in errors:
        unit_price = parse_price(price_text, currency, errors)
    tax_rate_id = None
    tax_text = _text(values, "tax_rate_id")
    if tax_text:
        rate = db.session.get(TaxRate, int(tax_text)) if tax_text.isascii() and tax_text.isdigit() \
            and len(tax_text) <= 18 else None
        keeps_current = current is not None and rate is not None and rate.id == current.tax_rate_id
        if rate is None or not (rate.active or keeps_current):
            errors["tax_rate_id"] = "Choose an active tax rate from the list."
        else:
            tax_rate_id = rate.id
    cleaned = {"name": name, "description": description or None, "unit_price": unit_price,
               "currency": currency, "tax_rate_id": tax_rate_id, "active": _flag(values, "active", True)}
    return cleaned, errors


def _service_snapshot(service: Service) -> dict:
    return {"name": service.name, "description": service.description, "unit_price": service.unit_price,
            "currency": service.currency, "tax_rate_id": service.tax_rate_id, "active": service.active}


def create_service(values: dict, actor: Actor) -> Service:
    cleaned, errors = _parse_service(values, None)
    _invalid(errors)
    service = Service(**cleaned)
    db.session.add(service)
    db.session.flush()
    record_event("service.created", "service", service.id, actor, after=_service_snapshot(service))
    commit()
    return service


def update_service(service: Service, values: dict, actor: Actor) -> Service:
    cleaned, errors = _parse_service(values, service)
    _invalid(errors)
    before = _service_snapshot(service)
    for key, value in cleaned.items():
        setattr(service, key, value)
    after = _service_snapshot(service)
    changed = [k for k in after if before[k] != after[k]]
    if changed:
        record_event("service.updated", "service", service.id, actor,
                     before={k: before[k] for k in changed}, after={k: after[k] for k in changed})
    commit()
    return service


def set_service_active(service: Service, active: bool, actor: Actor) -> Service:
    if service.active != active:
        service.active = active
        record_event("service.activated" if active else "service.deactivated", "service", service.id, actor,
                     before={"active": not active}, after={"active": active})
    commit()
    return service

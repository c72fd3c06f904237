"""Plans: a service priced per cycle (day, week, month or year × interval), with a currency, a tax
rate, and optionally a setup fee and trial days. A self-serve plan can be subscribed to from the
portal and through its public checkout link (``/subscribe/<checkout_key>``).

All-or-nothing: bad input raises ``PlanInvalid`` (field → message) and writes nothing. A plan's price
may change later; subscriptions keep the price their items were given (a change is a plan change).
"""
from __future__ import annotations

import secrets

from sqlalchemy import func, select

from portal.billing import cycles
from portal.billing.money import valid_currency
from portal.extensions import db
from portal.models import Plan, Service, TaxRate
from portal.services.business import get_business
from portal.services.catalogue import CatalogueInvalid, parse_price
from portal.services.errors import NotFound
from portal.services.events import Actor, commit, record_event
from portal.services.typed import row_id, whole_number

MAX_TRIAL_DAYS = 730
UNIT_CHOICES = [("day", "Day"), ("week", "Week"), ("month", "Month"), ("year", "Year")]


class PlanInvalid(CatalogueInvalid):
    """Bad input: ``errors`` maps a field name to its message."""


def list_plans(active_only: bool = False, self_serve_only: bool = False) -> list[Plan]:
    query = select(Plan).order_by(func.lower(Plan.name), Plan.id)
    if active_only:
        query = query.where(Plan.active.is_(True))
    if self_serve_only:
        query = query.where(Plan.self_serve.is_(True))
    return list(db.session.scalars(query))


def get_plan(plan_id: int) -> Plan:
    plan = db.session.get(Plan, plan_id)
    if plan is None:
        raise NotFound("No such plan.")
    return plan


def plan_by_key(key: str) -> Plan:
    """The active self-serve plan behind a public checkout link (anything else: not found)."""
    key = (key or "").strip()
    plan = None
    if 16 <= len(key) <= 32 and key.isascii() and key.replace("-", "").replace("_", "").isalnum():
        plan = db.session.scalar(select(Plan).where(Plan.checkout_key == key))
    if plan is None or not plan.active or not plan.self_serve:
        raise NotFound("No such plan.")
    return plan


def cycle_label(plan) -> str:
    """"every month", "every 3 months"."""
    return "every " + cycles.describe(plan.unit, plan.interval)


def new_plan_defaults() -> dict:
    return {"currency": get_business().currency, "unit": "month", "interval": "1", "trial_days": "0",
            "active": "y"}


def plan_form_values(plan: Plan) -> dict:
    from portal.billing.money import to_major

    return {
        "name": plan.name, "description": plan.description or "",
        "service_id": str(plan.service_id or ""),
        "unit_price": format(to_major(plan.unit_price, plan.currency), "f"), "currency": plan.currency,
        "unit": plan.unit, "interval": str(plan.interval), "tax_rate_id": str(plan.tax_rate_id or ""),
        "setup_fee": format(to_major(plan.setup_fee, plan.currency), "f") if plan.setup_fee else "",
        "trial_days": str(plan.trial_days), "self_serve": "y" if plan.self_serve else "",
        "active": "y" if plan.active else "",
    }


def _text(values: dict, key: str) -> str:
    value = values.get(key)
    return value.strip() if isinstance(value, str) else ""


def _flag(values: dict, key: str) -> bool:
    return _text(values, key).lower() in ("y", "yes", "on", "true", "1")


def parse_plan(values: dict, current: Plan | None = None) -> tuple[dict, dict[str, str]]:
    errors: dict[str, str] = {}
    name = _text(values, "name")
    if not name:
        errors["name"] = "Name the plan."
    elif len(name) > 200:
        errors["name"] = "Keep the name under 200 characters."
    description = _text(values, "description")
    if len(description) > 5000:
        errors["description"] = "Keep the description under 5,000 characters."

    service = None
    service_text = _text(values, "service_id")
    if service_text:
        service = db.session.get(Service, row_id(service_text)) if row_id(service_text) else None
        if service is None or not (service.active or (current is not None and current.service_id == service.id)):
            errors["service_id"] = "Choose an active service from the catalogue."
            service = None

    currency = _text(values, "currency").upper() or (service.currency if service else get_business().currency)
    if not valid_currency(currency):
        errors["currency"] = "Use a three-letter currency code, like EUR."

    unit_price = None
    price_text = _text(values, "unit_price")
    if not price_text:
        errors["unit_price"] = "Enter the price per cycle, like 49.00."
    elif "currency" not in errors:
        unit_price = parse_price(price_text, currency, errors)
        if unit_price is not None and unit_price <= 0:
            errors["unit_price"] = "A plan's price must be above zero."
            unit_price = None

    unit = _text(values, "unit")
    if unit not in cycles.UNITS:
        errors["unit"] = "Choose day, week, month or year."
    interval = whole_number(_text(values, "interval") or "1")
    if interval is None or interval < 1:
        errors["interval"] = "Bill every 1 or more cycles."
        interval = None
    elif unit in cycles.UNITS and interval > cycles.MAX_INTERVAL[unit]:
        errors["interval"] = f"At most {cycles.MAX_INTERVAL[unit]} {unit}s (five years)."
        interval = None

    tax_rate_id = None
    tax_text = _text(values, "tax_rate_id")
    if tax_text:
        rate = db.session.get(TaxRate, row_id(tax_text)) if row_id(tax_text) else None
        keeps_current = current is not None and rate is not None and rate.id == current.tax_rate_id
        if rate is None or not (rate.active or keeps_current):
            errors["tax_rate_id"] = "Choose an active tax rate from the list."
        else:
            tax_rate_id = rate.id
    elif "tax_rate_id" not in values and service is not None:
        tax_rate_id = service.tax_rate_id

    setup_fee = None
    fee_text = _text(values, "setup_fee")
    if fee_text and "currency" not in errors:
        setup_fee = parse_price(fee_text, currency, errors, field="setup_fee")
        if setup_fee == 0:
            setup_fee = None

    trial_days = whole_number(_text(values, "trial_days") or "0")
    if trial_days is None or trial_days > MAX_TRIAL_DAYS:
        errors["trial_days"] = f"Use 0 to {MAX_TRIAL_DAYS} days."
        trial_days = 0

    cleaned = {
        "name": name, "description": description or None, "service_id": service.id if service else None,
        "unit_price": unit_price, "currency": currency, "unit": unit, "interval": interval,
        "tax_rate_id": tax_rate_id, "setup_fee": setup_fee, "trial_days": trial_days,
        "self_serve": _flag(values, "self_serve"), "active": _flag(values, "active") if "active" in values else True,
    }
    return cleaned, errors


def _snapshot(plan: Plan) -> dict:
    return {"name": plan.name, "unit_price": plan.unit_price, "currency": plan.currency, "unit": plan.unit,
            "interval": plan.interval, "tax_rate_id": plan.tax_rate_id, "setup_fee": plan.setup_fee,
            "trial_days": plan.trial_days, "self_serve": plan.self_serve, "active": plan.active,
            "service_id": plan.service_id}


def create_plan(values: dict, actor: Actor) -> Plan:
    cleaned, errors = parse_plan(values)
    if errors:
        raise PlanInvalid(errors)
    plan = Plan(checkout_key=secrets.token_urlsafe(18)[:24], **cleaned)
    db.session.add(plan)
    db.session.flush()
    record_event("plan.created", "plan", plan.id, actor, after=_snapshot(plan))
    commit()
    return plan


def update_plan(plan: Plan, values: dict, actor: Actor) -> Plan:
    """Change a plan. Its cycle and currency stay once a subscription uses it (the items' periods and
    money depend on them): a different cycle is a new plan."""
    cleaned, errors = parse_plan(values, plan)
    from portal.models import SubscriptionItem

    used = db.session.scalar(select(SubscriptionItem.id).where(SubscriptionItem.plan_id == plan.id).limit(1))
    if used is not None:
        for field in ("unit", "interval", "currency"):
            if cleaned[field] is not None and cleaned[field] != getattr(plan, field) and field not in errors:
                errors[field] = "Subscriptions use this plan: its cycle and currency can't change. Make a new plan."
    if errors:
        raise PlanInvalid(errors)
    before = _snapshot(plan)
    for key, value in cleaned.items():
        setattr(plan, key, value)
    after = _snapshot(plan)
    changed = [k for k in after if before[k] != after[k]]
    if changed:
        record_event("plan.updated", "plan", plan.id, actor,
                     before={k: before[k] for k in changed}, after={k: after[k] for k in changed})
    commit()
    return plan


def set_plan_active(plan: Plan, active: bool, actor: Actor) -> Plan:
    """Archive (no new subscriptions; existing ones go on) or restore a plan."""
    if plan.active != active:
        plan.active = active
        record_event("plan.activated" if active else "plan.archived", "plan", plan.id, actor,
                     before={"active": not active}, after={"active": active})
    commit()
    return plan

"""One-off unbilled charges on a client.

A charge is ``open`` until an invoice takes it: ``services.invoices.create_draft``
moves it to ``drafted`` (deleting that draft returns it to ``open``) and
finalizing marks it ``billed``. Only open charges can be deleted.
"""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import delete, select, update
from sqlalchemy.orm import selectinload

from portal.billing.invoice_math import Line, compute
from portal.billing.money import MoneyError, to_major, valid_currency
from portal.extensions import db
from portal.models import Charge, Client, Service, TaxRate
from portal.services.catalogue import CatalogueInvalid, parse_price, parse_quantity
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor, commit, record_event, rollback
from portal.services.settings import get_business
from portal.services.typed import row_id


class ChargeInvalid(CatalogueInvalid):
    """Bad input: ``errors`` maps a field name to its message."""


def default_currency(client: Client) -> str:
    return client.currency or get_business().currency


def list_open_charges(client: Client) -> list[Charge]:
    return list(db.session.scalars(
        select(Charge).options(selectinload(Charge.tax_rate))
        .where(Charge.client_id == client.id, Charge.status == "open").order_by(Charge.created_at, Charge.id)
    ))


def open_charges_summary(client: Client) -> dict:
    """The client's open charges, each with its amount before tax, and their sum per currency."""
    rows = []
    totals: dict[str, int] = {}
    for charge in list_open_charges(client):
        amount = compute([Line(Decimal(charge.quantity), int(charge.unit_price))]).subtotal
        rows.append({"charge": charge, "amount": amount})
        totals[charge.currency] = totals.get(charge.currency, 0) + amount
    return {"rows": rows, "totals": dict(sorted(totals.items()))}


def get_charge(client_id: int, charge_id: int) -> Charge:
    """A charge, only through its own client (a foreign id is not found)."""
    charge = db.session.get(Charge, charge_id)
    if charge is None or charge.client_id != client_id:
        raise NotFound("No such charge.")
    return charge


def new_charge_defaults(client: Client) -> dict:
    return {"quantity": "1", "currency": default_currency(client)}


def prefill_from_service(client: Client, typed: dict) -> dict:
    """The charge form after picking a catalogue service: its price, currency and tax rate, and its
    name as the description unless one was typed. Other typed values (quantity) are kept."""
    values = {k: v for k, v in typed.items() if k != "csrf_token"}
    service_id = str(typed.get("service_id") or "")
    service = db.session.get(Service, row_id(service_id)) if row_id(service_id) else None
    if service is None or not service.active:
        return values
    values.update({
        "service_id": str(service.id),
        "unit_price": format(to_major(service.unit_price, service.currency), "f"),
        "currency": service.currency,
        "tax_rate_id": str(service.tax_rate_id) if service.tax_rate_id else "",
    })
    if not str(typed.get("description") or "").strip():
        values["description"] = service.name
    values.setdefault("quantity", "1")
    return values


def _text(values: dict, key: str) -> str:
    value = values.get(key)
    return value.strip() if isinstance(value, str) else ""


def _parse(client: Client, values: dict) -> tuple[dict, dict[str, str]]:
    errors: dict[str, str] = {}
    service = None
    service_text = _text(values, "service_id")
    if service_text:
        service = db.session.get(Service, row_id(service_text)) if row_id(service_text) else None
        if service is None or not service.active:
            errors["service_id"] = "Choose an active service from the catalogue."
            service = None

    description = _text(values, "description") or (service.name if service else "")
    if not description:
        errors["description"] = "Describe the charge."
    elif len(description) > 500:
        errors["description"] = "Keep the description under 500 characters."

    quantity = None
    try:
        quantity = parse_quantity(_text(values, "quantity"))
    except MoneyError as exc:
        errors["quantity"] = str(exc)

    currency = _text(values, "currency").upper() or (service.currency if service else default_currency(client))
    if not valid_currency(currency):
        errors["currency"] = "Use a three-letter currency code, like EUR."

    unit_price = None
    price_text = _text(values, "unit_price")
    if not price_text and service is not None and service.currency == currency:
        unit_price = service.unit_price
    elif not price_text:
        errors["unit_price"] = "Enter the price, like 120.00."
    elif "currency" not in errors:
        unit_price = parse_price(price_text, currency, errors)

    tax_rate_id = None
    tax_text = _text(values, "tax_rate_id")
    if tax_text:
        rate = db.session.get(TaxRate, row_id(tax_text)) if row_id(tax_text) else None
        if rate is None or not rate.active:
            errors["tax_rate_id"] = "Choose an active tax rate from the list."
        else:
            tax_rate_id = rate.id
    elif "tax_rate_id" not in values and service is not None:
        tax_rate_id = service.tax_rate_id

    cleaned = {"description": description, "quantity": quantity, "unit_price": unit_price, "currency": currency,
               "tax_rate_id": tax_rate_id, "service_id": service.id if service else None}
    return cleaned, errors


def _snapshot(charge: Charge) -> dict:
    return {"description": charge.description, "quantity": format(Decimal(charge.quantity), "f"),
            "unit_price": charge.unit_price, "currency": charge.currency, "tax_rate_id": charge.tax_rate_id,
            "service_id": charge.service_id}


def create_charge(client: Client, values: dict, actor: Actor) -> Charge:
    """Record an open charge on a client. All-or-nothing: any bad field raises ChargeInvalid."""
    if client.archived_at is not None:
        raise ServiceError("This client is archived; restore it before adding charges.")
    cleaned, errors = _parse(client, values)
    if errors:
        raise ChargeInvalid(errors)
    charge = Charge(client_id=client.id, status="open", **cleaned)
    db.session.add(charge)
    db.session.flush()
    record_event("charge.created", "charge", charge.id, actor, after=_snapshot(charge),
                 data={"client_id": client.id})
    commit()
    return charge


def delete_charge(charge: Charge, actor: Actor) -> None:
    """Delete an open charge. One an invoice holds is refused: remove it from that draft instead.

    The delete is conditional on the charge still being open, so a draft made from it at the same
    moment wins and nothing is lost.
    """
    refusal = "This charge is on an invoice and can't be deleted here. Remove it from the invoice draft instead."
    if charge.status != "open":
        raise ServiceError(refusal)
    before = _snapshot(charge)
    client_id, charge_id = charge.client_id, charge.id
    result = db.session.execute(
        delete(Charge).where(Charge.id == charge_id, Charge.status == "open").execution_options(
            synchronize_session=False)
    )
    if result.rowcount != 1:
        rollback()
        raise ServiceError(refusal)
    db.session.expunge(charge)
    record_event("charge.deleted", "charge", charge_id, actor, before=before, data={"client_id": client_id})
    commit()


def claim_open(charge_ids) -> list[Charge]:
    """Take the charges still open among ``charge_ids`` for an invoice being made: one conditional
    UPDATE (``status = 'open'`` → ``drafted``) … RETURNING, so two paths billing a client at the same
    moment (a subscription's cycle, a monthly gathering, "invoice at once", a staff draft) never put
    one charge on two invoices: the second finds it taken and leaves it out. Oldest first. The caller
    sets ``invoice_id`` and commits."""
    ids = sorted(set(charge_ids))
    if not ids:
        return []
    taken = db.session.scalars(update(Charge).where(Charge.id.in_(ids), Charge.status == "open")
                               .values(status="drafted").returning(Charge.id)
                               .execution_options(synchronize_session=False)).all()
    if not taken:
        return []
    return list(db.session.scalars(select(Charge).where(Charge.id.in_(taken))
                                   .order_by(Charge.created_at, Charge.id)
                                   .execution_options(populate_existing=True)))

"""Drafts: parsed from what was typed (all-or-nothing: ``InvoiceInvalid`` carries every field error),
created, saved, recomputed, deleted. Money is computed only by ``billing.invoice_math``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import func, select

from portal.billing import states
from portal.billing.invoice_math import Discount, Line, amount_due, compute
from portal.billing.invoice_math import TaxRate as TaxRule
from portal.billing.money import MoneyError, parse_amount, parse_decimal, valid_currency
from portal.extensions import db
from portal.models import (
    Business,
    Charge,
    Client,
    Invoice,
    InvoiceLine,
    Service,
    TaxRate,
)
from portal.services.catalogue import MAX_UNIT_PRICE, parse_quantity
from portal.services.charges import claim_open
from portal.services.errors import ServiceError
from portal.services.events import Actor, commit, record_event
from portal.services.settings import get_business
from portal.services.typed import row_id

MAX_LINES = 500


class InvoiceInvalid(ServiceError):
    """Bad input: ``errors`` maps a field (``memo``, ``lines-2-quantity``) to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("Please correct the marked fields.")
        self.errors = errors


# Parsing what a person typed --------------------------------------------------------

@dataclass
class DraftInput:
    """A draft's header and lines as typed: strings, parsed here, never trusted."""

    currency: str
    due_date: str = ""
    memo: str = ""
    footer: str = ""
    discount_kind: str = ""
    discount_value: str = ""
    lines: list[dict] | None = None


PERCENT_PLACES = 4


def parse_discount(kind: str, value: str, currency: str, field: str, errors: dict) -> Discount | None:
    """A line's or the invoice's discount: a percentage (0–100, up to 4 decimals) or a fixed amount
    (at most ``MAX_LINE_AMOUNT``, so it always fits the money columns)."""
    kind = (kind or "").strip()
    value = (value or "").strip()
    if not kind or not value:
        return None
    if kind == "percent":
        try:
            pct = parse_decimal(value, max_places=PERCENT_PLACES, max_value=100)
        except MoneyError as exc:
            errors[field] = str(exc) if exc.reason == "places" else "Use a percentage between 0 and 100."
            return None
        return Discount("percent", pct.quantize(Decimal("0.0001")))
    if kind == "fixed":
        try:
            return Discount("fixed", parse_amount(value, currency, max_minor=MAX_LINE_AMOUNT))
        except MoneyError as exc:
            errors[field] = str(exc) if exc.reason in ("range", "places") else "Use an amount like 25.00."
            return None
    errors[field] = "Choose percent or fixed."
    return None


@dataclass
class ParsedLine:
    description: str
    quantity: Decimal
    unit_price: int
    discount: Discount | None
    tax_rate: TaxRate | None
    service_id: int | None
    charge_id: int | None

    def rule(self) -> Line:
        tax = None
        if self.tax_rate is not None:
            tax = TaxRule(self.tax_rate.name, Decimal(self.tax_rate.percent), self.tax_rate.inclusive)
        return Line(self.quantity, self.unit_price, self.discount, tax)


def parse_draft(data: DraftInput) -> tuple[list[ParsedLine], Discount | None, date | None, dict[str, str]]:
    errors: dict[str, str] = {}
    currency = (data.currency or "").strip().upper()
    if not valid_currency(currency):
        errors["currency"] = "Use a three-letter currency code, like EUR."
        currency = "USD"  # keep parsing the rest for its own errors
    due: date | None = None
    if (data.due_date or "").strip():
        try:
            due = date.fromisoformat(data.due_date.strip())
        except ValueError:
            errors["due_date"] = "Use a date like 2026-12-31."
    discount = parse_discount(data.discount_kind, data.discount_value, currency, "discount_value", errors)
    if len(data.memo or "") > 5000:
        errors["memo"] = "Keep the memo under 5,000 characters."
    if len(data.footer or "") > 2000:
        errors["footer"] = "Keep the footer under 2,000 characters."

    rates = {r.id: r for r in db.session.scalars(select(TaxRate))}
    parsed: list[ParsedLine] = []
    raw_lines = data.lines or []
    if len(raw_lines) > MAX_LINES:
        errors["lines"] = f"An invoice has at most {MAX_LINES} lines."
        raw_lines = raw_lines[:MAX_LINES]
    for i, raw in enumerate(raw_lines):
        prefix = f"lines-{i}-"
        description = (raw.get("description") or "").strip()
        if not description:
            errors[prefix + "description"] = "Describe the line."
        elif len(description) > 500:
            errors[prefix + "description"] = "Keep it under 500 characters."
        quantity = Decimal(0)
        try:
            quantity = parse_quantity(raw.get("quantity") or "")
        except MoneyError as exc:
            errors[prefix + "quantity"] = str(exc)
        unit_price = 0
        try:
            unit_price = parse_amount(raw.get("unit_price") or "", currency, max_minor=MAX_UNIT_PRICE)
        except MoneyError as exc:
            errors[prefix + "unit_price"] = "That amount is too large." if exc.reason == "range" \
                else "Use an amount like 120.00."
        else:
            if quantity * unit_price > MAX_LINE_AMOUNT:
                errors[prefix + "unit_price"] = "That amount is too large."
        line_discount = parse_discount(raw.get("discount_kind"), raw.get("discount_value"), currency,
                                       prefix + "discount_value", errors)
        tax_rate = None
        tax_id = str(raw.get("tax_rate_id") or "").strip()
        if tax_id:
            tax_rate = rates.get(row_id(tax_id))
            if tax_rate is None:
                errors[prefix + "tax_rate_id"] = "Choose a tax rate from the list."
        service_id = raw.get("service_id")
        charge_id = raw.get("charge_id")
        parsed.append(ParsedLine(
            description, quantity, unit_price, line_discount, tax_rate,
            row_id(service_id),
            row_id(charge_id),
        ))
    return parsed, discount, due, errors


def preview(data: DraftInput):
    """Totals for what is typed, without saving: the editor's live recompute."""
    lines, discount, _due, errors = parse_draft(data)
    valid = [ln for i, ln in enumerate(lines) if not any(k.startswith(f"lines-{i}-") for k in errors)]
    return compute([ln.rule() for ln in valid], discount), errors


# Drafts ------------------------------------------------------------------------------

def defaults(client: Client, business: Business) -> dict:
    return {
        "currency": client.currency or business.currency,
        "payment_terms_days": business.payment_terms_days,
        "memo": business.invoice_memo,
        "footer": business.invoice_footer,
    }


def create_draft(client: Client, actor: Actor, charge_ids: list[int] | None = None,
                 all_open_charges: bool = False) -> Invoice:
    """A new draft for a client, optionally holding some or all of its open charges."""
    business = get_business()
    invoice = Invoice(client_id=client.id, status=states.DRAFT, created_by_staff_id=actor.id
                      if actor.kind == "staff" else None, **defaults(client, business))
    db.session.add(invoice)
    db.session.flush()
    if charge_ids or all_open_charges:
        query = select(Charge.id).where(Charge.client_id == client.id, Charge.status == "open")
        if not all_open_charges:
            query = query.where(Charge.id.in_(charge_ids or []))
        # Taken with a conditional UPDATE: a charge another invoice takes at the same moment is not
        # put on this one too.
        charges = claim_open(db.session.scalars(query))
        if not charges:
            db.session.rollback()
            raise ServiceError("There are no open charges to invoice.")
        currencies = {c.currency for c in charges}
        if len(currencies) > 1:
            db.session.rollback()
            raise ServiceError("The selected charges are in different currencies; invoice them separately.")
        invoice.currency = currencies.pop()
        for position, charge in enumerate(charges):
            invoice.lines.append(InvoiceLine(
                position=position, description=charge.description, quantity=charge.quantity,
                unit_price=charge.unit_price, service_id=charge.service_id, charge_id=charge.id,
                **tax_columns(charge.tax_rate),
            ))
            charge.invoice_id = invoice.id
    recompute(invoice)
    record_event("invoice.created", "invoice", invoice.id, actor,
                 data={"client_id": client.id, "charges": [ln.charge_id for ln in invoice.lines if ln.charge_id]})
    commit()
    return invoice


def tax_columns(rate: TaxRate | None) -> dict:
    if rate is None:
        return {"tax_rate_id": None, "tax_name": None, "tax_percent": None, "tax_inclusive": False}
    return {"tax_rate_id": rate.id, "tax_name": rate.name, "tax_percent": rate.percent,
            "tax_inclusive": rate.inclusive}


def _discount_columns(discount: Discount | None) -> dict:
    if discount is None:
        return {"discount_kind": None, "discount_percent": None, "discount_fixed": None}
    if discount.kind == "percent":
        return {"discount_kind": "percent", "discount_percent": discount.value, "discount_fixed": None}
    return {"discount_kind": "fixed", "discount_percent": None, "discount_fixed": discount.value}


def _discount_of(kind, percent, fixed) -> Discount | None:
    if kind == "percent" and percent is not None:
        return Discount("percent", Decimal(percent))
    if kind == "fixed" and fixed is not None:
        return Discount("fixed", int(fixed))
    return None


def line_rule(line: InvoiceLine) -> Line:
    tax = None
    if line.tax_percent is not None:
        tax = TaxRule(line.tax_name or "Tax", Decimal(line.tax_percent), bool(line.tax_inclusive))
    return Line(Decimal(line.quantity), int(line.unit_price),
                _discount_of(line.discount_kind, line.discount_percent, line.discount_fixed), tax)


def recompute(invoice: Invoice) -> None:
    totals = compute([line_rule(ln) for ln in invoice.lines],
                     _discount_of(invoice.discount_kind, invoice.discount_percent, invoice.discount_fixed))
    for line, result in zip(invoice.lines, totals.lines):
        line.gross, line.discount_amount, line.net = result.gross, result.discount, result.net
        line.tax_amount, line.total = result.tax, result.total
    invoice.subtotal = totals.subtotal
    invoice.discount_total = totals.discounts
    invoice.tax_total = totals.taxes
    invoice.included_tax_total = totals.included_taxes
    invoice.total = totals.total
    invoice.tax_breakdown = [
        {"name": t.name, "percent": str(t.percent), "inclusive": t.inclusive, "base": t.base, "amount": t.amount}
        for t in totals.tax_breakdown
    ]
    invoice.amount_due = amount_due(invoice.total, invoice.amount_paid, invoice.credit_applied, invoice.credit_noted)


def save_draft(invoice: Invoice, data: DraftInput, actor: Actor) -> Invoice:
    """Replace a draft's header and lines. All-or-nothing: any bad field raises InvoiceInvalid."""
    if not states.is_editable(invoice.status):
        raise ServiceError("This invoice is finalized and can no longer be edited. Issue a replacement "
                           "(finalizing it voids this one), or void it.")
    lines, discount, due, errors = parse_draft(data)
    if errors:
        raise InvoiceInvalid(errors)
    invoice.currency = data.currency.strip().upper()
    invoice.due_date = due
    invoice.memo = (data.memo or "").strip() or None
    invoice.footer = (data.footer or "").strip() or None
    for key, value in _discount_columns(discount).items():
        setattr(invoice, key, value)
    # Only charges this draft already holds can stay on it; a typed-in charge id attaches nothing.
    held = {old.charge_id for old in invoice.lines if old.charge_id}
    kept_charges = {ln.charge_id for ln in lines if ln.charge_id} & held
    for old in list(invoice.lines):
        if old.charge_id and old.charge_id not in kept_charges:
            _release_charge(old.charge_id)
    invoice.lines.clear()
    db.session.flush()
    for position, parsed in enumerate(lines):
        invoice.lines.append(InvoiceLine(
            position=position, description=parsed.description, quantity=parsed.quantity,
            unit_price=parsed.unit_price, service_id=parsed.service_id,
            charge_id=parsed.charge_id if parsed.charge_id in kept_charges else None,
            **_discount_columns(parsed.discount), **tax_columns(parsed.tax_rate),
        ))
    recompute(invoice)
    record_event("invoice.draft_saved", "invoice", invoice.id, actor,
                 data={"lines": len(lines), "total": invoice.total, "currency": invoice.currency})
    commit()
    return invoice


def _release_charge(charge_id: int) -> None:
    charge = db.session.get(Charge, charge_id)
    if charge is not None and charge.status == "drafted":
        charge.status = "open"
        charge.invoice_id = None


SUBSCRIPTION_DRAFT_KEPT = ("This draft is a subscription's invoice for its period: send it, or edit its lines; "
                           "to bill nothing for the period, finalize it and void it.")


def delete_draft(invoice: Invoice, actor: Actor) -> None:
    """Delete a draft; charges it held return to open. A subscription's draft (a recurring cycle left
    for review) is refused: its period is already counted as billed, so it would never be billed."""
    if invoice.status != states.DRAFT:
        raise ServiceError("Only drafts can be deleted. Void a sent invoice instead.")
    if invoice.subscription_id is not None:  # its period is billed: deleting it would skip the period
        raise ServiceError(SUBSCRIPTION_DRAFT_KEPT)
    for line in invoice.lines:
        if line.charge_id:
            _release_charge(line.charge_id)
    record_event("invoice.draft_deleted", "invoice", invoice.id, actor,
                 before={"client_id": invoice.client_id, "total": invoice.total})
    db.session.delete(invoice)
    commit()
MAX_LINE_AMOUNT = 100_000_000_000_000


def services_catalogue(active_only: bool = True) -> list[Service]:
    query = select(Service).order_by(func.lower(Service.name))
    if active_only:
        query = query.where(Service.active.is_(True))
    return list(db.session.scalars(query))

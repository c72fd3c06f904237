"""Invoices: drafts, totals, finalize & lock, send, void, replace, manual payments, overdue.

Every function here owns its transaction (``commit()`` at the end) and writes
an event in it. Money is computed only by ``billing.invoice_math``; state
changes only through ``billing.states``.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import selectinload

from portal import clock
from portal.billing import states
from portal.billing.invoice_math import Discount, Line, TaxRate as TaxRule, amount_due, compute
from portal.billing.money import MoneyError, parse_amount, parse_decimal, valid_currency
from portal.extensions import db
from portal.models import Business, Charge, Client, Invoice, InvoiceLine, InvoiceToken, Payment, Service, TaxRate
from portal.models.payments import MANUAL_METHODS
from portal.services.catalogue import MAX_UNIT_PRICE, parse_quantity
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor, commit, record_event
from portal.services.settings import get_business

MAX_LINES = 500


class InvoiceInvalid(ServiceError):
    """Bad input: ``errors`` maps a field (``memo``, ``lines-2-quantity``) to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("Please correct the marked fields.")
        self.errors = errors


# Reading ---------------------------------------------------------------------

def get_invoice(invoice_id: int, client_id: int | None = None) -> Invoice:
    """An invoice; with ``client_id``, only that client's (anything else is not found)."""
    invoice = db.session.get(Invoice, invoice_id, options=[selectinload(Invoice.lines)])
    if invoice is None or (client_id is not None and invoice.client_id != client_id):
        raise NotFound("No such invoice.")
    return invoice


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
            tax_rate = rates.get(int(tax_id)) if tax_id.isdigit() else None
            if tax_rate is None:
                errors[prefix + "tax_rate_id"] = "Choose a tax rate from the list."
        service_id = raw.get("service_id")
        charge_id = raw.get("charge_id")
        parsed.append(ParsedLine(
            description, quantity, unit_price, line_discount, tax_rate,
            int(service_id) if str(service_id or "").isdigit() else None,
            int(charge_id) if str(charge_id or "").isdigit() else None,
        ))
    return parsed, discount, due, errors


def preview(data: DraftInput):
    """Totals for what is typed, without saving: the editor's live recompute."""
    lines, discount, _due, errors = parse_draft(data)
    valid = [ln for i, ln in enumerate(lines) if not any(k.startswith(f"lines-{i}-") for k in errors)]
    return compute([ln.rule() for ln in valid], discount), errors


# Drafts ------------------------------------------------------------------------------

def _defaults(client: Client, business: Business) -> dict:
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
                      if actor.kind == "staff" else None, **_defaults(client, business))
    db.session.add(invoice)
    db.session.flush()
    if charge_ids or all_open_charges:
        query = select(Charge).where(Charge.client_id == client.id, Charge.status == "open")
        if not all_open_charges:
            query = query.where(Charge.id.in_(charge_ids or []))
        charges = db.session.scalars(query.order_by(Charge.id)).all()
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
                **_tax_columns(charge.tax_rate),
            ))
            charge.status = "drafted"
            charge.invoice_id = invoice.id
    _recompute(invoice)
    record_event("invoice.created", "invoice", invoice.id, actor,
                 data={"client_id": client.id, "charges": [ln.charge_id for ln in invoice.lines if ln.charge_id]})
    commit()
    return invoice


def _tax_columns(rate: TaxRate | None) -> dict:
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


def _recompute(invoice: Invoice) -> None:
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
            **_discount_columns(parsed.discount), **_tax_columns(parsed.tax_rate),
        ))
    _recompute(invoice)
    record_event("invoice.draft_saved", "invoice", invoice.id, actor,
                 data={"lines": len(lines), "total": invoice.total, "currency": invoice.currency})
    commit()
    return invoice


def _release_charge(charge_id: int) -> None:
    charge = db.session.get(Charge, charge_id)
    if charge is not None and charge.status == "drafted":
        charge.status = "open"
        charge.invoice_id = None


def delete_draft(invoice: Invoice, actor: Actor) -> None:
    """Delete a draft; charges it held return to open."""
    if invoice.status != states.DRAFT:
        raise ServiceError("Only drafts can be deleted. Void a sent invoice instead.")
    for line in invoice.lines:
        if line.charge_id:
            _release_charge(line.charge_id)
    record_event("invoice.draft_deleted", "invoice", invoice.id, actor,
                 before={"client_id": invoice.client_id, "total": invoice.total})
    db.session.delete(invoice)
    commit()


def _locked(invoice: Invoice) -> Invoice:
    """Re-read the invoice under a row lock (fresh values), so a double click or two staff
    acting at once see each other's change instead of overwriting it."""
    return db.session.scalar(
        select(Invoice).where(Invoice.id == invoice.id).with_for_update()
        .execution_options(populate_existing=True)
    )


# Finalize & lock ------------------------------------------------------------------------

def _take_number() -> tuple[int, str]:
    """The next number, gapless: an atomic UPDATE … RETURNING holds the business row's lock
    until this transaction commits, so concurrent finalizations queue behind it."""
    business = get_business()
    new_next = db.session.execute(
        update(Business).where(Business.id == business.id)
        .values(invoice_next_number=Business.invoice_next_number + 1)
        .returning(Business.invoice_next_number)
    ).scalar_one()
    db.session.refresh(business)
    seq = new_next - 1
    today = clock.today(business.timezone)
    return seq, states.format_number(business.invoice_number_format, seq, today.year, today.month)


def _snapshot_client(client: Client) -> dict:
    return {
        "name": client.name, "email": client.email, "address": client.address, "tax_id": client.tax_id,
        "contacts": [{"name": c.name, "email": c.email} for c in client.contacts if c.receives_invoices],
    }


def _snapshot_business(business: Business) -> dict:
    return {
        "name": business.name, "legal_name": business.legal_name, "address": business.address,
        "email": business.email, "phone": business.phone, "tax_id": business.tax_id,
        "website": business.website,
    }


def finalize(invoice: Invoice, actor: Actor, commit_now: bool = True) -> Invoice:
    """Number, freeze and lock a draft. After this, its money cannot change.

    A replacement draft voids the invoice it replaces here, in the same transaction and through
    ``void``'s path (so the original's open gateway intents are cancelled by the session hook),
    and the two link to each other (Stripe's rule for revised invoices)."""
    # The original has the lower id: lock it first, as every money path locks invoices ascending.
    original = _replaced_original(invoice)
    invoice = _locked(invoice)
    if invoice.status != states.DRAFT:
        raise ServiceError(f"This invoice is already {invoice.status_label.lower()}.")
    if not invoice.lines:
        raise ServiceError("Add at least one line before finalizing.")
    if invoice.total < 0:
        raise ServiceError("An invoice total cannot be negative; issue a credit note instead.")
    if original is not None:
        _refuse_replacing(original, invoice)
    business = get_business()
    _recompute(invoice)
    seq, number = _take_number()
    today = clock.today(business.timezone)
    invoice.sequence_number = seq
    invoice.number = number
    invoice.issue_date = today
    if invoice.due_date is None:
        invoice.due_date = today + timedelta(days=invoice.payment_terms_days or 0)
    invoice.bill_to = _snapshot_client(invoice.client)
    invoice.bill_from = _snapshot_business(business)
    invoice.status = states.transition(invoice.status, "finalize")
    invoice.finalized_at = clock.now()
    for line in invoice.lines:
        if line.charge_id:
            charge = db.session.get(Charge, line.charge_id)
            if charge is not None:
                charge.status = "billed"
                charge.invoice_id = invoice.id
    record_event("invoice.finalized", "invoice", invoice.id, actor,
                 before={"status": states.DRAFT}, after={"status": invoice.status, "number": number,
                                                          "total": invoice.total, "currency": invoice.currency})
    if original is not None:
        original.replaced_by_invoice_id = invoice.id
        if states.can(original.status, "void"):
            _void(original, actor, f"Replaced by invoice {number}.", replaced_by=invoice)
    from portal.services import autopay, credits

    credits.auto_apply_on_finalize(invoice, actor)
    autopay.schedule(invoice, actor)
    if commit_now:
        commit()
    return invoice


# Guest tokens ------------------------------------------------------------------------------

def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def issue_guest_token(invoice: Invoice) -> str:
    """A new 256-bit link token for this invoice; only its hash is stored."""
    if invoice.status == states.DRAFT:
        raise ServiceError("Drafts have no payment link.")
    raw = secrets.token_urlsafe(32)
    db.session.add(InvoiceToken(invoice_id=invoice.id, token_hash=_hash(raw), created_at=clock.now()))
    return raw


def invoice_for_token(raw: str) -> Invoice | None:
    """The finalized invoice this live token opens, recording the first view; else None."""
    if not raw or len(raw) > 200:
        return None
    digest = _hash(raw)
    token = db.session.scalar(select(InvoiceToken).where(InvoiceToken.token_hash == digest))
    if token is None or not hmac.compare_digest(token.token_hash, digest) or token.revoked_at is not None:
        return None
    invoice = db.session.get(Invoice, token.invoice_id)
    if invoice is None or invoice.status == states.DRAFT:
        return None
    if token.first_viewed_at is None:
        # Conditional: two first requests at once (a mail scanner and the person) record one view.
        first = db.session.execute(
            update(InvoiceToken).where(InvoiceToken.id == token.id, InvoiceToken.first_viewed_at.is_(None))
            .values(first_viewed_at=clock.now())
        ).rowcount == 1
        if first:
            record_event("invoice.viewed", "invoice", invoice.id, Actor("guest", None, "guest link"),
                         data={"token_id": token.id})
        commit()
    return invoice


def revoke_guest_tokens(invoice: Invoice, actor: Actor) -> int:
    result = db.session.execute(
        update(InvoiceToken).where(InvoiceToken.invoice_id == invoice.id, InvoiceToken.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
    record_event("invoice.links_revoked", "invoice", invoice.id, actor, data={"count": result.rowcount})
    commit()
    return result.rowcount


# Void, replace -------------------------------------------------------------------------------

def void(invoice: Invoice, actor: Actor, reason: str = "") -> Invoice:
    """Void (cancel) a finalized invoice: nothing is due on it any more. A status change, so the
    session hook cancels its open gateway intents once this commits."""
    invoice = _locked(invoice)
    _void(invoice, actor, reason)
    commit()
    return invoice


def _void(invoice: Invoice, actor: Actor, reason: str, replaced_by: Invoice | None = None) -> None:
    """``void``'s work on an invoice already locked, without committing (finalizing a replacement
    voids its original in its own transaction)."""
    before = invoice.status
    try:
        invoice.status = states.transition(invoice.status, "void")
    except states.InvalidTransition as exc:
        raise ServiceError(f"This invoice can't be voided: {exc}.") from None
    invoice.voided_at = clock.now()
    invoice.void_reason = (reason or "").strip()[:2000] or None
    data = {"reason": invoice.void_reason}
    if replaced_by is not None:
        data |= {"replaced_by": replaced_by.id, "replaced_by_number": replaced_by.number}
    record_event("invoice.voided", "invoice", invoice.id, actor, before={"status": before},
                 after={"status": invoice.status}, data=data)


def _replaced_original(draft: Invoice) -> Invoice | None:
    """The invoice a replacement draft replaces, re-read under a row lock (None if it has none)."""
    if not draft.replaces_invoice_id:
        return None
    return db.session.scalar(
        select(Invoice).where(Invoice.id == draft.replaces_invoice_id).with_for_update()
        .execution_options(populate_existing=True)
    )


def _refuse_replacing(original: Invoice, draft: Invoice) -> None:
    """Finalizing a replacement voids the original: refuse when that would bill the client twice
    or strand money (the original locked by the caller)."""
    from portal.services import payments

    name = original.display_number
    if original.status == states.PAID:
        raise ServiceError(f"Invoice {name}, which this draft replaces, has been paid since the replacement was "
                           "drafted; finalizing this one would bill the client twice. Delete this draft, or "
                           "issue a credit note on the original.")
    other = db.session.get(Invoice, original.replaced_by_invoice_id) if original.replaced_by_invoice_id else None
    if other is not None and other.id != draft.id and other.status not in (states.DRAFT, states.VOID):
        raise ServiceError(f"Invoice {name} was already replaced by {other.display_number}; finalizing this "
                           "draft too would bill the client twice. Delete this draft, or void "
                           f"{other.display_number} first.")
    taken = original.amount_paid + original.credit_applied + original.credit_noted
    if original.status != states.VOID and taken > 0:
        from portal.billing.money import format_money

        raise ServiceError(f"Invoice {name} already has {format_money(taken, original.currency, get_business().locale)} "
                           "paid or credited on it, so its replacement can't void it. Issue a credit note on "
                           f"{name} for what should change instead.")
    on_its_way = payments.money_on_its_way(original)
    if on_its_way:
        raise ServiceError(f"Invoice {name}: {on_its_way} Wait until it clears before replacing the invoice.")


def related(invoice: Invoice) -> dict:
    """The invoices this one is linked to by a replacement: the one it replaces and the finalized
    one that replaced it (drafts are staff-only and not shown on the document)."""
    replaces = db.session.get(Invoice, invoice.replaces_invoice_id) if invoice.replaces_invoice_id else None
    replaced_by = db.session.get(Invoice, invoice.replaced_by_invoice_id) if invoice.replaced_by_invoice_id \
        else None
    if replaced_by is not None and replaced_by.status == states.DRAFT:
        replaced_by = None
    return {"replaces": replaces, "replaced_by": replaced_by}


def replace(invoice: Invoice, actor: Actor) -> Invoice:
    """A new draft copying this invoice's lines (for a void or open invoice)."""
    if invoice.status not in (states.OPEN, states.OVERDUE, states.VOID, states.UNCOLLECTIBLE):
        raise ServiceError("Only a sent or void invoice can be replaced.")
    draft = Invoice(
        client_id=invoice.client_id, status=states.DRAFT, currency=invoice.currency,
        payment_terms_days=invoice.payment_terms_days, memo=invoice.memo, footer=invoice.footer,
        discount_kind=invoice.discount_kind, discount_percent=invoice.discount_percent,
        discount_fixed=invoice.discount_fixed, replaces_invoice_id=invoice.id,
        created_by_staff_id=actor.id if actor.kind == "staff" else None,
    )
    for line in invoice.lines:
        draft.lines.append(InvoiceLine(
            position=line.position, description=line.description, quantity=line.quantity,
            unit_price=line.unit_price, service_id=line.service_id, discount_kind=line.discount_kind,
            discount_percent=line.discount_percent, discount_fixed=line.discount_fixed,
            tax_rate_id=line.tax_rate_id, tax_name=line.tax_name, tax_percent=line.tax_percent,
            tax_inclusive=line.tax_inclusive,
        ))
    db.session.add(draft)
    db.session.flush()
    _recompute(draft)
    record_event("invoice.replacement_drafted", "invoice", invoice.id, actor, data={"draft_id": draft.id})
    record_event("invoice.created", "invoice", draft.id, actor, data={"replaces": invoice.id})
    commit()
    return draft


# Payments recorded by staff --------------------------------------------------------------------

class ExcessNeedsConfirmation(ServiceError):
    """A manual payment above the amount due: nothing was recorded; staff must confirm that the
    excess goes to the client's credit balance (``confirm_excess``)."""

    def __init__(self, amount: int, due: int, currency: str, client_name: str):
        from portal.billing.money import format_money

        locale = get_business().locale
        self.amount, self.due, self.excess = amount, due, amount - due
        self.excess_text = format_money(self.excess, currency, locale)
        super().__init__(f"{self.excess_text} more than is due will go to {client_name}'s credit balance.",
                         field="amount")


def record_manual_payment(invoice: Invoice, amount_text: str, method: str, received_on: str,
                          reference: str, actor: Actor, confirm_excess: bool = True,
                          expected_due: int | None = None) -> Payment:
    """Record money received outside the portal. Partial payments allowed; money above the amount
    due goes to the client's credit balance (and says so on the receipt). The staff form passes
    ``confirm_excess=False`` until staff have confirmed the excess: then an amount above the amount
    due raises ``ExcessNeedsConfirmation`` (worked out under the row lock) and nothing is written;
    the confirmation carries the amount due it was shown (``expected_due``) and asks again if that
    changed. Refused while a gateway payment for the invoice is on its way."""
    invoice = _locked(invoice)  # the amount due is checked and changed under the lock
    errors: dict[str, str] = {}
    if invoice.status not in states.PAYABLE:
        raise ServiceError(f"An invoice that is {invoice.status_label.lower()} takes no payments.")
    amount = 0
    try:
        amount = parse_amount(amount_text or "", invoice.currency, max_minor=MAX_PAYMENT, allow_negative=True)
        if amount <= 0:
            errors["amount"] = "Enter an amount above zero."
    except MoneyError as exc:
        errors["amount"] = "That amount is too large." if exc.reason == "range" else "Use an amount like 120.00."
    if method not in MANUAL_METHODS:
        errors["method"] = "Choose how it was paid."
    try:
        received = date.fromisoformat((received_on or "").strip()) if received_on else clock.today(
            get_business().timezone)
        if received > clock.today(get_business().timezone) + timedelta(days=1):
            errors["received_on"] = "The date can't be in the future."
    except ValueError:
        errors["received_on"] = "Use a date like 2026-12-31."
        received = None
    if errors:
        db.session.rollback()
        raise InvoiceInvalid(errors)
    _refuse_while_money_on_its_way(invoice)
    if amount > invoice.amount_due and (not confirm_excess or (expected_due is not None
                                                                and expected_due != invoice.amount_due)):
        # Not confirmed yet, or confirmed for another amount due (a payment arrived meanwhile): ask again.
        excess = ExcessNeedsConfirmation(amount, invoice.amount_due, invoice.currency, invoice.client.name)
        db.session.rollback()  # nothing written; the row lock goes
        raise excess
    return _record_payment(invoice, amount, method, received, reference, actor)


def _refuse_while_money_on_its_way(invoice: Invoice) -> None:
    """Recording money by hand while a bank debit or a saved-card charge for this invoice is on its
    way would book it twice (and the real money would then be refunded as a late payment)."""
    from portal.services import payments

    on_its_way = payments.money_on_its_way(invoice)
    if on_its_way:
        db.session.rollback()
        raise ServiceError(f"{on_its_way} Record a payment by hand only if that one fails.")


def _record_payment(invoice: Invoice, amount: int, method: str, received: date, reference: str,
                    actor: Actor) -> Payment:
    from portal.services import credits

    payment = Payment(
        invoice_id=invoice.id, client_id=invoice.client_id, amount=amount, currency=invoice.currency,
        method=method, status="succeeded", reference=(reference or "").strip()[:200] or None,
        received_on=received, settled_at=clock.now(),
        recorded_by_staff_id=actor.id if actor.kind == "staff" else None, created_at=clock.now(),
    )
    db.session.add(payment)
    db.session.flush()
    credits.settle_payment(payment, [invoice], actor)
    commit()
    return payment


def mark_paid(invoice: Invoice, method: str, actor: Actor, expected_due: int | None = None) -> Payment:
    """"Mark as paid": record the full amount due as received today, by ``method`` (one click).
    ``expected_due`` is the amount the confirmation showed: if the amount due changed since, nothing
    is recorded. Refused while a gateway payment for the invoice is on its way."""
    invoice = _locked(invoice)
    if invoice.status not in states.PAYABLE or invoice.amount_due <= 0:
        label = invoice.status_label.lower()
        db.session.rollback()
        raise ServiceError(f"An invoice that is {label} can't be marked as paid: nothing is due on it.")
    if method not in MANUAL_METHODS:
        db.session.rollback()
        raise InvoiceInvalid({"mark_method": "Choose how it was paid."})
    if expected_due is not None and expected_due != invoice.amount_due:
        db.session.rollback()
        raise ServiceError("The amount due changed since this page was opened: nothing was recorded. "
                           "Check the invoice, then mark it as paid again.")
    _refuse_while_money_on_its_way(invoice)
    return _record_payment(invoice, invoice.amount_due, method, clock.today(get_business().timezone), "", actor)


MAX_PAYMENT = 100_000_000_000_000  # minor units; 500 lines at most MAX_LINE_AMOUNT each fit 8 bytes
MAX_LINE_AMOUNT = 100_000_000_000_000


# The tick: overdue -----------------------------------------------------------------------------

def mark_overdue(at: datetime) -> int:
    """Open invoices past their due date become overdue, once each (``invoice.past_due``)."""
    business = get_business()
    today = clock.as_utc(at).astimezone(ZoneInfo(business.timezone)).date()
    due = db.session.scalars(
        select(Invoice).where(Invoice.status == states.OPEN, Invoice.due_date < today).order_by(Invoice.id)
        .limit(5000)
    ).all()
    for invoice in due:
        invoice.status = states.transition(invoice.status, "mark_overdue")
        invoice.overdue_at = at
        record_event("invoice.past_due", "invoice", invoice.id, Actor("system", None, "scheduler"),
                     before={"status": states.OPEN}, after={"status": states.OVERDUE},
                     data={"due_date": invoice.due_date.isoformat(), "amount_due": invoice.amount_due})
    commit()
    return len(due)


def status_totals() -> dict[str, dict]:
    """Count and sum of amount due per status, per currency (for the list's header)."""
    rows = db.session.execute(
        select(Invoice.status, Invoice.currency, func.count(), func.coalesce(func.sum(Invoice.amount_due), 0))
        .group_by(Invoice.status, Invoice.currency)
    ).all()
    out: dict[str, dict] = {}
    for status, currency, count, due in rows:
        entry = out.setdefault(status, {"count": 0, "due": {}})
        entry["count"] += count
        entry["due"][currency] = int(due)
    return out


def services_catalogue(active_only: bool = True) -> list[Service]:
    query = select(Service).order_by(func.lower(Service.name))
    if active_only:
        query = query.where(Service.active.is_(True))
    return list(db.session.scalars(query))


# What an invoice document shows -------------------------------------------------------------

def document(invoice: Invoice) -> dict:
    """Everything the HTML page, the guest page, the email and the PDF show, in one place.

    A finalized invoice shows its frozen parties; a draft shows them as they are now.
    """
    business = get_business()
    seller = invoice.bill_from or _snapshot_business(business)
    buyer = invoice.bill_to or _snapshot_client(invoice.client)
    context = {
        "invoice": invoice,
        "seller": seller,
        "buyer": buyer,
        "lines": invoice.lines,
        "currency": invoice.currency,
        "locale": business.locale,
        "brand_color": business.brand_color,
        "has_logo": business.has_logo,
        "tax_breakdown": invoice.tax_breakdown or [],
        "is_draft": invoice.status == states.DRAFT,
        "status_label": invoice.status_label,
        "related": related(invoice),
    }
    # The Discount and Tax columns show only when some line has one.
    context["has_discount"] = any(line.discount_amount for line in invoice.lines)
    context["has_tax"] = any(line.tax_name for line in invoice.lines)
    context["line_columns"] = 4 + context["has_discount"] + context["has_tax"]
    return context


# Sending ------------------------------------------------------------------------------------------

def email_variables(invoice: Invoice, contact_name: str, pay_url: str) -> dict:
    from portal.billing.money import format_money
    from babel.dates import format_date

    business = get_business()
    return {
        "customer_name": contact_name,
        "invoice_number": invoice.number or "",
        "amount_due": format_money(invoice.amount_due, invoice.currency, business.locale),
        "due_date": format_date(invoice.due_date, "long", locale=business.locale) if invoice.due_date else "",
        "invoice_url": pay_url,
        "pay_now_url": pay_url,
        "company_name": business.name,
        "line_summary": line_summary(invoice, business.locale),
    }


SUMMARY_LINES = 5


def line_summary(invoice: Invoice, locale: str) -> str:
    """The invoice's lines for an email, one a line ("- Design work: €1,000.00"): at most
    ``SUMMARY_LINES``, then "and N more"."""
    from portal.billing.money import format_money

    lines = list(invoice.lines)
    shown = [f"- {next(iter((line.description or '').strip().splitlines()), '')[:80] or 'Item'}: "
             f"{format_money(line.net, invoice.currency, locale)}" for line in lines[:SUMMARY_LINES]]
    if len(lines) > SUMMARY_LINES:
        shown.append(f"and {len(lines) - SUMMARY_LINES} more")
    return "\n".join(shown)


def send(invoice: Invoice, actor: Actor) -> list[str]:
    """Finalize if needed, then email every billing contact the pay link and the PDF.

    One transaction: the finalization, the new guest link, one delivery per
    contact and the ``invoice.sent`` event. Returns the recipients. Sending
    again (resend) makes a new link; earlier links keep working until revoked.
    """
    from portal.services import email_templates
    from portal.services.events import queue_email
    from portal.services.links import external_url

    recipients = [c for c in invoice.client.contacts if c.receives_invoices]
    if not recipients:
        raise ServiceError("This client has no contact who receives invoices. Add one, then send.")
    resend = invoice.status != states.DRAFT
    if invoice.status == states.DRAFT:
        finalize(invoice, actor, commit_now=False)
    elif invoice.status not in (states.OPEN, states.OVERDUE):
        raise ServiceError(f"An invoice that is {invoice.status_label.lower()} can't be sent.")
    raw = issue_guest_token(invoice)
    pay_url = external_url("pay.invoice", token=raw)
    event = record_event("invoice.resent" if resend else "invoice.sent", "invoice", invoice.id, actor,
                         data={"to": [c.email for c in recipients]})
    business = get_business()
    for contact in recipients:
        subject, body = email_templates.render("invoice_issued", email_variables(invoice, contact.name, pay_url))
        queue_email(
            contact.email, "templated",
            {"business": business, "subject": subject, "body": body, "link": pay_url, "label": "Pay invoice"},
            event=event, subject_type="invoice", subject_id=invoice.id, redact=[raw],
            attachments=[{"type": "invoice_pdf", "invoice_id": invoice.id}],
        )
    invoice.sent_at = clock.now()
    commit()
    return [c.email for c in recipients]


def make_ready(invoice: Invoice, actor: Actor) -> Invoice:
    """Finalize & lock without sending ("ready for payment").

    With the business's "invoice ready" notification on, billing contacts get
    the same email as Send (link + PDF); with it off, nothing goes out and the
    invoice simply appears in the client portal.
    """
    if get_business().notify_invoice_ready and any(c.receives_invoices for c in invoice.client.contacts):
        send(invoice, actor)
        return invoice
    finalize(invoice, actor)
    return invoice


# The client's side: the portal's invoice list and page, the guest page (read-only) -----------------

PORTAL_PAGE_SIZE = 20


# The portal's invoice list filters: key → (label, statuses; None = every finalized invoice).
PORTAL_STATUS_FILTERS = {
    "all": ("All", None),
    "due": ("Due", (states.OPEN, states.OVERDUE, states.UNCOLLECTIBLE)),
    "overdue": ("Overdue", (states.OVERDUE,)),
    "paid": ("Paid", (states.PAID,)),
    "cancelled": ("Cancelled", (states.VOID,)),
}


def client_invoices(client_id: int, page: int = 1, per_page: int = PORTAL_PAGE_SIZE, status: str = "all"):
    """One page of a client's finalized invoices, newest first, optionally of one
    ``PORTAL_STATUS_FILTERS`` group (an unknown one shows all). Drafts never appear."""
    query = (
        select(Invoice)
        .where(Invoice.client_id == client_id, Invoice.status != states.DRAFT)
        .order_by(Invoice.issue_date.desc(), Invoice.sequence_number.desc(), Invoice.id.desc())
    )
    statuses = PORTAL_STATUS_FILTERS.get(status, PORTAL_STATUS_FILTERS["all"])[1]
    if statuses is not None:
        query = query.where(Invoice.status.in_(statuses))
    return db.paginate(query, page=min(max(int(page or 1), 1), 1_000_000), per_page=per_page, error_out=False)


def client_invoice(client_id: int, invoice_id: int) -> Invoice:
    """One of this client's finalized invoices; a draft or another client's is not found."""
    invoice = db.session.scalar(
        select(Invoice)
        .where(Invoice.id == invoice_id, Invoice.client_id == client_id, Invoice.status != states.DRAFT)
        .options(selectinload(Invoice.lines))
    )
    if invoice is None:
        raise NotFound("No such invoice.")
    return invoice


def client_document(invoice: Invoice) -> dict:
    """``document()`` plus what the client can do with it: whether anything is payable now and
    how to pay (the invoice's footer carries the bank details until online payment, F3)."""
    context = document(invoice)
    context["payable"] = invoice.status in states.PAYABLE and invoice.amount_due > 0
    context["how_to_pay"] = invoice.footer
    return context

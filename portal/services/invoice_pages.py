"""What the staff invoice pages need around the invoice services: a saved draft as form values,
a catalogue service as a new line, the editor's choices and live totals, the actions an invoice's
state allows, and "save the draft, then finalize or send it".

No money math here: totals come from ``services.invoices.preview`` (``billing.invoice_math``);
amounts only change units (minor → major) for form fields.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select

from portal import clock
from portal.billing import states
from portal.billing.money import to_major, valid_currency
from portal.extensions import db
from portal.models import Invoice, InvoiceLine, Service, TaxRate
from portal.services import formats
from portal.services import invoices as invoice_service
from portal.services.errors import ServiceError
from portal.services.events import Actor
from portal.services.invoices import DraftInput
from portal.services.settings import get_business
from portal.services.typed import row_id

LINE_FIELDS = ("description", "quantity", "unit_price", "discount_kind", "discount_value", "tax_rate_id",
               "service_id", "charge_id")


def _plain(value) -> str:
    return "" if value is None else format(value.normalize(), "f")


def _major(minor: int | None, currency: str) -> str:
    return "" if minor is None else str(to_major(int(minor), currency))


def _line_values(line: InvoiceLine, currency: str) -> dict[str, str]:
    discount_value = ""
    if line.discount_kind == "percent":
        discount_value = _plain(line.discount_percent)
    elif line.discount_kind == "fixed":
        discount_value = _major(line.discount_fixed, currency)
    return {
        "description": line.description, "quantity": _plain(line.quantity),
        "unit_price": _major(line.unit_price, currency), "discount_kind": line.discount_kind or "",
        "discount_value": discount_value, "tax_rate_id": str(line.tax_rate_id or ""),
        "service_id": str(line.service_id or ""), "charge_id": str(line.charge_id or ""),
    }


def form_values(invoice: Invoice) -> DraftInput:
    """A saved draft as the editor's fields show it (strings, amounts in major units)."""
    cur = invoice.currency
    discount_value = ""
    if invoice.discount_kind == "percent":
        discount_value = _plain(invoice.discount_percent)
    elif invoice.discount_kind == "fixed":
        discount_value = _major(invoice.discount_fixed, cur)
    return DraftInput(
        currency=cur, due_date=invoice.due_date.isoformat() if invoice.due_date else "",
        memo=invoice.memo or "", footer=invoice.footer or "", discount_kind=invoice.discount_kind or "",
        discount_value=discount_value, lines=[_line_values(ln, cur) for ln in invoice.lines],
    )


def blank_line() -> dict[str, str]:
    return {name: "" for name in LINE_FIELDS} | {"quantity": "1"}


def service_line(service_id: str, currency: str) -> dict[str, str]:
    """A new line filled from a catalogue service: its name, unit price and default tax."""
    service = db.session.get(Service, row_id(service_id)) if row_id(service_id) else None
    if service is None or not service.active:
        raise ServiceError("Choose a service from the catalogue.", field="add_service_id")
    if valid_currency(currency) and service.currency != currency.upper():
        raise ServiceError(f"{service.name} is priced in {service.currency}; this invoice is in "
                           f"{currency.upper()}. Add it as a one-off line instead.", field="add_service_id")
    return blank_line() | {
        "description": service.name, "unit_price": _major(service.unit_price, service.currency),
        "tax_rate_id": str(service.tax_rate_id or ""), "service_id": str(service.id),
    }


@dataclass
class EditorState:
    """Everything the editor shows besides what was typed."""

    totals: object
    line_errors: int
    currency: str
    tax_rates: list[TaxRate]
    catalogue: list[Service]
    terms_days: int | None
    replaces: Invoice | None = None  # the invoice a replacement draft replaces (voided when it is finalized)


def editor_state(invoice: Invoice, data: DraftInput) -> EditorState:
    """Choices for the editor and the server's totals for what is typed (nothing is saved)."""
    totals, errors = invoice_service.preview(data)
    currency = (data.currency or "").strip().upper()
    used = {row_id(ln.get("tax_rate_id")) for ln in data.lines or []} - {None}
    rates = list(db.session.scalars(
        select(TaxRate).where(or_(TaxRate.active.is_(True), TaxRate.id.in_(used or {0})))
        .order_by(TaxRate.name, TaxRate.percent)))
    return EditorState(
        totals=totals, line_errors=len({k.split("-")[1] for k in errors if k.startswith("lines-")}),
        currency=currency if valid_currency(currency) else invoice.currency, tax_rates=rates,
        catalogue=invoice_service.services_catalogue(), terms_days=invoice.payment_terms_days,
        replaces=db.session.get(Invoice, invoice.replaces_invoice_id) if invoice.replaces_invoice_id else None,
    )


class SavedButNotDone(ServiceError):
    """The draft was saved, but finalizing or sending it was refused."""


def finalize(invoice: Invoice, actor: Actor) -> list[str]:
    """Finalize & lock ("ready for payment"). Returns who was emailed: the billing contacts when
    the business's "invoice ready" notification is on, else nobody."""
    invoice_service.make_ready(invoice, actor)
    if invoice.sent_at is None:
        return []
    return recipients(invoice)


def save(invoice: Invoice, data: DraftInput, actor: Actor, then: str = "") -> list[str]:
    """Save the draft (InvoiceInvalid if anything is wrong: nothing saved), then optionally
    ``finalize`` it or ``send`` it. Returns the recipients of any email."""
    invoice_service.save_draft(invoice, data, actor)
    if then not in ("finalize", "send"):
        return []
    try:
        if then == "finalize":
            return finalize(invoice, actor)
        return invoice_service.send(invoice, actor)
    except ServiceError as exc:
        db.session.rollback()
        raise SavedButNotDone(f"Draft saved, but not {'finalized' if then == 'finalize' else 'sent'}: "
                              f"{exc.message}") from None


def allowed_actions(invoice: Invoice) -> set[str]:
    """What staff may do to this invoice in its state (the state table decides)."""
    status = invoice.status
    allowed = {"pdf"}
    if status == states.DRAFT:
        allowed |= {"edit", "delete", "send"}
    if states.can(status, "finalize"):
        allowed.add("finalize")
    if status in (states.OPEN, states.OVERDUE):
        allowed.add("resend")
    if status in states.PAYABLE:
        allowed.add("pay")
        if invoice.amount_due > 0:
            allowed.add("mark_paid")
    if states.can(status, "void"):
        allowed.add("void")
    if status in (states.OPEN, states.OVERDUE, states.VOID, states.UNCOLLECTIBLE):
        allowed.add("replace")
    if status != states.DRAFT:
        allowed.add("revoke_links")
    return allowed


def recipients(invoice: Invoice) -> list[str]:
    """Who an email about this invoice goes to: the client's billing contacts' addresses."""
    return [c.email for c in invoice.client.contacts if c.receives_invoices]


def money(minor: int, currency: str) -> str:
    """An amount as the pages write it (the business's locale), for flash messages."""
    return formats.money(minor, currency)


def payment_defaults(invoice: Invoice) -> dict[str, str]:
    """The manual-payment form's starting values: the full amount due, today."""
    return {"amount": _major(max(invoice.amount_due, 0), invoice.currency), "method": "wire",
            "received_on": clock.today(get_business().timezone).isoformat(), "reference": ""}


# Nothing sets "Uncollectible" until write-offs arrive (C1): no chip or filter choice for it until then.
HIDDEN_STATUSES = {states.UNCOLLECTIBLE}


def status_choices() -> list[tuple[str, str]]:
    return [(s, states.LABELS[s]) for s in states.STATES if s not in HIDDEN_STATUSES]

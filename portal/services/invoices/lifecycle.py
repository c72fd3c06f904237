"""An invoice's life after finalizing: void, replacement drafts (Stripe's rule for revised invoices),
and the tick's overdue step. State changes go only through ``billing.states``.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from portal import clock
from portal.billing import states
from portal.extensions import db
from portal.models import Invoice, InvoiceLine
from portal.services import formats, locks, payments
from portal.services.errors import ServiceError
from portal.services.events import Actor, commit, record_event
from portal.services.invoices.drafts import recompute
from portal.services.settings import get_business

# Void, replace -------------------------------------------------------------------------------

def void(invoice: Invoice, actor: Actor, reason: str = "") -> Invoice:
    """Void (cancel) a finalized invoice: nothing is due on it any more. A status change, so the
    session hook cancels its open gateway intents once this commits."""
    invoice = locks.invoice(invoice.id)
    void_locked(invoice, actor, reason)
    commit()
    return invoice


def void_locked(invoice: Invoice, actor: Actor, reason: str, replaced_by: Invoice | None = None) -> None:
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


def replaced_original(draft: Invoice) -> Invoice | None:
    """The invoice a replacement draft replaces, re-read under a row lock (None if it has none)."""
    if not draft.replaces_invoice_id:
        return None
    return locks.invoice(draft.replaces_invoice_id)


def refuse_replacing(original: Invoice, draft: Invoice) -> None:
    """Finalizing a replacement voids the original: refuse when that would bill the client twice
    or strand money (the original locked by the caller)."""

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
        raise ServiceError(f"Invoice {name} already has {formats.money(taken, original.currency)} "
                           "paid or credited on it, so its replacement can't void it. Issue a credit note on "
                           f"{name} for what should change instead.")
    on_its_way = payments.money_on_its_way(original)
    if on_its_way:
        raise ServiceError(f"Invoice {name}: {on_its_way} Wait until it clears before replacing the invoice.")


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
    recompute(draft)
    record_event("invoice.replacement_drafted", "invoice", invoice.id, actor, data={"draft_id": draft.id})
    record_event("invoice.created", "invoice", draft.id, actor, data={"replaces": invoice.id})
    commit()
    return draft


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

"""Finalize & lock: a gapless number (``services.numbering``), client and business details frozen into
``bill_to``/``bill_from``, credit applied and autopay scheduled in the same transaction. A replacement
draft voids the invoice it replaces here, through ``lifecycle``'s path.
"""
from __future__ import annotations

from datetime import timedelta

from portal import clock
from portal.billing import states
from portal.extensions import db
from portal.models import Charge, Invoice
from portal.services import autopay, credits, locks, numbering
from portal.services.errors import ServiceError
from portal.services.events import Actor, commit, record_event
from portal.services.invoice_documents import snapshot_business, snapshot_client
from portal.services.invoices.drafts import recompute
from portal.services.invoices.lifecycle import (
    refuse_replacing,
    replaced_original,
    void_locked,
)
from portal.services.settings import get_business


def finalize(invoice: Invoice, actor: Actor, commit_now: bool = True) -> Invoice:
    """Number, freeze and lock a draft. After this, its money cannot change.

    A replacement draft voids the invoice it replaces here, in the same transaction and through
    ``void``'s path (so the original's open gateway intents are cancelled by the session hook),
    and the two link to each other (Stripe's rule for revised invoices)."""
    # The original has the lower id: lock it first, as every money path locks invoices ascending.
    original = replaced_original(invoice)
    invoice = locks.invoice(invoice.id)
    if invoice.status != states.DRAFT:
        raise ServiceError(f"This invoice is already {invoice.status_label.lower()}.")
    if not invoice.lines:
        raise ServiceError("Add at least one line before finalizing.")
    if invoice.total < 0:
        raise ServiceError("An invoice total cannot be negative; issue a credit note instead.")
    if original is not None:
        refuse_replacing(original, invoice)
    business = get_business()
    recompute(invoice)
    seq, number = numbering.take("invoice")
    today = clock.today(business.timezone)
    invoice.sequence_number = seq
    invoice.number = number
    invoice.issue_date = today
    if invoice.due_date is None:
        invoice.due_date = today + timedelta(days=invoice.payment_terms_days or 0)
    invoice.bill_to = snapshot_client(invoice.client)
    invoice.bill_from = snapshot_business(business)
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
            void_locked(original, actor, f"Replaced by invoice {number}.", replaced_by=invoice)

    credits.auto_apply_on_finalize(invoice, actor)
    autopay.schedule(invoice, actor)
    if commit_now:
        commit()
    return invoice

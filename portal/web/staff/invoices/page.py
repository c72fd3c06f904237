"""The staff invoice page (a finalized invoice: its document, timeline, payments and action panels),
and the small helpers every invoice view shares.

``show_invoice`` is the one renderer of that page: the invoice views, and the credit and credit note
views whose forms sit on it, re-render it with their typed values and errors (422).
"""
from __future__ import annotations

from flask import abort, redirect, url_for
from flask_login import current_user

from portal.services import (
    autopay,
    credit_notes,
    credits,
    invoice_lists,
    invoice_pages,
    payments,
)
from portal.services import invoices as invoice_service
from portal.services.errors import NotFound
from portal.services.events import Actor
from portal.web.rendering import render

SHOW = "staff/invoices/show.html"


def actor() -> Actor:
    return Actor.of(current_user)


def invoice_or_404(invoice_id: int):
    try:
        return invoice_service.get_invoice(invoice_id)
    except NotFound:
        abort(404)


def back(invoice_id: int):
    """See the invoice page again (after a POST)."""
    return redirect(url_for("staff.invoice_detail", invoice_id=invoice_id), code=303)


def show_invoice(invoice, payment=None, payment_errors=None, status: int = 200, refund=None, credit_note=None,
                 excess=None, mark_errors=None):
    """The invoice page, optionally with a panel's typed values and errors (then ``status`` 422)."""
    context = invoice_service.document(invoice)
    return render(
        SHOW, actions=invoice_pages.allowed_actions(invoice), excess=excess, mark_errors=mark_errors or {},
        recipients=invoice_pages.recipients(invoice),
        timeline=invoice_lists.invoice_timeline(invoice.id), payments=payments.invoice_payments(invoice.id),
        payment=payment or invoice_pages.payment_defaults(invoice), payment_errors=payment_errors or {},
        methods=invoice_service.MANUAL_METHODS, logo_url=url_for("public.logo"), refund=refund or {},
        credit_panel=credits.invoice_panel(invoice), card_panel=autopay.invoice_panel(invoice),
        credit_notes_panel=credit_notes.invoice_panel(invoice, **(credit_note or {})), **context,
    ), status


def finalized_message(invoice, emailed: list[str]) -> str:
    message = f"Invoice {invoice.number} finalized and locked."
    if emailed:
        message += f" Emailed to {', '.join(emailed)} (the “invoice ready” notification is on)."
    return message

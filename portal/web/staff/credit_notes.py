"""Staff: credit notes on finalized invoices (issue from the invoice page, download the PDF). F4."""
from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_login import current_user

from portal.services import credit_notes
from portal.services import invoices as invoice_service
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor
from portal.web import downloads
from portal.web.staff import bp
from portal.web.staff.invoices.page import show_invoice

_TYPED_MAX = {"memo": 2100}


@bp.post("/invoices/<int:invoice_id>/credit-notes")
def credit_note_issue(invoice_id: int):
    try:
        invoice = invoice_service.get_invoice(invoice_id)
    except NotFound:
        abort(404)
    typed = {name: request.form.get(name, "").strip()[:_TYPED_MAX.get(name, 30)] for name in credit_notes.FIELDS}
    try:
        note = credit_notes.issue(invoice_id, typed, Actor.of(current_user))
    except credit_notes.CreditNoteInvalid as exc:
        invoice = invoice_service.get_invoice(invoice_id)
        return show_invoice(invoice, status=422, credit_note={"typed": typed, "errors": exc.errors})
    except NotFound:
        abort(404)
    except ServiceError as exc:
        if exc.field:  # e.g. the gateway's own limit on the refund
            field = "to_refund" if exc.field == "amount" else exc.field
            return show_invoice(invoice_service.get_invoice(invoice_id), status=422,
                         credit_note={"typed": typed, "errors": {field: exc.message}})
        flash(exc.message, "error")
        return redirect(url_for("staff.invoice_detail", invoice_id=invoice_id), code=303)
    flash(f"Credit note {note.number} issued for {invoice.display_number}. The client is emailed the PDF.",
          "success")
    return redirect(url_for("staff.invoice_detail", invoice_id=invoice_id) + "#credit-notes", code=303)


@bp.get("/credit-notes/<int:credit_note_id>/pdf")
def credit_note_pdf(credit_note_id: int):
    try:
        note = credit_notes.get_credit_note(credit_note_id)
    except NotFound:
        abort(404)
    return downloads.credit_note_pdf(note)

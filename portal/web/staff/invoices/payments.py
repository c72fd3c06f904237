"""Money on one invoice, recorded by staff: a manual payment, "Mark as paid", and refunds (through a
credit note). A refused entry comes back on the invoice page with what was typed and why (422)."""
from __future__ import annotations

from flask import abort, flash, request

from portal.services import credit_notes, invoice_pages
from portal.services import invoices as invoice_service
from portal.services.errors import NotFound, ServiceError
from portal.services.invoices import ExcessNeedsConfirmation, InvoiceInvalid
from portal.services.typed import whole_number
from portal.web.staff import bp
from portal.web.staff.invoices.page import actor, back, invoice_or_404, show_invoice


def _whole_number(text: str | None) -> int | None:
    """A hidden form field holding an amount in minor units (what the page showed), or None."""
    return whole_number(text)


def _recorded(invoice, payment) -> str:
    message = "Payment recorded; the invoice is paid." if invoice.status == "paid" else "Payment recorded."
    if payment.credited_amount:
        message += (f" {invoice_pages.money(payment.credited_amount, payment.currency)} more than was due went to "
                    f"{invoice.client.name}'s credit balance.")
    return message


@bp.post("/invoices/<int:invoice_id>/payments")
def invoice_payment(invoice_id: int):
    invoice = invoice_or_404(invoice_id)
    typed = {k: request.form.get(k, "") for k in ("amount", "method", "received_on", "reference")}
    confirmed = request.form.get("confirm_excess") == "1"
    try:
        payment = invoice_service.record_manual_payment(
            invoice, typed["amount"], typed["method"], typed["received_on"], typed["reference"], actor(),
            confirm_excess=confirmed, expected_due=_whole_number(request.form.get("expected_due")))
    except InvoiceInvalid as exc:
        return show_invoice(invoice, payment=typed, payment_errors=exc.errors, status=422)
    except ExcessNeedsConfirmation as exc:
        # Nothing recorded: the page asks once more, naming the excess and where it goes.
        return show_invoice(invoice, payment=typed, excess=exc)
    except ServiceError as exc:
        flash(exc.message, "error")
        return back(invoice_id)
    flash(_recorded(invoice, payment), "success")
    return back(invoice_id)


@bp.post("/invoices/<int:invoice_id>/mark-paid")
def invoice_mark_paid(invoice_id: int):
    """"Mark as paid": the full amount due, today, by the method chosen; one confirmation (the dialog)."""
    invoice = invoice_or_404(invoice_id)
    method = request.form.get("method", "")
    try:
        payment = invoice_service.mark_paid(invoice, method, actor(),
                                            expected_due=_whole_number(request.form.get("expected_due")))
    except InvoiceInvalid as exc:
        return show_invoice(invoice, mark_errors=exc.errors, status=422)
    except ServiceError as exc:
        flash(exc.message, "error")
        return back(invoice_id)
    flash(f"Invoice {invoice.number} marked as paid: {invoice_pages.money(payment.amount, payment.currency)} "
          f"({payment.method_label}, received today).", "success")
    return back(invoice_id)


# Refunds (F3; F4: through a credit note) --------------------------------------------------------

@bp.post("/invoices/<int:invoice_id>/payments/<int:payment_id>/refund")
def invoice_refund(invoice_id: int, payment_id: int):
    """Refund on a payment: a credit note whose refund part is the amount, so the invoice stays
    settled and the refund has a numbered document."""
    invoice_or_404(invoice_id)
    typed = {"payment_id": payment_id, "amount": request.form.get("amount", "").strip()[:30],
             "reason": request.form.get("reason", "").strip()[:500]}
    try:
        note = credit_notes.refund_payment(invoice_id, payment_id, typed["amount"], typed["reason"], actor())
    except NotFound:
        abort(404)
    except ServiceError as exc:
        if exc.field:
            return show_invoice(invoice_or_404(invoice_id), status=422, refund={**typed, "error": exc.message})
        flash(exc.message, "error")
        return back(invoice_id)
    flash(f"Refund recorded with credit note {note.number}. The client is emailed about it." if note else
          "Refund recorded. The client is emailed about it.", "success")
    return back(invoice_id)

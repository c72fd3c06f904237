"""What staff do to a finalized invoice: finalize, send and send again, void, issue a replacement,
revoke its payment links, and download its PDF."""
from __future__ import annotations

from flask import flash, request

from portal.services import invoice_pages
from portal.services import invoices as invoice_service
from portal.services.errors import ServiceError
from portal.web import downloads
from portal.web.staff import bp
from portal.web.staff.invoices.page import actor, back, finalized_message, invoice_or_404


def _action(invoice_id: int, run, success: str | None = None):
    invoice = invoice_or_404(invoice_id)
    try:
        message = run(invoice)
    except ServiceError as exc:
        flash(exc.message, "error")
        return back(invoice_id)
    flash(message or success, "success")
    return back(invoice_id)


@bp.post("/invoices/<int:invoice_id>/finalize")
def invoice_finalize(invoice_id: int):
    return _action(invoice_id, lambda inv: finalized_message(inv, invoice_pages.finalize(inv, actor())))


@bp.post("/invoices/<int:invoice_id>/send")
def invoice_send(invoice_id: int):
    def run(inv):
        resend = not inv.is_draft
        to = invoice_service.send(inv, actor())
        return f"Invoice {inv.number} {'sent again' if resend else 'sent'} to {', '.join(to)}."
    return _action(invoice_id, run)


@bp.post("/invoices/<int:invoice_id>/resend")
def invoice_resend(invoice_id: int):
    def run(inv):
        if inv.is_draft:
            raise ServiceError("This invoice hasn't been sent yet.")
        return f"Invoice {inv.number} sent again to {', '.join(invoice_service.send(inv, actor()))}."
    return _action(invoice_id, run)


@bp.post("/invoices/<int:invoice_id>/void")
def invoice_void(invoice_id: int):
    reason = request.form.get("reason", "")
    return _action(invoice_id, lambda inv: f"Invoice {invoice_service.void(inv, actor(), reason).number} "
                                           "voided (cancelled). Nothing is due on it.")


@bp.post("/invoices/<int:invoice_id>/replace")
def invoice_replace(invoice_id: int):
    invoice = invoice_or_404(invoice_id)
    try:
        draft = invoice_service.replace(invoice, actor())
    except ServiceError as exc:
        flash(exc.message, "error")
        return back(invoice_id)
    if invoice.status in ("open", "overdue", "uncollectible"):
        flash(f"Replacement draft for {invoice.display_number} created. {invoice.display_number} stays as it is "
              "until you finalize this draft; then it is voided.", "success")
    else:
        flash(f"Replacement draft for {invoice.display_number} created.", "success")
    return back(draft.id)


@bp.post("/invoices/<int:invoice_id>/revoke-links")
def invoice_revoke_links(invoice_id: int):
    def run(inv):
        count = invoice_service.revoke_guest_tokens(inv, actor())
        return f"{count} payment link{'s' if count != 1 else ''} revoked." if count else "No live links to revoke."
    return _action(invoice_id, run)


@bp.get("/invoices/<int:invoice_id>/pdf")
def invoice_pdf(invoice_id: int):
    """The PDF as a download named ``<number>.pdf``; a draft's says DRAFT on every page."""
    return downloads.invoice_pdf(invoice_or_404(invoice_id))

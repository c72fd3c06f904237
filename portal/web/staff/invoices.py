"""Staff invoices: the list, the items list, CSV exports, the draft editor, the invoice page and
its actions, and the PDF.

Each view parses the request, calls one service and renders; the editor's totals, validation and
every state change live in ``services.invoices`` (and ``services.invoice_pages``).
"""
from __future__ import annotations

import re

from flask import Response, abort, flash, redirect, request, stream_with_context, url_for
from flask_login import current_user
from jinja2_fragments.flask import render_blocks

from portal.services import clients as client_service
from portal.services import autopay, credit_notes, credits, invoice_lists, invoice_pages
from portal.services import invoices as invoice_service
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor
from portal.services.invoices import DraftInput, ExcessNeedsConfirmation, InvoiceInvalid
from portal.web import downloads
from portal.web.rendering import is_htmx, render
from portal.web.staff import bp

LIST = "staff/invoices/list.html"
ITEMS = "staff/invoices/items.html"
EDITOR = "staff/invoices/editor.html"
SHOW = "staff/invoices/show.html"

_LINE_KEY = re.compile(r"^lines-(\d{1,6})-([a-z_]+)$")
_OP = re.compile(r"^(add|add-service|remove-\d+|up-\d+|down-\d+)$")


def _actor() -> Actor:
    return Actor.of(current_user)


def _invoice_or_404(invoice_id: int):
    try:
        return invoice_service.get_invoice(invoice_id)
    except NotFound:
        abort(404)


def _back(invoice_id: int):
    return redirect(url_for("staff.invoice_detail", invoice_id=invoice_id), code=303)


# The lists ---------------------------------------------------------------------------------

@bp.get("/invoices")
def invoices():
    filters = invoice_lists.InvoiceFilters.from_args(request.args)
    page = invoice_lists.list_invoices(filters)
    client = None
    if filters.client_id is not None:
        try:
            client = client_service.get_client(filters.client_id)
        except NotFound:
            client = None
    return render(LIST, block="invoice_rows", page=page, f=filters, filter_client=client,
                  totals=invoice_service.status_totals(), statuses=invoice_pages.status_choices(),
                  sort_labels=invoice_lists.SORT_LABELS)


@bp.get("/invoices/items")
def invoice_items():
    filters = invoice_lists.InvoiceFilters.from_args(request.args)
    page = invoice_lists.list_items(filters)
    return render(ITEMS, block="item_rows", page=page, f=filters, statuses=invoice_pages.status_choices())


def _csv(lines, name: str) -> Response:
    response = Response(stream_with_context(lines), mimetype="text/csv")
    response.headers.set("Content-Disposition", "attachment", filename=name)
    return response


@bp.get("/invoices.csv")
def invoices_csv():
    filters = invoice_lists.InvoiceFilters.from_args(request.args)
    return _csv(invoice_lists.invoices_csv(filters), "invoices.csv")


@bp.get("/invoices/items.csv")
def invoice_items_csv():
    filters = invoice_lists.InvoiceFilters.from_args(request.args)
    return _csv(invoice_lists.items_csv(filters), "invoice-items.csv")


# New drafts ----------------------------------------------------------------------------------

@bp.get("/invoices/new")
def invoice_new():
    """Pick the client to bill."""
    search = request.args.get("q", "")
    page = request.args.get("page", 1, type=int)
    result = client_service.list_clients(search=search, page=max(page, 1), per_page=20)
    return render("staff/invoices/new.html", block="client_choices", clients=result, q=search)


@bp.post("/invoices/new")
def invoice_create():
    raw = request.values.get("client_id", "")
    try:
        client = client_service.get_client(int(raw)) if raw.isdigit() else None
    except NotFound:
        client = None
    if client is None:
        flash("Choose the client to bill.", "error")
        return redirect(url_for("staff.invoice_new"), code=303)
    draft = invoice_service.create_draft(client, _actor())
    flash(f"Draft started for {client.name}.", "success")
    return redirect(url_for("staff.invoice_detail", invoice_id=draft.id), code=303)


@bp.post("/clients/<int:client_id>/invoices/draft-from-charges")
def invoice_from_charges(client_id: int):
    try:
        client = client_service.get_client(client_id)
    except NotFound:
        abort(404)
    take_all = request.form.get("all") in ("1", "y", "on", "true")
    charge_ids = [int(c) for c in request.form.getlist("charge_ids") if c.isdigit()]
    if not take_all and not charge_ids:
        flash("Select the charges to invoice.", "error")
        return redirect(url_for("staff.client_detail", client_id=client_id), code=303)
    try:
        draft = invoice_service.create_draft(client, _actor(), charge_ids=charge_ids, all_open_charges=take_all)
    except ServiceError as exc:
        flash(exc.message, "error")
        return redirect(url_for("staff.client_detail", client_id=client_id), code=303)
    flash(f"Draft started with {len(draft.lines)} charge{'s' if len(draft.lines) != 1 else ''}.", "success")
    return redirect(url_for("staff.invoice_detail", invoice_id=draft.id), code=303)


# One invoice ------------------------------------------------------------------------------------

def _posted_lines(form) -> list[dict[str, str]]:
    """``lines-N-field`` inputs → line dicts in N order, renumbered from 0 (the service's error keys
    then point at the rows as the editor re-renders them)."""
    rows: dict[int, dict[str, str]] = {}
    for key in form.keys():
        match = _LINE_KEY.match(key)
        if match and match.group(2) in invoice_pages.LINE_FIELDS:
            rows.setdefault(int(match.group(1)), {})[match.group(2)] = form.get(key, "")
    limit = invoice_service.MAX_LINES + 1  # one more, so the service can say there are too many
    return [{name: rows[i].get(name, "") for name in invoice_pages.LINE_FIELDS} for i in sorted(rows)][:limit]


def _is_blank(line: dict[str, str]) -> bool:
    """A row nobody filled in (an added line left empty) is not part of the invoice."""
    return not any((line.get(k) or "").strip() for k in
                   ("description", "unit_price", "discount_value", "service_id", "charge_id"))


def _draft_input(form, keep_blank: bool = False) -> DraftInput:
    lines = _posted_lines(form)
    if not keep_blank:
        lines = [ln for ln in lines if not _is_blank(ln)]
    return DraftInput(
        currency=form.get("currency", ""), due_date=form.get("due_date", ""), memo=form.get("memo", ""),
        footer=form.get("footer", ""), discount_kind=form.get("discount_kind", ""),
        discount_value=form.get("discount_value", ""), lines=lines,
    )


def _editor(invoice, values: DraftInput, errors: dict | None = None, status: int = 200,
            add_error: str | None = None, add_service_id: str = ""):
    state = invoice_pages.editor_state(invoice, values)
    context = dict(invoice=invoice, client=invoice.client, values=values, errors=errors or {}, state=state,
                   add_error=add_error, add_service_id=add_service_id)
    return render(EDITOR, **context), status


def _show(invoice, payment=None, payment_errors=None, status: int = 200, refund=None, credit_note=None,
          excess=None, mark_errors=None):
    context = invoice_service.document(invoice)
    return render(
        SHOW, actions=invoice_pages.allowed_actions(invoice), excess=excess, mark_errors=mark_errors or {},
        recipients=invoice_pages.recipients(invoice),
        timeline=invoice_lists.invoice_timeline(invoice.id), payments=invoice_lists.invoice_payments(invoice.id),
        payment=payment or invoice_pages.payment_defaults(invoice), payment_errors=payment_errors or {},
        methods=invoice_service.MANUAL_METHODS, logo_url=url_for("public.logo"), refund=refund or {},
        credit_panel=credits.invoice_panel(invoice), card_panel=autopay.invoice_panel(invoice),
        credit_notes_panel=credit_notes.invoice_panel(invoice, **(credit_note or {})), **context,
    ), status


@bp.get("/invoices/<int:invoice_id>")
def invoice_detail(invoice_id: int):
    invoice = _invoice_or_404(invoice_id)
    if invoice.is_draft:
        return _editor(invoice, invoice_pages.form_values(invoice))
    return _show(invoice)


@bp.post("/invoices/<int:invoice_id>")
def invoice_save(invoice_id: int):
    invoice = _invoice_or_404(invoice_id)
    if not invoice.is_draft:
        flash("This invoice is finalized and can no longer be edited. Issue a replacement (finalizing it "
              "voids this one), or void it.",
              "error")
        return _back(invoice_id)
    values = _draft_input(request.form)
    then = request.form.get("then", "")
    try:
        recipients = invoice_pages.save(invoice, values, _actor(), then=then)
    except InvoiceInvalid as exc:
        return _editor(invoice, values, errors=exc.errors, status=422)
    except ServiceError as exc:
        flash(exc.message, "error")
        return _back(invoice_id)
    if then == "send":
        flash(f"Invoice {invoice.number} sent to {', '.join(recipients)}.", "success")
    elif then == "finalize":
        flash(_finalized(invoice, recipients), "success")
    else:
        flash("Draft saved.", "success")
    return _back(invoice_id)


@bp.post("/invoices/<int:invoice_id>/editor")
def invoice_editor(invoice_id: int):
    """Add, remove or move a line in what is typed, without saving: the lines block comes back
    (with the totals beside it), or the whole editor without htmx."""
    invoice = _invoice_or_404(invoice_id)
    if not invoice.is_draft:
        abort(409)
    values = _draft_input(request.form, keep_blank=True)
    lines = values.lines
    op = request.form.get("op", "")
    add_service_id = request.form.get("add_service_id", "")
    add_error = None
    if not _OP.match(op):
        abort(400)
    if op == "add":
        lines.append(invoice_pages.blank_line())
    elif op == "add-service":
        try:
            lines.append(invoice_pages.service_line(add_service_id, values.currency))
            add_service_id = ""
        except ServiceError as exc:
            add_error = exc.message
    else:
        action, _, index = op.partition("-")
        i = int(index)
        if 0 <= i < len(lines):
            if action == "remove":
                del lines[i]
            elif action == "up" and i > 0:
                lines[i - 1], lines[i] = lines[i], lines[i - 1]
            elif action == "down" and i < len(lines) - 1:
                lines[i + 1], lines[i] = lines[i], lines[i + 1]
    preview = DraftInput(**{**values.__dict__, "lines": [ln for ln in lines if not _is_blank(ln)]})
    state = invoice_pages.editor_state(invoice, preview)
    context = dict(invoice=invoice, client=invoice.client, values=values, errors={}, state=state,
                   add_error=add_error, add_service_id=add_service_id, focus_op=op)
    if is_htmx():
        return render_blocks(EDITOR, ["lines", "totals"], oob=True, **context)
    return render(EDITOR, **context)


@bp.post("/invoices/<int:invoice_id>/preview")
def invoice_preview(invoice_id: int):
    """The totals block for what is typed, computed by the server; nothing is saved."""
    invoice = _invoice_or_404(invoice_id)
    if not invoice.is_draft:
        abort(409)
    values = _draft_input(request.form, keep_blank=not is_htmx())
    if not is_htmx():  # only the editor's script asks for the block; anyone else gets the editor back
        return _editor(invoice, values)
    state = invoice_pages.editor_state(invoice, values)
    return render(EDITOR, block="totals", invoice=invoice, values=values, state=state, errors={})


# Actions -------------------------------------------------------------------------------------------

def _action(invoice_id: int, run, success: str | None = None):
    invoice = _invoice_or_404(invoice_id)
    try:
        message = run(invoice)
    except ServiceError as exc:
        flash(exc.message, "error")
        return _back(invoice_id)
    flash(message or success, "success")
    return _back(invoice_id)


def _finalized(invoice, emailed: list[str]) -> str:
    message = f"Invoice {invoice.number} finalized and locked."
    if emailed:
        message += f" Emailed to {', '.join(emailed)} (the “invoice ready” notification is on)."
    return message


@bp.post("/invoices/<int:invoice_id>/finalize")
def invoice_finalize(invoice_id: int):
    return _action(invoice_id, lambda inv: _finalized(inv, invoice_pages.finalize(inv, _actor())))


@bp.post("/invoices/<int:invoice_id>/send")
def invoice_send(invoice_id: int):
    def run(inv):
        resend = not inv.is_draft
        to = invoice_service.send(inv, _actor())
        return f"Invoice {inv.number} {'sent again' if resend else 'sent'} to {', '.join(to)}."
    return _action(invoice_id, run)


@bp.post("/invoices/<int:invoice_id>/resend")
def invoice_resend(invoice_id: int):
    def run(inv):
        if inv.is_draft:
            raise ServiceError("This invoice hasn't been sent yet.")
        return f"Invoice {inv.number} sent again to {', '.join(invoice_service.send(inv, _actor()))}."
    return _action(invoice_id, run)


@bp.post("/invoices/<int:invoice_id>/void")
def invoice_void(invoice_id: int):
    reason = request.form.get("reason", "")
    return _action(invoice_id, lambda inv: f"Invoice {invoice_service.void(inv, _actor(), reason).number} "
                                           "voided (cancelled). Nothing is due on it.")


@bp.post("/invoices/<int:invoice_id>/replace")
def invoice_replace(invoice_id: int):
    invoice = _invoice_or_404(invoice_id)
    try:
        draft = invoice_service.replace(invoice, _actor())
    except ServiceError as exc:
        flash(exc.message, "error")
        return _back(invoice_id)
    if invoice.status in ("open", "overdue", "uncollectible"):
        flash(f"Replacement draft for {invoice.display_number} created. {invoice.display_number} stays as it is "
              "until you finalize this draft; then it is voided.", "success")
    else:
        flash(f"Replacement draft for {invoice.display_number} created.", "success")
    return _back(draft.id)


@bp.post("/invoices/<int:invoice_id>/payments")
def invoice_payment(invoice_id: int):
    invoice = _invoice_or_404(invoice_id)
    typed = {k: request.form.get(k, "") for k in ("amount", "method", "received_on", "reference")}
    confirmed = request.form.get("confirm_excess") == "1"
    try:
        payment = invoice_service.record_manual_payment(
            invoice, typed["amount"], typed["method"], typed["received_on"], typed["reference"], _actor(),
            confirm_excess=confirmed, expected_due=_whole_number(request.form.get("expected_due")))
    except InvoiceInvalid as exc:
        return _show(invoice, payment=typed, payment_errors=exc.errors, status=422)
    except ExcessNeedsConfirmation as exc:
        # Nothing recorded: the page asks once more, naming the excess and where it goes.
        return _show(invoice, payment=typed, excess=exc)
    except ServiceError as exc:
        flash(exc.message, "error")
        return _back(invoice_id)
    flash(_recorded(invoice, payment), "success")
    return _back(invoice_id)


def _whole_number(text: str | None) -> int | None:
    """A hidden form field holding an amount in minor units (what the page showed), or None."""
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 19 else None


def _recorded(invoice, payment) -> str:
    message = "Payment recorded; the invoice is paid." if invoice.status == "paid" else "Payment recorded."
    if payment.credited_amount:
        message += (f" {invoice_pages.money(payment.credited_amount, payment.currency)} more than was due went to "
                    f"{invoice.client.name}'s credit balance.")
    return message


@bp.post("/invoices/<int:invoice_id>/mark-paid")
def invoice_mark_paid(invoice_id: int):
    """"Mark as paid": the full amount due, today, by the method chosen; one confirmation (the dialog)."""
    invoice = _invoice_or_404(invoice_id)
    method = request.form.get("method", "")
    try:
        payment = invoice_service.mark_paid(invoice, method, _actor(),
                                            expected_due=_whole_number(request.form.get("expected_due")))
    except InvoiceInvalid as exc:
        return _show(invoice, mark_errors=exc.errors, status=422)
    except ServiceError as exc:
        flash(exc.message, "error")
        return _back(invoice_id)
    flash(f"Invoice {invoice.number} marked as paid: {invoice_pages.money(payment.amount, payment.currency)} "
          f"({payment.method_label}, received today).", "success")
    return _back(invoice_id)


@bp.post("/invoices/<int:invoice_id>/delete")
def invoice_delete(invoice_id: int):
    invoice = _invoice_or_404(invoice_id)
    had_charges = any(line.charge_id for line in invoice.lines)
    try:
        invoice_service.delete_draft(invoice, _actor())
    except ServiceError as exc:
        flash(exc.message, "error")
        return _back(invoice_id)
    flash("Draft deleted." + (" Its charges are open again." if had_charges else ""), "success")
    return redirect(url_for("staff.invoices"), code=303)


@bp.post("/invoices/<int:invoice_id>/revoke-links")
def invoice_revoke_links(invoice_id: int):
    def run(inv):
        count = invoice_service.revoke_guest_tokens(inv, _actor())
        return f"{count} payment link{'s' if count != 1 else ''} revoked." if count else "No live links to revoke."
    return _action(invoice_id, run)


@bp.get("/invoices/<int:invoice_id>/pdf")
def invoice_pdf(invoice_id: int):
    """The PDF as a download named ``<number>.pdf``; a draft's says DRAFT on every page."""
    return downloads.invoice_pdf(_invoice_or_404(invoice_id))


# Refunds (F3; F4: through a credit note) --------------------------------------------------------

@bp.post("/invoices/<int:invoice_id>/payments/<int:payment_id>/refund")
def invoice_refund(invoice_id: int, payment_id: int):
    """Refund on a payment: a credit note whose refund part is the amount, so the invoice stays
    settled and the refund has a numbered document."""
    _invoice_or_404(invoice_id)
    typed = {"payment_id": payment_id, "amount": request.form.get("amount", "").strip()[:30],
             "reason": request.form.get("reason", "").strip()[:500]}
    try:
        note = credit_notes.refund_payment(invoice_id, payment_id, typed["amount"], typed["reason"], _actor())
    except NotFound:
        abort(404)
    except ServiceError as exc:
        if exc.field:
            return _show(_invoice_or_404(invoice_id), status=422, refund={**typed, "error": exc.message})
        flash(exc.message, "error")
        return _back(invoice_id)
    flash(f"Refund recorded with credit note {note.number}. The client is emailed about it." if note else
          "Refund recorded. The client is emailed about it.", "success")
    return _back(invoice_id)

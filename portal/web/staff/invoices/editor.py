"""Staff drafts: start one (for a client, or from open charges), the editor (save, finalize or send
from it, add / remove / move lines, live totals) and deleting a draft.

``InvoiceForm`` (web/forms.py) reads what was typed, the ``lines-N-field`` rows included, into the
``DraftInput`` the service parses and checks; the editor's totals, validation and every state change
live in ``services.invoices`` (and ``services.invoice_pages``).
"""
from __future__ import annotations

import re

from flask import abort, flash, redirect, request, url_for
from jinja2_fragments.flask import render_blocks

from portal.services import clients as client_service
from portal.services import invoice_pages
from portal.services import invoices as invoice_service
from portal.services.errors import NotFound, ServiceError
from portal.services.invoices import DraftInput, InvoiceInvalid
from portal.services.typed import row_id
from portal.web.forms import InvoiceForm
from portal.web.rendering import is_htmx, page_arg, render
from portal.web.staff import bp
from portal.web.staff.invoices.page import (
    actor,
    back,
    finalized_message,
    invoice_or_404,
    show_invoice,
)

EDITOR = "staff/invoices/editor.html"

_OP = re.compile(r"^(add|add-service|remove-\d{1,6}|up-\d{1,6}|down-\d{1,6})$", re.ASCII)


# New drafts ----------------------------------------------------------------------------------

@bp.get("/invoices/new")
def invoice_new():
    """Pick the client to bill."""
    search = request.args.get("q", "")
    page = page_arg()
    result = client_service.list_clients(search=search, page=page, per_page=20)
    return render("staff/invoices/new.html", block="client_choices", clients=result, q=search)


@bp.post("/invoices/new")
def invoice_create():
    raw = request.values.get("client_id", "")
    try:
        client = client_service.get_client(row_id(raw)) if row_id(raw) else None
    except NotFound:
        client = None
    if client is None:
        flash("Choose the client to bill.", "error")
        return redirect(url_for("staff.invoice_new"), code=303)
    draft = invoice_service.create_draft(client, actor())
    flash(f"Draft started for {client.name}.", "success")
    return redirect(url_for("staff.invoice_detail", invoice_id=draft.id), code=303)


@bp.post("/clients/<int:client_id>/invoices/draft-from-charges")
def invoice_from_charges(client_id: int):
    try:
        client = client_service.get_client(client_id)
    except NotFound:
        abort(404)
    take_all = request.form.get("all") in ("1", "y", "on", "true")
    charge_ids = [row_id(c) for c in request.form.getlist("charge_ids") if row_id(c)]
    if not take_all and not charge_ids:
        flash("Select the charges to invoice.", "error")
        return redirect(url_for("staff.client_detail", client_id=client_id), code=303)
    try:
        draft = invoice_service.create_draft(client, actor(), charge_ids=charge_ids, all_open_charges=take_all)
    except ServiceError as exc:
        flash(exc.message, "error")
        return redirect(url_for("staff.client_detail", client_id=client_id), code=303)
    flash(f"Draft started with {len(draft.lines)} charge{'s' if len(draft.lines) != 1 else ''}.", "success")
    return redirect(url_for("staff.invoice_detail", invoice_id=draft.id), code=303)


# The editor ------------------------------------------------------------------------------------

def _editor(invoice, values: DraftInput, errors: dict | None = None, status: int = 200,
            add_error: str | None = None, add_service_id: str = ""):
    state = invoice_pages.editor_state(invoice, values)
    context = dict(invoice=invoice, client=invoice.client, values=values, errors=errors or {}, state=state,
                   add_error=add_error, add_service_id=add_service_id)
    return render(EDITOR, **context), status


@bp.get("/invoices/<int:invoice_id>")
def invoice_detail(invoice_id: int):
    """A draft opens in the editor; any other invoice is the invoice page."""
    invoice = invoice_or_404(invoice_id)
    if invoice.is_draft:
        return _editor(invoice, invoice_pages.form_values(invoice))
    return show_invoice(invoice)


@bp.post("/invoices/<int:invoice_id>")
def invoice_save(invoice_id: int):
    invoice = invoice_or_404(invoice_id)
    if not invoice.is_draft:
        flash("This invoice is finalized and can no longer be edited. Issue a replacement (finalizing it "
              "voids this one), or void it.",
              "error")
        return back(invoice_id)
    form = InvoiceForm()
    values = form.draft_input()
    then = form.then.data or ""
    try:
        recipients = invoice_pages.save(invoice, values, actor(), then=then)
    except InvoiceInvalid as exc:
        return _editor(invoice, values, errors=exc.errors, status=422)
    except ServiceError as exc:
        flash(exc.message, "error")
        return back(invoice_id)
    if then == "send":
        flash(f"Invoice {invoice.number} sent to {', '.join(recipients)}.", "success")
    elif then == "finalize":
        flash(finalized_message(invoice, recipients), "success")
    else:
        flash("Draft saved.", "success")
    return back(invoice_id)


@bp.post("/invoices/<int:invoice_id>/editor")
def invoice_editor(invoice_id: int):
    """Add, remove or move a line in what is typed, without saving: the lines block comes back
    (with the totals beside it), or the whole editor without htmx."""
    invoice = invoice_or_404(invoice_id)
    if not invoice.is_draft:
        abort(409)
    form = InvoiceForm()
    values = form.draft_input(keep_blank=True)
    lines = values.lines
    op = form.op.data or ""
    add_service_id = form.add_service_id.data or ""
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
    preview = DraftInput(**{**values.__dict__, "lines": [ln for ln in lines if not InvoiceForm.is_blank(ln)]})
    state = invoice_pages.editor_state(invoice, preview)
    context = dict(invoice=invoice, client=invoice.client, values=values, errors={}, state=state,
                   add_error=add_error, add_service_id=add_service_id, focus_op=op)
    if is_htmx():
        return render_blocks(EDITOR, ["lines", "totals"], oob=True, **context)
    return render(EDITOR, **context)


@bp.post("/invoices/<int:invoice_id>/preview")
def invoice_preview(invoice_id: int):
    """The totals block for what is typed, computed by the server; nothing is saved."""
    invoice = invoice_or_404(invoice_id)
    if not invoice.is_draft:
        abort(409)
    values = InvoiceForm().draft_input(keep_blank=not is_htmx())
    if not is_htmx():  # only the editor's script asks for the block; anyone else gets the editor back
        return _editor(invoice, values)
    state = invoice_pages.editor_state(invoice, values)
    return render(EDITOR, block="totals", invoice=invoice, values=values, state=state, errors={})


@bp.post("/invoices/<int:invoice_id>/delete")
def invoice_delete(invoice_id: int):
    invoice = invoice_or_404(invoice_id)
    had_charges = any(line.charge_id for line in invoice.lines)
    try:
        invoice_service.delete_draft(invoice, actor())
    except ServiceError as exc:
        flash(exc.message, "error")
        return back(invoice_id)
    flash("Draft deleted." + (" Its charges are open again." if had_charges else ""), "success")
    return redirect(url_for("staff.invoices"), code=303)

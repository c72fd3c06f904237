"""Staff: a client's credit balance, custom credits, one-time charges, applying credit. F4.

The credit section of the client page and the "Apply credit" panel of the invoice page are slots
of pages rendered elsewhere (``clients.client_detail``, ``invoices.page.show_invoice``). When a form posted
here must come back with its errors (422), the page is rendered by those same functions, so it is
exactly the page staff were on; the credit panel with the typed values and errors rides along in
``g.credit_panel``, which the slot templates prefer over the panel the page computed.
"""
from __future__ import annotations

from flask import abort, flash, g, redirect, request, url_for
from flask_login import current_user
from jinja2_fragments.flask import render_block

from portal.services import clients as client_service
from portal.services import credits
from portal.services import invoices as invoice_service
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor
from portal.web.rendering import is_htmx, page_arg
from portal.web.staff import bp
from portal.web.staff import clients as client_views
from portal.web.staff.invoices.page import show_invoice

_FIELDS = ("amount", "currency", "description")


def _actor() -> Actor:
    return Actor.of(current_user)


def _client_or_404(client_id: int):
    try:
        return client_service.get_client(client_id)
    except NotFound:
        abort(404)


def _client_page(client, status: int = 200, **panel):
    """The client page as ``clients.client_detail`` renders it, with this credit panel."""
    g.credit_panel = credits.client_panel(client, **panel)
    return client_views.client_detail(client.id), status


def _typed() -> dict[str, str]:
    return {name: request.form.get(name, "").strip()[:600] for name in _FIELDS}


def _post_entry(client_id: int, form: str, add, done: str):
    client = _client_or_404(client_id)
    typed = _typed()
    try:
        entry = add(client.id, typed["amount"], typed["currency"], typed["description"], _actor())
    except credits.CreditInvalid as exc:
        return _client_page(client, 422, form=form, values=typed, errors=exc.errors)
    except ServiceError as exc:
        return _client_page(client, 422, form=form, values=typed, errors={"amount": exc.message})
    flash(done.format(money=credits.money_text(abs(entry.amount), entry.currency)), "success")
    return redirect(url_for("staff.client_detail", client_id=client.id) + "#credit", code=303)


@bp.post("/clients/<int:client_id>/credits")
def client_credit_add(client_id: int):
    return _post_entry(client_id, "credit", credits.add_credit, "Credit of {money} added.")


@bp.post("/clients/<int:client_id>/one-time-charges")
def client_credit_charge(client_id: int):
    return _post_entry(client_id, "charge", credits.add_charge,
                       "One-time charge of {money} taken from the credit balance.")


@bp.get("/clients/<int:client_id>/credits")
def client_credit_ledger(client_id: int):
    """Another page of the ledger: for htmx just the ledger block, else the client page with it."""
    client = _client_or_404(client_id)
    page = page_arg()
    if is_htmx():
        return render_block("staff/clients/_credit.html", "credit_ledger",
                            credit_panel=credits.client_panel(client, page=page))
    return _client_page(client, page=page)


@bp.post("/invoices/<int:invoice_id>/apply-credit")
def invoice_apply_credit(invoice_id: int):
    amount = request.form.get("amount", "").strip()[:30]
    try:
        entry = credits.apply_credit(invoice_id, amount or None, _actor())
    except NotFound:
        abort(404)
    except ServiceError as exc:
        if exc.field:
            invoice = invoice_service.get_invoice(invoice_id)
            g.credit_panel = credits.invoice_panel(invoice, amount=amount, error=exc.message)
            return show_invoice(invoice, status=422)
        flash(exc.message, "error")
        return redirect(url_for("staff.invoice_detail", invoice_id=invoice_id), code=303)
    invoice = invoice_service.get_invoice(invoice_id)
    message = f"{credits.money_text(-entry.amount, entry.currency)} of credit applied."
    if invoice.status == "paid":
        message += " The invoice is paid."
    flash(message, "success")
    return redirect(url_for("staff.invoice_detail", invoice_id=invoice_id), code=303)

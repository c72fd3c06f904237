"""The client portal (/portal/…): what a client's contact sees after signing in.

Every invoice query is scoped to the signed-in contact's client: another
client's invoice, or a draft, is a 404.
"""
from __future__ import annotations

from flask import Blueprint, abort, request
from flask_login import current_user

from portal.services import invoices as invoice_service
from portal.services.errors import NotFound
from portal.web.downloads import invoice_pdf
from portal.web.guards import require_contact
from portal.web.rendering import render

bp = Blueprint("client", __name__)
bp.before_request(require_contact)


def _invoice_or_404(invoice_id: int):
    try:
        return invoice_service.client_invoice(current_user.client_id, invoice_id)
    except NotFound:
        abort(404)


HOME_INVOICES = 5


@bp.get("/")
def home():
    contact = current_user._get_current_object()
    invoices = invoice_service.client_invoices(contact.client_id, page=1, per_page=HOME_INVOICES)
    return render("client/home.html", contact=contact, client=contact.client, invoices=invoices)


@bp.get("/invoices")
def invoices():
    page = request.args.get("page", 1, type=int)
    result = invoice_service.client_invoices(current_user.client_id, page=page)
    return render("client/invoices.html", block="invoice_rows", invoices=result)


@bp.get("/invoices/<int:invoice_id>")
def invoice(invoice_id: int):
    found = _invoice_or_404(invoice_id)
    return render("client/invoice.html", **invoice_service.client_document(found))


@bp.get("/invoices/<int:invoice_id>/pdf")
def invoice_pdf_download(invoice_id: int):
    return invoice_pdf(_invoice_or_404(invoice_id))

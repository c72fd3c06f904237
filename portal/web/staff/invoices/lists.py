"""Staff invoice lists: invoices, their items, and both as CSV (streamed)."""
from __future__ import annotations

from flask import Response, request, stream_with_context

from portal.services import clients as client_service
from portal.services import invoice_lists, invoice_pages
from portal.services import invoices as invoice_service
from portal.services.errors import NotFound
from portal.web.rendering import render
from portal.web.staff import bp

LIST = "staff/invoices/list.html"
ITEMS = "staff/invoices/items.html"


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

"""Reading invoices: one invoice (optionally one client's), the portal's list, status totals.
"""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from portal.billing import states
from portal.extensions import db
from portal.models import Invoice
from portal.services.errors import NotFound

# Reading ---------------------------------------------------------------------

def get_invoice(invoice_id: int, client_id: int | None = None) -> Invoice:
    """An invoice; with ``client_id``, only that client's (anything else is not found)."""
    invoice = db.session.get(Invoice, invoice_id, options=[selectinload(Invoice.lines)])
    if invoice is None or (client_id is not None and invoice.client_id != client_id):
        raise NotFound("No such invoice.")
    return invoice


def status_totals() -> dict[str, dict]:
    """Count and sum of amount due per status, per currency (for the list's header)."""
    rows = db.session.execute(
        select(Invoice.status, Invoice.currency, func.count(), func.coalesce(func.sum(Invoice.amount_due), 0))
        .group_by(Invoice.status, Invoice.currency)
    ).all()
    out: dict[str, dict] = {}
    for status, currency, count, due in rows:
        entry = out.setdefault(status, {"count": 0, "due": {}})
        entry["count"] += count
        entry["due"][currency] = int(due)
    return out


# The client's side: the portal's invoice list and page, the guest page (read-only) -----------------

PORTAL_PAGE_SIZE = 20


# The portal's invoice list filters: key → (label, statuses; None = every finalized invoice).
PORTAL_STATUS_FILTERS = {
    "all": ("All", None),
    "due": ("Due", (states.OPEN, states.OVERDUE, states.UNCOLLECTIBLE)),
    "overdue": ("Overdue", (states.OVERDUE,)),
    "paid": ("Paid", (states.PAID,)),
    "cancelled": ("Cancelled", (states.VOID,)),
}


def client_invoices(client_id: int, page: int = 1, per_page: int = PORTAL_PAGE_SIZE, status: str = "all"):
    """One page of a client's finalized invoices, newest first, optionally of one
    ``PORTAL_STATUS_FILTERS`` group (an unknown one shows all). Drafts never appear."""
    query = (
        select(Invoice)
        .where(Invoice.client_id == client_id, Invoice.status != states.DRAFT)
        .order_by(Invoice.issue_date.desc(), Invoice.sequence_number.desc(), Invoice.id.desc())
    )
    statuses = PORTAL_STATUS_FILTERS.get(status, PORTAL_STATUS_FILTERS["all"])[1]
    if statuses is not None:
        query = query.where(Invoice.status.in_(statuses))
    return db.paginate(query, page=min(max(int(page or 1), 1), 1_000_000), per_page=per_page, error_out=False)


def client_invoice(client_id: int, invoice_id: int) -> Invoice:
    """One of this client's finalized invoices; a draft or another client's is not found."""
    invoice = db.session.scalar(
        select(Invoice)
        .where(Invoice.id == invoice_id, Invoice.client_id == client_id, Invoice.status != states.DRAFT)
        .options(selectinload(Invoice.lines))
    )
    if invoice is None:
        raise NotFound("No such invoice.")
    return invoice

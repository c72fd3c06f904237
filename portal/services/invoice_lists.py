"""Reading invoices in bulk: the staff list, the invoice-items list, their CSV exports, and an
invoice's timeline and payments.

Built to stay fast at 100k invoices: one query per page (the client joined and eager-loaded,
never fetched row by row), a separate ``count`` without the eager load, filters that match the
indexes on ``invoice`` (status + due date, client + status, issue date, created), and CSV
exports streamed in ``yield_per`` batches of plain columns rather than ORM objects.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import aliased, contains_eager

from portal import clock
from portal.billing import states
from portal.billing.money import to_major
from portal.extensions import db
from portal.models import Client, Event, Invoice, InvoiceLine
from portal.services.paging import Page
from portal.services.settings import get_business
from portal.services.typed import row_id

PER_PAGE = 25
MAX_PER_PAGE = 100
CSV_BATCH = 1000

# Sort keys the list offers → the column they order by.
SORTS = {
    "created": Invoice.created_at,
    "number": Invoice.sequence_number,
    "client": func.lower(Client.name),
    "issued": Invoice.issue_date,
    "due": Invoice.due_date,
    "total": Invoice.total,
    "amount_due": Invoice.amount_due,
}
SORT_LABELS = {
    "number": "Number", "client": "Client", "issued": "Issued", "due": "Due", "total": "Total",
    "amount_due": "Amount due",
}


@dataclass
class InvoiceFilters:
    """What the list shows, read leniently from query-string values: a bad value is reported
    in ``errors`` and left out of the filter, never a crash."""

    status: str = ""
    client_id: int | None = None
    date_from: date | None = None
    date_to: date | None = None
    overdue: bool = False
    q: str = ""
    sort: str = "created"
    direction: str = "desc"
    page: int = 1
    per_page: int = PER_PAGE
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> "InvoiceFilters":
        f = cls()
        errors = f.errors
        status = (args.get("status") or "").strip()
        if status in states.STATES:
            f.status = status
        elif status:
            errors["status"] = "Choose a status from the list."
        client = (args.get("client_id") or "").strip()
        if row_id(client):
            f.client_id = row_id(client)
        for key, attr in (("from", "date_from"), ("to", "date_to")):
            text = (args.get(key) or "").strip()
            if text:
                try:
                    setattr(f, attr, date.fromisoformat(text))
                except ValueError:
                    errors[key] = "Use a date like 2026-12-31."
        f.overdue = (args.get("overdue") or "") in ("1", "y", "on", "true")
        f.q = (args.get("q") or "").strip()[:200]
        sort = (args.get("sort") or "").strip()
        f.sort = sort if sort in SORTS else "created"
        f.direction = "asc" if (args.get("dir") or "").strip() == "asc" else "desc"
        page = (args.get("page") or "").strip()
        f.page = min(row_id(page) or 1, 1_000_000)
        per_page = (args.get("per_page") or "").strip()
        if row_id(per_page):
            f.per_page = min(row_id(per_page), MAX_PER_PAGE)
        return f

    def args(self, **changes: Any) -> dict[str, Any]:
        """The query-string values that reproduce these filters (with ``changes``), for links."""
        values: dict[str, Any] = {
            "q": self.q or None, "status": self.status or None, "client_id": self.client_id,
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
            "overdue": "1" if self.overdue else None,
            "sort": self.sort if self.sort != "created" else None,
            "dir": self.direction if self.sort != "created" else None,
            "page": self.page if self.page > 1 else None,
            "per_page": self.per_page if self.per_page != PER_PAGE else None,
        }
        values.update(changes)
        return {k: v for k, v in values.items() if v not in (None, "")}

    def sort_args(self, key: str) -> dict[str, Any]:
        """Links for a column header: first click ascending, the next flips it."""
        direction = "desc" if self.sort == key and self.direction == "asc" else "asc"
        return self.args(sort=key, dir=direction, page=None)

    @property
    def any(self) -> bool:
        return bool(self.status or self.client_id or self.date_from or self.date_to or self.overdue or self.q)


def _like(term: str) -> str:
    escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _today() -> date:
    return clock.today(get_business().timezone)


def _conditions(f: InvoiceFilters, search_lines: bool = False) -> list:
    """WHERE clauses for ``f`` on Invoice (and InvoiceLine when ``search_lines``)."""
    conds = []
    if f.status:
        conds.append(Invoice.status == f.status)
    if f.client_id is not None:
        conds.append(Invoice.client_id == f.client_id)
    if f.date_from:
        conds.append(Invoice.issue_date >= f.date_from)
    if f.date_to:
        conds.append(Invoice.issue_date <= f.date_to)
    if f.overdue:
        # Marked overdue by the tick, or open and past due before the tick got to it.
        conds.append(or_(Invoice.status == states.OVERDUE,
                         and_(Invoice.status == states.OPEN, Invoice.due_date < _today())))
    if f.q:
        # A number or client-name match; the clients are found first (a small table), so the
        # search needs no join. ``search_lines`` also matches line descriptions.
        # (Aliases keep the subqueries their own when the outer query joins the same tables.)
        like = _like(f.q)
        named = aliased(Client)
        clients = select(named.id).where(func.lower(named.name).like(like, escape="\\"))
        if search_lines:
            inv = aliased(Invoice)
            matching = select(inv.id).where(or_(func.lower(inv.number).like(like, escape="\\"),
                                                inv.client_id.in_(clients)))
            conds.append(or_(func.lower(InvoiceLine.description).like(like, escape="\\"),
                             InvoiceLine.invoice_id.in_(matching)))
        else:
            conds.append(or_(func.lower(Invoice.number).like(like, escape="\\"), Invoice.client_id.in_(clients)))
    return conds


def _needs_client(f: InvoiceFilters) -> bool:
    return f.sort == "client"


def _ordered(query: Select, f: InvoiceFilters) -> Select:
    column = SORTS[f.sort]
    ordering = column.asc() if f.direction == "asc" else column.desc()
    tie = Invoice.id.asc() if f.direction == "asc" else Invoice.id.desc()
    if f.sort in ("number", "issued", "due"):  # drafts have none: keep them last either way
        ordering = ordering.nulls_last()
    return query.order_by(ordering, tie)


def _in_order(rows, ids: list[int], key) -> list:
    by_id = {key(row): row for row in rows}
    return [by_id[i] for i in ids if i in by_id]


def list_invoices(f: InvoiceFilters) -> Page:
    """One page of invoices, each with its client.

    Three queries whatever the page size: the count, the page's ids (a narrow query that joins
    the client only to search or sort by its name, so a sort or a deep page moves ids, not
    rows), then those invoices with their clients in one joined query.
    """
    conds = _conditions(f)
    counted = select(func.count(Invoice.id)).select_from(Invoice)
    ids_query = select(Invoice.id).select_from(Invoice)
    if _needs_client(f):
        counted = counted.join(Invoice.client)
        ids_query = ids_query.join(Invoice.client)
    total = db.session.scalar(counted.where(*conds)) or 0
    pages = max(1, math.ceil(total / f.per_page))
    page = min(f.page, pages)
    ids = list(db.session.scalars(
        _ordered(ids_query.where(*conds), f).limit(f.per_page).offset((page - 1) * f.per_page)))
    rows = db.session.scalars(
        select(Invoice).join(Invoice.client).options(contains_eager(Invoice.client)).where(Invoice.id.in_(ids))
    ).all() if ids else []
    return Page(_in_order(rows, ids, lambda inv: inv.id), page, f.per_page, total)


ITEM_ORDER = (InvoiceLine.invoice_id.desc(), InvoiceLine.position.asc(), InvoiceLine.id.asc())


def _items_query(f: InvoiceFilters, *columns, minimal: bool = False) -> Select:
    """Lines with their invoice and client; ``minimal`` joins only what the filters need."""
    query = select(*columns).select_from(InvoiceLine)
    needs_invoice = bool(f.status or f.client_id is not None or f.date_from or f.date_to or f.overdue)
    if not minimal or needs_invoice:
        query = query.join(InvoiceLine.invoice)
    if not minimal:
        query = query.join(Invoice.client)
    return query.where(*_conditions(f, search_lines=True))


def list_items(f: InvoiceFilters) -> Page:
    """One page of invoice lines across invoices, newest invoice first, with its invoice and client
    (count, the page's line ids, then those lines joined to their invoices and clients)."""
    total = db.session.scalar(_items_query(f, func.count(InvoiceLine.id), minimal=True)) or 0
    pages = max(1, math.ceil(total / f.per_page))
    page = min(f.page, pages)
    ids = list(db.session.scalars(
        _items_query(f, InvoiceLine.id, minimal=True).order_by(*ITEM_ORDER)
        .limit(f.per_page).offset((page - 1) * f.per_page)))
    rows = db.session.execute(
        select(InvoiceLine, Invoice, Client.name).join(InvoiceLine.invoice).join(Invoice.client)
        .where(InvoiceLine.id.in_(ids))
    ).all() if ids else []
    ordered = _in_order(rows, ids, lambda row: row[0].id)
    items = [{"line": line, "invoice": invoice, "client_name": name} for line, invoice, name in ordered]
    return Page(items, page, f.per_page, total)


# CSV -----------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: Any) -> str:
    """A text cell; one a spreadsheet would run as a formula gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _amount(minor: int | None, currency: str) -> str:
    return "" if minor is None else str(to_major(int(minor), currency))


class _CsvChunks:
    """Rows → CSV text, handed out in chunks of ``CSV_BATCH`` rows (not one tiny write per row)."""

    def __init__(self):
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer)
        self.rows = 0

    def add(self, values: list) -> str | None:
        self.writer.writerow(values)
        self.rows += 1
        return self.take() if self.rows % CSV_BATCH == 0 else None

    def take(self) -> str:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return text


INVOICE_CSV_HEADER = ["number", "status", "client", "issue_date", "due_date", "currency", "subtotal",
                      "discounts", "tax", "total", "amount_paid", "amount_due", "created_at"]


def _rows(query: Select):
    """Plain rows in batches of ``CSV_BATCH`` (a server-side cursor on PostgreSQL), without the ORM."""
    return db.session.connection().execute(query, execution_options={"yield_per": CSV_BATCH})


def _iso(value) -> str:
    return value.isoformat() if value is not None else ""


def invoices_csv(f: InvoiceFilters) -> Iterator[str]:
    """The filtered list as CSV, in the list's order, read and written in batches; amounts in
    major units beside their currency."""
    out = _CsvChunks()
    out.add(INVOICE_CSV_HEADER)
    yield out.take()
    query = _ordered(
        select(Invoice.id, Invoice.number, Invoice.status, Client.name, Invoice.issue_date, Invoice.due_date,
               Invoice.currency, Invoice.subtotal, Invoice.discount_total, Invoice.tax_total, Invoice.total,
               Invoice.amount_paid, Invoice.amount_due, Invoice.created_at)
        .select_from(Invoice).join(Invoice.client).where(*_conditions(f)), f)
    labels = states.LABELS
    for (id_, number, status, name, issued, due, cur, subtotal, discounts, tax, total, paid, amount_due,
         created) in _rows(query):
        chunk = out.add([
            _text(number or f"Draft #{id_}"), labels.get(status, status), _text(name), _iso(issued), _iso(due),
            cur, _amount(subtotal, cur), _amount(discounts, cur), _amount(tax, cur), _amount(total, cur),
            _amount(paid, cur), _amount(amount_due, cur), _iso(created),
        ])
        if chunk:
            yield chunk
    yield out.take()


ITEM_CSV_HEADER = ["invoice", "status", "client", "issue_date", "line", "description", "quantity", "unit_price",
                   "discount", "net", "tax_name", "tax_percent", "tax_inclusive", "tax", "total", "currency"]


def items_csv(f: InvoiceFilters) -> Iterator[str]:
    """Every filtered invoice line as CSV, read and written in batches; amounts in major units."""
    out = _CsvChunks()
    out.add(ITEM_CSV_HEADER)
    yield out.take()
    query = _items_query(
        f, Invoice.id, Invoice.number, Invoice.status, Client.name, Invoice.issue_date, Invoice.currency,
        InvoiceLine.position, InvoiceLine.description, InvoiceLine.quantity, InvoiceLine.unit_price,
        InvoiceLine.discount_amount, InvoiceLine.net, InvoiceLine.tax_name, InvoiceLine.tax_percent,
        InvoiceLine.tax_inclusive, InvoiceLine.tax_amount, InvoiceLine.total,
    ).order_by(*ITEM_ORDER)
    labels = states.LABELS
    for (invoice_id, number, status, name, issued, cur, position, description, quantity, unit_price, discount,
         net, tax_name, tax_percent, inclusive, tax, total) in _rows(query):
        chunk = out.add([
            _text(number or f"Draft #{invoice_id}"), labels.get(status, status), _text(name), _iso(issued),
            position + 1, _text(description), format(quantity.normalize(), "f"), _amount(unit_price, cur),
            _amount(discount, cur), _amount(net, cur), _text(tax_name),
            format(tax_percent.normalize(), "f") if tax_percent is not None else "",
            ("yes" if inclusive else "no") if tax_name else "", _amount(tax, cur), _amount(total, cur), cur,
        ])
        if chunk:
            yield chunk
    yield out.take()


# One invoice's history -----------------------------------------------------------------------

def invoice_timeline(invoice_id: int, limit: int = 200) -> list[Event]:
    """What happened to an invoice, newest first, read from the events."""
    return list(db.session.scalars(
        select(Event).where(Event.subject_type == "invoice", Event.subject_id == invoice_id)
        .order_by(Event.occurred_at.desc(), Event.id.desc()).limit(limit)
    ))

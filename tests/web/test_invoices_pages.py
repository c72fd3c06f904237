"""Staff invoice pages over HTTP: the list (filters, search, sort, pages, totals per status, the
htmx rows block), the invoice-items list, both CSV exports, the invoice page and its actions
(finalize, send, resend, cancel, replace, payments, delete, revoke links), the PDF, and escaping.
"""
from __future__ import annotations

import csv
import html
import io
import re
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from markupsafe import escape
from pypdf import PdfReader
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from portal import clock
from portal.extensions import db
from portal.models import Charge, Client, Event, Invoice, InvoiceToken, Payment
from portal.services import invoices
from portal.services.events import Actor
from tests.support import make
from tests.support.web import email_text, links, post_form

STAFF = Actor("staff", None, "staff@portal.example")
NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(hour=12, tzinfo=timezone.utc)


def fresh() -> Session:
    """A session of its own: what is really in the database."""
    return Session(db.engine)


def text_of(response) -> str:
    return response.get_data(as_text=True)


def visible(response) -> str:
    """The page's text, as a reader sees it (tags dropped, entities decoded, spaces collapsed)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text_of(response))).split())


def listed(response) -> list[str]:
    """Invoice numbers in the list, in the order shown."""
    return re.findall(r'<tr id="invoice-\d+">\s*<td><a href="[^"]+">([^<]+)</a>', text_of(response))


def flashes(response) -> str:
    return " ".join(html.unescape(m) for m in re.findall(r'<p class="flash flash-\w+">(.*?)</p>', text_of(response)))


@pytest.fixture
def now():
    with clock.frozen(NOW):
        yield NOW


@pytest.fixture
def business(make):
    return make.business(name="Tidewater Studio", currency="EUR", timezone="UTC", locale="en_US",
                         invoice_number_format="INV-{seq:04d}", payment_terms_days=14)


@pytest.fixture
def vat(app):
    return make.tax_rate()  # VAT 23 %, on top of prices


def build(client, lines, finalize_on: str | None = None, **header) -> Invoice:
    """A draft with these lines (description, quantity, unit price), finalized on a day if asked."""
    draft = make.invoice(
        client, status="draft", currency=header.get("currency", "EUR"), memo=header.get("memo", ""),
        footer=header.get("footer", ""), lines=[(d, q, p, header.get("tax") or None) for d, q, p in lines])
    if finalize_on:
        with clock.frozen(at(finalize_on)):
            invoices.finalize(draft, STAFF)
    return draft


@pytest.fixture
def book(now, business, make):
    """Six invoices in every state across two clients; today is 2026-03-01.

    INV-0001 Acme   overdue (ticked)        250.00  issued 01-10
    INV-0002 Acme   sent, due 01-19         100.00  issued 01-05  (past due, not yet ticked)
    INV-0003 Acme   paid                     40.00  issued 02-01
    INV-0004 Boreal sent, due 03-06          75.50  issued 02-20
    INV-0005 Boreal cancelled                60.00  issued 02-10
    Draft    Boreal draft                    10.00
    """
    acme = make.client(name="Acme Ltd")
    boreal = make.client(name="Borealis GmbH", contacts=[
        {"name": "Bo Berg", "email": "bo@borealis.example", "receives_invoices": True}])
    overdue = build(acme, [("Retainer", "1", "250.00")], "2026-01-10")
    invoices.mark_overdue(NOW)
    past_due = build(acme, [("Design", "2", "50.00")], "2026-01-05")
    paid = build(acme, [("Hosting", "1", "40.00")], "2026-02-01")
    invoices.record_manual_payment(paid, "40.00", "wire", "2026-02-02", "", STAFF)
    sent = build(boreal, [("Workshop", "1", "75.50")], "2026-02-20")
    void = build(boreal, [("Print run", "3", "20.00")], "2026-02-10")
    invoices.void(void, STAFF, "Duplicate")
    draft = build(boreal, [("Sketches", "1", "10.00")])
    return {"acme": acme, "boreal": boreal, "overdue": overdue, "past_due": past_due, "paid": paid,
            "sent": sent, "void": void, "draft": draft}


# The list -------------------------------------------------------------------------------------

def test_the_list_shows_every_invoice_newest_first_with_client_status_and_amounts(book, staff_client):
    page = staff_client.get("/staff/invoices")
    assert page.status_code == 200
    draft = f"Draft #{book['draft'].id}"
    assert listed(page) == [draft, "INV-0005", "INV-0004", "INV-0003", "INV-0002", "INV-0001"]
    row = re.search(r'<tr id="invoice-%d">(.*?)</tr>' % book["sent"].id, text_of(page), re.S).group(1)
    cells = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split())
    assert cells == "INV-0004 Borealis GmbH Sent Feb 20, 2026 Mar 6, 2026 €75.50 €75.50"
    assert "6 invoices" in visible(page)
    assert 'aria-current="page">Invoices</a>' in text_of(page)


def test_totals_per_status_count_every_invoice_and_sum_what_is_due(book, staff_client):
    page = text_of(staff_client.get("/staff/invoices"))

    def card(status):
        block = re.search(r'<li class="status-total status-total-%s">(.*?)</li>' % status, page, re.S).group(1)
        return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", block)).split())

    assert card("open") == "Sent 2 €175.50 due"
    assert card("overdue") == "Overdue 1 €250.00 due"
    assert card("paid") == "Paid 1"
    assert card("void") == "Cancelled 1"
    assert card("draft") == "Draft 1"


@pytest.mark.parametrize("query, expected", [
    ("status=paid", ["INV-0003"]),
    ("status=void", ["INV-0005"]),
    ("status=open", ["INV-0004", "INV-0002"]),
    ("overdue=1", ["INV-0002", "INV-0001"]),
    ("from=2026-02-01&to=2026-02-28", ["INV-0005", "INV-0004", "INV-0003"]),
    ("from=2026-02-11", ["INV-0004"]),
    ("q=0004", ["INV-0004"]),
    ("q=inv-000", ["INV-0005", "INV-0004", "INV-0003", "INV-0002", "INV-0001"]),
    ("q=ACME", ["INV-0003", "INV-0002", "INV-0001"]),
    ("q=acme&status=overdue", ["INV-0001"]),
    ("q=bor&sort=client&dir=asc", ["INV-0004", "INV-0005", "Draft"]),
    ("q=nobody", []),
])
def test_filters_and_search_narrow_the_list(book, staff_client, query, expected):
    page = staff_client.get(f"/staff/invoices?{query}")
    assert page.status_code == 200
    assert [n if not n.startswith("Draft #") else "Draft" for n in listed(page)] == expected
    if not expected:
        assert "No invoice matches these filters." in visible(page)


def test_the_client_filter_shows_one_clients_invoices_and_names_it(book, staff_client):
    page = staff_client.get(f"/staff/invoices?client_id={book['boreal'].id}")
    assert listed(page) == [f"Draft #{book['draft'].id}", "INV-0005", "INV-0004"]
    assert "Client: Borealis GmbH" in visible(page)


@pytest.mark.parametrize("sort, direction, expected", [
    ("total", "asc", ["draft", "INV-0003", "INV-0005", "INV-0004", "INV-0002", "INV-0001"]),
    ("total", "desc", ["INV-0001", "INV-0002", "INV-0004", "INV-0005", "INV-0003", "draft"]),
    ("amount_due", "asc", ["INV-0003", "draft", "INV-0005", "INV-0004", "INV-0002", "INV-0001"]),
    ("number", "asc", ["INV-0001", "INV-0002", "INV-0003", "INV-0004", "INV-0005", "draft"]),
    ("number", "desc", ["INV-0005", "INV-0004", "INV-0003", "INV-0002", "INV-0001", "draft"]),
    ("issued", "asc", ["INV-0002", "INV-0001", "INV-0003", "INV-0005", "INV-0004", "draft"]),
    ("due", "desc", ["INV-0004", "INV-0005", "INV-0003", "INV-0001", "INV-0002", "draft"]),
])
def test_sorting(book, staff_client, sort, direction, expected):
    page = staff_client.get(f"/staff/invoices?sort={sort}&dir={direction}")
    draft = f"Draft #{book['draft'].id}"
    assert listed(page) == [draft if n == "draft" else n for n in expected]
    header = re.search(r'<th scope="col"[^>]*aria-sort="(\w+)">\s*<a href="([^"]+)"[^>]*>[^<]*'
                       + {"total": "Total", "amount_due": "Amount due", "number": "Number", "issued": "Issued",
                          "due": "Due", "client": "Client"}[sort], text_of(page))
    assert header.group(1) == ("ascending" if direction == "asc" else "descending")
    # The header's link flips the order.
    flipped = "desc" if direction == "asc" else "asc"
    assert f"dir={flipped}" in html.unescape(header.group(2))


def test_sorting_by_client_name_ignores_case(book, make, staff_client):
    aardvark = make.client(name="aardvark & co", contacts=[
        {"name": "A", "email": "a@aardvark.example", "receives_invoices": True}])
    build(aardvark, [("Tiny", "1", "1")], "2026-02-26")
    ascending = listed(staff_client.get("/staff/invoices?sort=client&dir=asc"))
    assert ascending[0] == "INV-0006"
    assert ascending[1:4] == ["INV-0001", "INV-0002", "INV-0003"]
    descending = listed(staff_client.get("/staff/invoices?sort=client&dir=desc"))
    assert descending[-1] == "INV-0006"
    assert descending[:3] == [f"Draft #{book['draft'].id}", "INV-0005", "INV-0004"]


def test_pages_keep_the_filters_and_sort(book, staff_client):
    first = staff_client.get("/staff/invoices?sort=number&dir=asc&per_page=2&q=inv")
    assert listed(first) == ["INV-0001", "INV-0002"]
    assert "Page 1 of 3" in visible(first)
    nxt = html.unescape(re.search(r'<a href="([^"]+)"[^>]*rel="next"', text_of(first)).group(1))
    second = staff_client.get(nxt)
    assert listed(second) == ["INV-0003", "INV-0004"]
    assert "Page 2 of 3" in visible(second)
    last = staff_client.get("/staff/invoices?sort=number&dir=asc&per_page=2&q=inv&page=3")
    assert listed(last) == ["INV-0005"]
    assert 'rel="next"' not in text_of(last)
    # Past the end shows the last page rather than nothing.
    assert listed(staff_client.get("/staff/invoices?sort=number&dir=asc&per_page=2&q=inv&page=99")) == ["INV-0005"]


def test_htmx_filtering_answers_with_just_the_rows_block(book, staff_client):
    full = text_of(staff_client.get("/staff/invoices?status=paid"))
    block = staff_client.get("/staff/invoices?status=paid", headers={"HX-Request": "true"})
    body = text_of(block)
    assert block.status_code == 200
    assert body.lstrip().startswith('<div id="invoice-rows">')
    assert "<html" not in body and 'id="invoice-filters"' not in body and "status-total" not in body
    assert listed(block) == ["INV-0003"]
    assert body.strip() in full  # the same block the full page shows
    assert "HX-Request" in block.headers.get("Vary", "")
    # The rows block carries the sort for the filter form, and sort links swap only the block.
    assert '<input type="hidden" name="sort" value="created" form="invoice-filters">' in body
    assert 'hx-target="#invoice-rows"' in body


def test_bad_filter_values_are_named_and_ignored(book, staff_client):
    page = staff_client.get("/staff/invoices?from=yesterday&status=bogus&page=x&sort=evil;drop")
    assert page.status_code == 200
    assert "Use a date like 2026-12-31." in visible(page)
    assert 'aria-invalid="true" aria-describedby="filter-from-error"' in text_of(page)
    assert len(listed(page)) == 6


def test_the_list_loads_each_client_with_its_invoice_no_query_per_row(now, business, make, staff_client):
    """The same number of queries for 3 rows as for 25 rows from 25 different clients."""
    def queries_for_list() -> int:
        statements: list[str] = []

        def count(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            page = staff_client.get("/staff/invoices")
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        assert page.status_code == 200
        return len(statements), page

    for i in range(3):
        build(make.client(name=f"Client {i:02d}", contacts=[
            {"name": "C", "email": f"c{i}@clients.example", "receives_invoices": True}]), [("Work", "1", "10")])
    few, page = queries_for_list()
    assert len(listed(page)) == 3
    for i in range(3, 30):
        build(make.client(name=f"Client {i:02d}", contacts=[
            {"name": "C", "email": f"c{i}@clients.example", "receives_invoices": True}]), [("Work", "1", "10")])
    many, page = queries_for_list()
    assert len(listed(page)) == 25
    assert "Client 29" in visible(page) and "Client 05" in visible(page)
    assert many == few


# Invoice items ----------------------------------------------------------------------------------

def items(response) -> list[tuple[str, str, str]]:
    """(invoice, client, description) per row of the items list."""
    rows = re.findall(r'<tr id="item-\d+">(.*?)</tr>', text_of(response), re.S)
    out = []
    for row in rows:
        cells = [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split())
                 for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        out.append((cells[0], cells[1], cells[3]))
    return out


def test_the_items_list_shows_every_line_with_its_invoice_and_client(book, staff_client):
    two_lines = build(book["acme"], [("Logo design", "1", "300"), ("Brand book", "1", "120")], "2026-02-25")
    page = staff_client.get("/staff/invoices/items")
    assert page.status_code == 200
    rows = items(page)
    assert rows[:2] == [(f"INV-0006 Sent", "Acme Ltd", "Logo design"), ("INV-0006 Sent", "Acme Ltd", "Brand book")]
    assert len(rows) == 8
    assert "8 lines" in visible(page)
    assert two_lines.number == "INV-0006"

    assert items(staff_client.get("/staff/invoices/items?q=brand")) == [("INV-0006 Sent", "Acme Ltd", "Brand book")]
    assert [r[2] for r in items(staff_client.get("/staff/invoices/items?q=borealis"))] == [
        "Sketches", "Print run", "Workshop"]
    assert [r[2] for r in items(staff_client.get("/staff/invoices/items?status=paid"))] == ["Hosting"]
    paged = staff_client.get("/staff/invoices/items?per_page=3&page=3")
    assert len(items(paged)) == 2 and "Page 3 of 3" in visible(paged)
    block = text_of(staff_client.get("/staff/invoices/items?q=brand", headers={"HX-Request": "true"}))
    assert block.lstrip().startswith('<div id="item-rows">') and "<html" not in block


# CSV ------------------------------------------------------------------------------------------------

def read_csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text_of(response))))


def test_the_invoice_csv_streams_the_filtered_list_in_major_units(book, staff_client):
    response = staff_client.get("/staff/invoices.csv?status=open&sort=number&dir=asc")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.is_streamed
    assert response.headers["Content-Disposition"] == "attachment; filename=invoices.csv"
    rows = read_csv(response)
    assert [(r["number"], r["client"], r["status"], r["total"], r["amount_due"], r["currency"]) for r in rows] == [
        ("INV-0002", "Acme Ltd", "Sent", "100.00", "100.00", "EUR"),
        ("INV-0004", "Borealis GmbH", "Sent", "75.50", "75.50", "EUR"),
    ]
    assert rows[0]["issue_date"] == "2026-01-05" and rows[0]["due_date"] == "2026-01-19"
    everything = read_csv(staff_client.get("/staff/invoices.csv"))
    assert len(everything) == 6
    paid = next(r for r in everything if r["number"] == "INV-0003")
    assert (paid["amount_paid"], paid["amount_due"], paid["status"]) == ("40.00", "0.00", "Paid")
    # The list page links to the export with the same filters.
    page = text_of(staff_client.get("/staff/invoices?status=open&q=acme"))
    assert html.unescape(re.search(r'<a href="([^"]+)" download>Export CSV', page).group(1)) == \
        "/staff/invoices.csv?q=acme&status=open"


def test_the_items_csv_has_every_line_with_tax_and_currency(now, business, make, vat, staff_client):
    acme = make.client(name="Acme Ltd")
    build(acme, [("Design, hours", "2.5", "80.00"), ("Hosting", "1", "19.99")], "2026-02-01", tax=str(vat.id))
    yen = build(acme, [("Consulting", "3", "1000")], currency="JPY")
    response = staff_client.get("/staff/invoices/items.csv")
    assert response.is_streamed
    assert response.headers["Content-Disposition"] == "attachment; filename=invoice-items.csv"
    rows = read_csv(response)
    assert [(r["invoice"], r["line"], r["description"], r["quantity"], r["unit_price"], r["net"], r["tax_name"],
             r["tax_percent"], r["tax"], r["total"], r["currency"]) for r in rows] == [
        (f"Draft #{yen.id}", "1", "Consulting", "3", "1000", "3000", "", "", "0", "3000", "JPY"),
        ("INV-0001", "1", "Design, hours", "2.5", "80.00", "200.00", "VAT", "23", "46.00", "246.00", "EUR"),
        ("INV-0001", "2", "Hosting", "1", "19.99", "19.99", "VAT", "23", "4.60", "24.59", "EUR"),
    ]
    only = read_csv(staff_client.get("/staff/invoices/items.csv?q=hosting"))
    assert [r["description"] for r in only] == ["Hosting"]


def test_csv_cells_never_start_a_spreadsheet_formula(now, business, make, staff_client):
    evil = make.client(name='=HYPERLINK("http://evil.example","click")')
    build(evil, [("+SUM(A1:A9)", "1", "5.00"), ("@cmd", "1", "1.00"), ("-2+3", "1", "1.00")])
    rows = read_csv(staff_client.get("/staff/invoices.csv"))
    assert rows[0]["client"] == '\'=HYPERLINK("http://evil.example","click")'
    lines = read_csv(staff_client.get("/staff/invoices/items.csv"))
    assert [r["description"] for r in lines] == ["'+SUM(A1:A9)", "'@cmd", "'-2+3"]


def test_a_large_export_streams_every_row_in_batches(now, business, make, staff_client):
    acme = make.client(name="Acme Ltd")
    client_id = acme.id
    rows = [Invoice(client_id=client_id, status="open", currency="EUR", number=f"BULK-{i:05d}", sequence_number=i,
                    issue_date=at("2026-02-01").date(), due_date=at("2026-02-15").date(), subtotal=1000 + i,
                    total=1000 + i, amount_due=1000 + i) for i in range(1, 2501)]
    db.session.add_all(rows)
    db.session.commit()
    exported = read_csv(staff_client.get("/staff/invoices.csv?sort=number&dir=asc"))
    assert len(exported) == 2500
    assert exported[0]["number"] == "BULK-00001" and exported[0]["total"] == "10.01"
    assert exported[-1]["number"] == "BULK-02500" and exported[-1]["total"] == "35.00"
    assert len(read_csv(staff_client.get("/staff/invoices.csv?q=bulk-0249"))) == 10


def test_lists_and_exports_need_a_staff_login(book, client):
    for url in ("/staff/invoices", "/staff/invoices/items", "/staff/invoices.csv", "/staff/invoices/items.csv",
                f"/staff/invoices/{book['sent'].id}", f"/staff/invoices/{book['sent'].id}/pdf"):
        response = client.get(url)
        assert response.status_code == 302 and "/staff/login" in response.headers["Location"], url


# The invoice page and its actions ------------------------------------------------------------------

@pytest.fixture
def acme(business, make):
    return make.client(name="Acme Ltd")


@pytest.fixture
def draft(acme, vat):
    return build(acme, [("Design, hours", "10", "120.00"), ("Hosting", "1", "500")], tax=str(vat.id))


def post(staff_client, url, data=None):
    """Post as the page's form does and follow to the page it lands on."""
    return post_form(staff_client, url, data or {}, follow_redirects=True)


def reload(invoice_id: int) -> Invoice:
    with fresh() as s:
        found = s.get(Invoice, invoice_id)
        if found is not None:
            s.expunge(found)
        return found


def test_finalize_gives_a_number_and_locks_the_invoice(draft, staff_client):
    page = post(staff_client, f"/staff/invoices/{draft.id}/finalize")
    number = reload(draft.id).number
    assert number and re.fullmatch(r"INV-\d{4}", number)
    assert f"Invoice {number} finalized and locked." in flashes(page)
    assert 'id="invoice-editor"' not in text_of(page)
    assert f"Invoice {number}" in visible(page) and "Sent" in visible(page)
    assert "Invoice finalized as " + number in visible(page)  # the timeline
    # Saving over it is refused and changes nothing.
    refused = post(staff_client, f"/staff/invoices/{draft.id}", {
        "currency": "EUR", "lines-0-description": "Sneaky", "lines-0-quantity": "1", "lines-0-unit_price": "1"})
    assert "can no longer be edited" in flashes(refused)
    after = reload(draft.id)
    assert after.total == 209100 and after.number == number
    assert post(staff_client, f"/staff/invoices/{draft.id}/finalize").status_code == 200
    assert reload(draft.id).number == number


@pytest.mark.parametrize("notify", [True, False])
def test_finalize_emails_contacts_only_with_the_invoice_ready_notification_on(
        acme, make, staff_client, run_worker, smtp_server, notify):
    make.business(notify_invoice_ready=notify)
    invoice_id = build(acme, [("Work", "1", "10")]).id
    page = post(staff_client, f"/staff/invoices/{invoice_id}/finalize")
    assert "Invoice INV-0001 finalized and locked." in flashes(page)
    run_worker()
    if notify:
        assert "Emailed to ana@acme.example (the “invoice ready” notification is on)." in flashes(page)
        assert len(smtp_server.to("ana@acme.example")) == 1
    else:
        assert "Emailed" not in flashes(page)
        assert smtp_server.messages == []
    assert reload(invoice_id).status == "open"


def test_send_emails_the_pdf_and_pay_link_and_the_page_says_sent(draft, staff_client, run_worker, smtp_server):
    invoice_id = draft.id  # the worker ends the test's session: keep plain values
    page = post(staff_client, f"/staff/invoices/{invoice_id}/send")
    invoice = reload(invoice_id)
    assert f"Invoice {invoice.number} sent to ana@acme.example." in flashes(page)
    assert invoice.status == "open"
    assert run_worker() >= 1
    [message] = smtp_server.to("ana@acme.example")
    assert message["Subject"] == "Tidewater Studio sent you an invoice"
    attachments = [part for part in message.walk() if part.get_content_type() == "application/pdf"]
    assert len(attachments) == 1
    assert attachments[0].get_filename() == f"{invoice.number}.pdf"
    assert attachments[0].get_payload(decode=True).startswith(b"%PDF")
    pay = [link for link in links(email_text(message)) if "/pay/" in link]
    assert pay, "no pay link in the email"
    guest = staff_client.get(pay[0].replace("http://portal.test", ""))
    assert guest.status_code == 200 and "€2,091.00" in visible(guest)
    shown = visible(staff_client.get(f"/staff/invoices/{invoice_id}"))
    assert "Sent" in shown and "Invoice sent to ana@acme.example" in shown

    again = post(staff_client, f"/staff/invoices/{invoice_id}/resend")
    assert f"Invoice {invoice.number} sent again to ana@acme.example." in flashes(again)
    run_worker()
    assert len(smtp_server.to("ana@acme.example")) == 2
    assert "Invoice resent to ana@acme.example" in visible(again)


def test_send_without_a_billing_contact_says_what_to_do_and_keeps_the_draft(business, make, vat, staff_client):
    quiet = make.client(name="Quiet Ltd", contacts=[
        {"name": "Q", "email": "q@quiet.example", "receives_invoices": False}])
    invoice = build(quiet, [("Work", "1", "10")])
    page = post(staff_client, f"/staff/invoices/{invoice.id}/send")
    assert "no contact who receives invoices" in flashes(page)
    assert reload(invoice.id).status == "draft"
    assert 'id="invoice-editor"' in text_of(page)


def test_void_with_a_reason(draft, staff_client):
    invoices.finalize(draft, STAFF)
    page = post(staff_client, f"/staff/invoices/{draft.id}/void", {"reason": "Wrong client"})
    assert f"Invoice {draft.number} voided (cancelled). Nothing is due on it." in flashes(page)
    assert reload(draft.id).status == "void"
    shown = visible(page)
    assert "This invoice was cancelled: Wrong client." in shown
    assert "Invoice voided “Wrong client”" in shown
    # Nothing else may happen to it but a replacement.
    body = text_of(page)
    assert "Record a payment" not in body and "Void (cancel) this invoice" not in body and ">Resend<" not in body
    assert "Mark as paid" not in body
    assert "Issue a replacement" in body
    refused = post(staff_client, f"/staff/invoices/{draft.id}/void")
    assert "can't be voided" in flashes(refused)


def test_replace_copies_the_invoice_into_a_new_draft(draft, staff_client):
    invoices.finalize(draft, STAFF)
    invoices.void(draft, STAFF, "")
    response = post_form(staff_client, f"/staff/invoices/{draft.id}/replace", {})
    assert response.status_code == 303
    new_id = int(response.headers["Location"].rsplit("/", 1)[1])
    assert new_id != draft.id
    page = staff_client.get(response.headers["Location"])
    assert 'id="invoice-editor"' in text_of(page)
    assert 'value="Design, hours"' in text_of(page) and 'value="Hosting"' in text_of(page)
    replacement = reload(new_id)
    assert replacement.status == "draft" and replacement.replaces_invoice_id == draft.id
    assert replacement.total == draft.total
    assert f"Replacement draft for {draft.number} created." in flashes(page)
    original = visible(staff_client.get(f"/staff/invoices/{draft.id}"))
    assert f"replacement draft #{new_id}" in original


def test_manual_payments_partial_then_paid_and_bad_amount_refused(draft, staff_client):
    invoices.finalize(draft, STAFF)
    url = f"/staff/invoices/{draft.id}/payments"

    too_much = post_form(staff_client, url, {"amount": "9999999999999.00", "method": "check", "received_on": "",
                                              "reference": "CHQ 12"})
    assert too_much.status_code == 422
    body = text_of(too_much)
    assert "That amount is too large." in body
    assert 'id="amount" name="amount" type="text" value="9999999999999.00"' in body  # what was typed stays
    assert 'value="CHQ 12"' in body and '<option value="check" selected>' in body
    assert 'aria-invalid="true" aria-describedby="amount-error"' in body
    assert reload(draft.id).amount_paid == 0

    partial = post(staff_client, url, {"amount": "1000.00", "method": "wire", "received_on": "", "reference": "T1"})
    assert "Payment recorded." in flashes(partial)
    invoice = reload(draft.id)
    assert (invoice.status, invoice.amount_paid, invoice.amount_due) == ("open", 100000, 109100)
    assert "€1,091.00" in visible(partial) and "Bank transfer" in visible(partial)

    bad = post_form(staff_client, url, {"amount": "abc", "method": "barter", "received_on": "someday"})
    assert bad.status_code == 422
    assert {"Use an amount like 120.00.", "Choose how it was paid.", "Use a date like 2026-12-31."} <= set(
        re.findall(r'class="field-error">([^<]+)<', text_of(bad)))

    rest = post(staff_client, url, {"amount": "1091.00", "method": "cash", "received_on": "", "reference": ""})
    assert "Payment recorded; the invoice is paid." in flashes(rest)
    assert reload(draft.id).status == "paid"
    assert "Record a payment" not in text_of(rest)
    with fresh() as s:
        assert s.scalar(select(func.count()).select_from(Payment)) == 2


def test_delete_draft_returns_its_charges_to_open(acme, vat, staff_client):
    charges = [Charge(client_id=acme.id, description=f"Call {i}", quantity=Decimal(1), unit_price=5000,
                      currency="EUR", status="open") for i in range(3)]
    db.session.add_all(charges)
    db.session.commit()
    ids = [c.id for c in charges]
    made = post_form(staff_client, f"/staff/clients/{acme.id}/invoices/draft-from-charges",
                     {"charge_ids": [str(ids[0]), str(ids[2])]})
    assert made.status_code == 303
    draft_id = int(made.headers["Location"].rsplit("/", 1)[1])
    editor = text_of(staff_client.get(made.headers["Location"]))
    assert 'value="Call 0"' in editor and 'value="Call 2"' in editor and 'value="Call 1"' not in editor
    with fresh() as s:
        assert [s.get(Charge, i).status for i in ids] == ["drafted", "open", "drafted"]

    page = post(staff_client, f"/staff/invoices/{draft_id}/delete")
    assert "Draft deleted. Its charges are open again." in flashes(page)
    assert reload(draft_id) is None
    with fresh() as s:
        assert [s.get(Charge, i).status for i in ids] == ["open", "open", "open"]

    everything = post_form(staff_client, f"/staff/clients/{acme.id}/invoices/draft-from-charges", {"all": "1"})
    assert everything.status_code == 303
    with fresh() as s:
        assert [s.get(Charge, i).status for i in ids] == ["drafted", "drafted", "drafted"]
    nothing = post(staff_client, f"/staff/clients/{acme.id}/invoices/draft-from-charges", {"all": "1"})
    assert "There are no open charges to invoice." in flashes(nothing)


def test_only_drafts_can_be_deleted(draft, staff_client):
    invoices.finalize(draft, STAFF)
    page = post(staff_client, f"/staff/invoices/{draft.id}/delete")
    assert "Only drafts can be deleted." in flashes(page)
    assert reload(draft.id) is not None


def test_revoking_links_closes_the_guest_page(draft, staff_client, run_worker, smtp_server):
    invoice_id = draft.id
    post(staff_client, f"/staff/invoices/{invoice_id}/send")
    run_worker()
    [message] = smtp_server.to("ana@acme.example")
    pay = next(link for link in links(email_text(message)) if "/pay/" in link).replace("http://portal.test", "")
    assert staff_client.get(pay).status_code == 200
    page = post(staff_client, f"/staff/invoices/{invoice_id}/revoke-links")
    assert "1 payment link revoked." in flashes(page)
    assert staff_client.get(pay).status_code == 404
    assert "Invoice links revoked 1 link" in visible(page)
    again = post(staff_client, f"/staff/invoices/{invoice_id}/revoke-links")
    assert "No live links to revoke." in flashes(again)


def test_actions_need_csrf_and_post(draft, staff_client):
    assert staff_client.get(f"/staff/invoices/{draft.id}/finalize").status_code == 405
    refused = staff_client.post(f"/staff/invoices/{draft.id}/finalize")
    assert refused.status_code == 400
    assert reload(draft.id).status == "draft"
    assert staff_client.post(f"/staff/invoices/{draft.id}/delete").status_code == 400
    assert reload(draft.id) is not None


def test_unknown_invoices_are_404(business, staff_client):
    assert staff_client.get("/staff/invoices/999").status_code == 404
    assert post_form(staff_client, "/staff/invoices/999/send", {}).status_code == 404
    assert post_form(staff_client, "/staff/clients/999/invoices/draft-from-charges", {"all": "1"}).status_code == 404


def test_the_timeline_lists_events_newest_first(draft, staff_client):
    invoices.finalize(draft, STAFF)
    invoices.record_manual_payment(draft, "78.70", "check", "", "", STAFF)
    page = text_of(staff_client.get(f"/staff/invoices/{draft.id}"))
    timeline = re.search(r'<ul class="timeline invoice-timeline">(.*?)</ul>', page, re.S).group(1)
    entries = [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", li)).split())
               for li in re.findall(r"<li>(.*?)</li>", timeline, re.S)]
    assert "Invoice payment recorded €78.70 by Check by staff@portal.example" in entries[0]
    assert f"Invoice finalized as {draft.number}" in entries[1]
    assert "Invoice created" in entries[-1]
    with fresh() as s:
        count = s.scalar(select(func.count()).select_from(Event).where(
            Event.subject_type == "invoice", Event.subject_id == draft.id))
    assert len(entries) == count


# The PDF ------------------------------------------------------------------------------------------------

def test_the_pdf_downloads_with_its_number_and_a_draft_says_draft(draft, staff_client):
    response = staff_client.get(f"/staff/invoices/{draft.id}/pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == f"attachment; filename=draft-{draft.id}.pdf"
    text = PdfReader(io.BytesIO(response.data)).pages[0].extract_text()
    assert "DRAFT" in text and "Design, hours" in text

    invoices.finalize(draft, STAFF)
    final = staff_client.get(f"/staff/invoices/{draft.id}/pdf")
    assert final.headers["Content-Disposition"] == f"attachment; filename={draft.number}.pdf"
    text = PdfReader(io.BytesIO(final.data)).pages[0].extract_text()
    assert "DRAFT" not in text and draft.number in text and "2,091.00" in text


# Escaping -------------------------------------------------------------------------------------------------

XSS = {
    "client": '<script>alert("client")</script>',
    "description": '"><img src=x onerror=alert("line")>',
    "memo": "<iframe src=javascript:alert('memo')></iframe>",
    "footer": "</textarea><script>alert('footer')</script>",
}


def assert_escaped(body: str, where: str, fields=XSS):
    """Each payload appears only HTML-escaped (as Jinja escapes), never as markup."""
    for name, payload in fields.items():
        assert payload not in body, f"{where}: the {name} came out raw"
        assert str(escape(payload)) in body, f"{where}: the {name} is not shown escaped"
    assert "<script>alert" not in body and "<iframe" not in body and "<img src=x" not in body


def test_payloads_are_escaped_on_the_staff_pages(business, make, vat, staff_client):
    evil = make.client(name=XSS["client"])
    invoice = build(evil, [(XSS["description"], "1", "10")], memo=XSS["memo"], footer=XSS["footer"])
    editor = text_of(staff_client.get(f"/staff/invoices/{invoice.id}"))
    assert_escaped(editor, "editor")
    invoices.finalize(invoice, STAFF)
    assert_escaped(text_of(staff_client.get(f"/staff/invoices/{invoice.id}")), "invoice page")
    listing = text_of(staff_client.get("/staff/invoices"))
    assert_escaped(listing, "list", {"client": XSS["client"]})
    item_rows = text_of(staff_client.get("/staff/invoices/items"))
    assert_escaped(item_rows, "items", {"client": XSS["client"], "description": XSS["description"]})
    picker = text_of(staff_client.get("/staff/invoices/new"))
    assert_escaped(picker, "client picker", {"client": XSS["client"]})

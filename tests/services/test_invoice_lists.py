"""Reading invoices in bulk (portal/services/invoice_lists.py), at the service level: filters read
leniently from the query string, search, paging (clamped, whatever page is asked for), ordering, the
fixed number of statements per page, the CSV exports (streamed in batches, cells a spreadsheet would
run as formulas defused), and one invoice's timeline and payments."""
from __future__ import annotations

import csv
import io
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, select

from portal import clock
from portal.billing.states import LABELS
from portal.extensions import db
from portal.models import Event, Invoice
from portal.services import invoice_lists, payments
from portal.services.events import Actor
from portal.services.invoice_lists import InvoiceFilters, invoice_timeline, list_invoices, list_items
from portal.services.payments import invoice_payments
from tests.support import make

DAY = timedelta(days=1)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
CONTACT = Actor("contact", None, "ana@acme.example")


def on(day: int) -> datetime:
    """9:00 UTC on 2026-11-<day>."""
    return T0 + (day - 2) * DAY


def filters(**args) -> InvoiceFilters:
    return InvoiceFilters.from_args({key: str(value) for key, value in args.items()})


def ids(page) -> list[int]:
    return [inv.id for inv in page.items]


@contextmanager
def statements():
    """The SQL statements run inside the block."""
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def parsed(chunks) -> list[list[str]]:
    return list(csv.reader(io.StringIO("".join(chunks))))


@pytest.fixture
def book(app):
    """Seven invoices of three clients, each made on its own day (so created/issued order is known):

    day 2  Acme     INV-0001  €100.00  open, due day 30
    day 3  bravo    INV-0002  €250.00  paid
    day 4  Acme     INV-0003  €80.00   open, due day 5 (past due, not yet marked overdue)
    day 5  Zulu     INV-0004  €40.00   void
    day 6  bravo    INV-0005  €120.00  uncollectible
    day 7  Acme     draft     €60.00
    day 8  Zulu     draft     €100.00
    """
    make.business(name="Tidewater Studio", currency="EUR", timezone="UTC", invoice_number_format="INV-{seq:04d}")
    acme = make.client("Acme Ltd")
    bravo = make.client("bravo & Co", contacts=[{"name": "Bo", "email": "bo@bravo.example"}])
    zulu = make.client("Zulu 100% Ltd", contacts=[{"name": "Zed", "email": "zed@zulu.example"}])
    plan = [(acme, "100.00", "open", 30, "Design work"), (bravo, "250.00", "paid", 30, "Hosting"),
            (acme, "80.00", "open", 5, "Printing"), (zulu, "40.00", "void", 30, "Photos"),
            (bravo, "120.00", "uncollectible", 30, "Support"), (acme, "60.00", "draft", 30, "Brand_book"),
            (zulu, "100.00", "draft", 30, "Fonts")]
    made = []
    for day, (client_row, amount, status, due_day, description) in enumerate(plan, start=2):
        with clock.frozen(on(day)):
            made.append(make.invoice(client_row, amount, status=status, description=description,
                                     due=date(2026, 11, due_day)).id)
    return {"acme": acme.id, "bravo": bravo.id, "zulu": zulu.id, "ids": made}


# Reading the query string ----------------------------------------------------------------------------

def test_no_arguments_mean_everything_newest_first(app):
    f = InvoiceFilters.from_args({})
    assert (f.status, f.client_id, f.date_from, f.date_to, f.overdue, f.q) == ("", None, None, None, False, "")
    assert (f.sort, f.direction, f.page, f.per_page, f.errors, f.any) == ("created", "desc", 1, 25, {}, False)
    assert f.args() == {}


@pytest.mark.parametrize("text,page", [
    ("2", 2), (" 7 ", 7), ("0", 1), ("-3", 1), ("abc", 1), ("1e9", 1), ("2.5", 1), ("", 1), ("0x10", 1),
    ("1000000", 1_000_000), ("1000001", 1_000_000), ("9" * 18, 1_000_000), ("9" * 19, 1), ("9" * 4000, 1),
])
def test_page_numbers_are_read_leniently_and_bounded(app, text, page):
    f = InvoiceFilters.from_args({"page": text})
    assert f.page == page and f.errors == {}


@pytest.mark.parametrize("text,per_page", [("10", 10), ("100", 100), ("101", 100), ("1000000", 100), ("0", 25),
                                           ("-5", 25), ("ten", 25)])
def test_page_size_is_capped(app, text, per_page):
    assert InvoiceFilters.from_args({"per_page": text}).per_page == per_page


@pytest.mark.parametrize("key", ["page", "per_page", "client_id"])
@pytest.mark.parametrize("text", ["²", "٣", "１", "9" * 5000, "1" * 19, "0x1f", "+3", "3 4", "\x00"])
def test_what_is_not_plain_ascii_digits_is_left_out_not_a_crash(app, key, text):
    """str.isdigit() says yes to "²" (which int() refuses) and to other scripts' digits; a number past
    18 digits fits no integer column (and past 4,300, int() refuses it too)."""
    f = InvoiceFilters.from_args({key: text})
    assert (f.page, f.per_page, f.client_id) == (1, 25, None)


def test_bad_values_are_reported_and_left_out(app):
    f = InvoiceFilters.from_args({"status": "<script>alert(1)</script>", "from": "2026-02-30", "to": "yesterday",
                                  "client_id": "-1", "sort": "id; DROP TABLE invoice", "dir": "sideways"})
    assert f.errors == {"status": "Choose a status from the list.", "from": "Use a date like 2026-12-31.",
                        "to": "Use a date like 2026-12-31."}
    assert (f.status, f.date_from, f.date_to, f.client_id, f.sort, f.direction) == ("", None, None, None,
                                                                                     "created", "desc")


def test_search_text_is_trimmed_and_cut_to_200_characters(app):
    assert InvoiceFilters.from_args({"q": "  acme  "}).q == "acme"
    assert InvoiceFilters.from_args({"q": "x" * 5000}).q == "x" * 200


def test_args_reproduce_the_filters_and_sort_links_flip_direction(app):
    f = InvoiceFilters.from_args({"status": "open", "client_id": "7", "from": "2026-11-01", "to": "2026-11-30",
                                  "overdue": "on", "q": "acme", "sort": "total", "dir": "asc", "page": "3",
                                  "per_page": "50"})
    again = InvoiceFilters.from_args({k: str(v) for k, v in f.args().items()})
    assert again == f and f.any
    assert f.args(page=None, q="") == {k: v for k, v in f.args().items() if k not in ("page", "q")}
    assert f.sort_args("total") == {**f.args(page=None), "sort": "total", "dir": "desc"}
    assert f.sort_args("due")["dir"] == "asc" and "page" not in f.sort_args("due")


# Filters and search ------------------------------------------------------------------------------------

def test_each_filter_narrows_the_list(book):
    acme, bravo, zulu = book["acme"], book["bravo"], book["zulu"]
    one, two, three, four, five, six, seven = book["ids"]
    assert ids(list_invoices(filters())) == [seven, six, five, four, three, two, one]
    assert ids(list_invoices(filters(status="open"))) == [three, one]
    assert ids(list_invoices(filters(status="draft"))) == [seven, six]
    assert ids(list_invoices(filters(client_id=acme))) == [six, three, one]
    assert ids(list_invoices(filters(client_id=bravo, status="paid"))) == [two]
    assert ids(list_invoices(filters(client_id=zulu, status="paid"))) == []
    # Issue dates, both ends included (drafts have none).
    assert ids(list_invoices(filters(**{"from": "2026-11-03", "to": "2026-11-05"}))) == [four, three, two]
    with clock.frozen(on(10)):
        assert ids(list_invoices(filters(overdue="1"))) == [three]  # open and past due


def test_another_or_unknown_client_id_shows_nothing_else(book):
    page = list_invoices(filters(client_id=987654))
    assert (page.items, page.total, page.page, page.pages) == ([], 0, 1, 1)


def test_overdue_includes_invoices_the_tick_marked(book):
    from portal.services import invoices

    with clock.frozen(on(10)):
        invoices.mark_overdue(on(10))
        found = list_invoices(filters(overdue="y"))
    assert ids(found) == [book["ids"][2]] and found.items[0].status == "overdue"


@pytest.mark.parametrize("q,expected", [
    ("acme", [6, 3, 1]), ("ACME", [6, 3, 1]), ("INV-0002", [2]), ("inv-000", [5, 4, 3, 2, 1]),
    ("& co", [5, 2]), ("100%", [7, 4]), ("%", [7, 4]), ("_", []), ("Design", []), ("'; --", []),
    ("<b>acme</b>", []),
])
def test_search_matches_numbers_and_client_names_with_wildcards_taken_literally(book, q, expected):
    by_day = {n: invoice_id for n, invoice_id in enumerate(book["ids"], start=1)}
    assert ids(list_invoices(filters(q=q))) == [by_day[n] for n in expected]


def test_markup_in_a_client_name_is_searched_as_text(book):
    odd = make.client('<b onmouseover="x()">Bold</b>', contacts=[{"name": "B", "email": "b@bold.example"}])
    mine = make.invoice(odd).id
    assert ids(list_invoices(filters(q="<b onmouse"))) == [mine]
    assert ids(list_invoices(filters(q='"x()"'))) == [mine]


# Paging --------------------------------------------------------------------------------------------

def test_pages_split_the_list_and_say_where_they_are(book):
    newest_first = list(reversed(book["ids"]))
    first, second, last = (list_invoices(filters(per_page=3, page=n)) for n in (1, 2, 3))
    assert (ids(first), ids(second), ids(last)) == (newest_first[:3], newest_first[3:6], newest_first[6:])
    assert (first.total, first.pages, first.has_prev, first.has_next, first.next_num) == (7, 3, False, True, 2)
    assert (last.page, last.has_prev, last.has_next, last.prev_num) == (3, True, False, 2)


@pytest.mark.parametrize("page", ["4", "99", "1000000", "99999999999"])
def test_a_page_past_the_end_shows_the_last_page(book, page):
    shown = list_invoices(filters(per_page=3, page=page))
    assert shown.page == 3 and ids(shown) == [book["ids"][0]]
    items = list_items(filters(per_page=3, page=page))
    assert items.page == 3 and len(items.items) == 1


@pytest.mark.parametrize("page", ["0", "-1", "-1000000"])
def test_a_page_before_the_start_shows_the_first(book, page):
    assert list_invoices(filters(per_page=3, page=page)).page == 1


def test_nothing_found_is_one_empty_page(book):
    page = list_invoices(filters(q="no such thing"))
    assert (page.items, page.total, page.page, page.pages, page.has_prev, page.has_next) == ([], 0, 1, 1, False, False)


# Ordering ----------------------------------------------------------------------------------------

def test_sorting_by_number_keeps_drafts_last_both_ways(book):
    one, two, three, four, five, six, seven = book["ids"]
    assert ids(list_invoices(filters(sort="number", dir="asc"))) == [one, two, three, four, five, six, seven]
    assert ids(list_invoices(filters(sort="number"))) == [five, four, three, two, one, seven, six]
    assert ids(list_invoices(filters(sort="issued", dir="asc")))[-2:] == [six, seven]
    assert ids(list_invoices(filters(sort="issued")))[-2:] == [seven, six]


def test_sorting_by_client_ignores_case_and_ties_go_by_id(book):
    one, two, three, four, five, six, seven = book["ids"]
    assert ids(list_invoices(filters(sort="client", dir="asc"))) == [one, three, six, two, five, four, seven]
    assert ids(list_invoices(filters(sort="client"))) == [seven, four, five, two, six, three, one]


def test_sorting_by_amounts_and_due_date(book):
    one, two, three, four, five, six, seven = book["ids"]
    assert ids(list_invoices(filters(sort="total", dir="asc"))) == [four, six, three, one, seven, five, two]
    rows = db.session.execute(select(Invoice.id, Invoice.amount_due)).all()
    by_due = [i for i, _ in sorted(rows, key=lambda row: (row[1], row[0]))]
    assert ids(list_invoices(filters(sort="amount_due", dir="asc"))) == by_due
    assert ids(list_invoices(filters(sort="amount_due")))[-1] == two  # paid: nothing due, lowest id of those
    assert ids(list_invoices(filters(sort="due", dir="asc")))[0] == three


def test_a_page_is_three_statements_however_many_rows_and_clients(book):
    for n in range(12):
        make.invoice(make.client(f"Client {n}", contacts=[{"name": "C", "email": f"c{n}@example.com"}]))
    db.session.expire_all()
    with statements() as small:
        page = list_invoices(filters(per_page=3))
        [inv.client.name for inv in page.items]
    with statements() as large:
        page = list_invoices(filters(per_page=25, sort="client", q="client"))
        names = [inv.client.name for inv in page.items]
    assert len(names) == 12 and len(small) == len(large) == 3
    with statements() as empty:
        list_invoices(filters(q="nobody at all"))
    assert len(empty) == 2  # no rows to load
    with statements() as lines:
        items = list_items(filters(per_page=25))
        [(row["line"].description, row["invoice"].id, row["client_name"]) for row in items.items]
    assert len(lines) == 3


# Invoice lines --------------------------------------------------------------------------------------

def test_items_list_lines_newest_invoice_first_in_line_order(book):
    acme = make.client("Lines Ltd", contacts=[{"name": "L", "email": "l@lines.example"}])
    invoice = make.invoice(acme, lines=[("First", "10.00"), ("Second", "20.00"), ("Third", "30.00")])
    page = list_items(filters(per_page=5))
    assert [row["line"].description for row in page.items][:4] == ["First", "Second", "Third", "Fonts"]
    assert page.items[0]["invoice"].id == invoice.id and page.items[0]["client_name"] == "Lines Ltd"
    assert page.total == 10


def test_items_search_also_matches_line_descriptions(book):
    assert [row["line"].description for row in list_items(filters(q="print")).items] == ["Printing"]
    assert [row["line"].description for row in list_items(filters(q="brand_")).items] == ["Brand_book"]
    assert list_items(filters(q="brand%")).items == []
    assert [row["line"].description for row in list_items(filters(q="acme")).items] == [
        "Brand_book", "Printing", "Design work"]
    assert [row["line"].description for row in list_items(filters(q="acme", status="open")).items] == [
        "Printing", "Design work"]


# CSV --------------------------------------------------------------------------------------------

def test_invoices_csv_lists_the_filtered_invoices_in_the_lists_order(book):
    rows = parsed(invoice_lists.invoices_csv(filters(sort="number", dir="asc")))
    assert rows[0] == invoice_lists.INVOICE_CSV_HEADER
    assert [row[0] for row in rows[1:]] == ["INV-0001", "INV-0002", "INV-0003", "INV-0004", "INV-0005",
                                            f"Draft #{book['ids'][5]}", f"Draft #{book['ids'][6]}"]
    first = dict(zip(rows[0], rows[1]))
    assert first["status"] == LABELS["open"] and first["client"] == "Acme Ltd"
    assert (first["issue_date"], first["due_date"], first["currency"]) == ("2026-11-02", "2026-11-30", "EUR")
    assert (first["subtotal"], first["tax"], first["total"], first["amount_paid"], first["amount_due"]) == (
        "100.00", "0.00", "100.00", "0.00", "100.00")
    paid = dict(zip(rows[0], rows[2]))
    assert (paid["status"], paid["amount_paid"], paid["amount_due"]) == (LABELS["paid"], "250.00", "0.00")
    draft = dict(zip(rows[0], rows[6]))
    assert (draft["issue_date"], draft["due_date"]) == ("", "2026-11-30")
    assert [row[0] for row in parsed(invoice_lists.invoices_csv(filters(client_id=book["zulu"])))[1:]] == [
        f"Draft #{book['ids'][6]}", "INV-0004"]


@pytest.mark.parametrize("name", ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+1", "-2+3", "@SUM(A1:A9)",
                                  "\tTabbed", "\rReturned"])
def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_defused(app, name):
    """Whatever wrote the name or the description (the forms trim them; other systems may not)."""
    make.business(currency="EUR")
    client_row = make.client("Plain", contacts=[{"name": "X", "email": "x@example.com"}])
    invoice = make.invoice(client_row, status="draft")  # a finalized invoice's lines are frozen
    client_row.name = name
    invoice.lines[0].description = name
    db.session.commit()
    [_, row] = parsed(invoice_lists.invoices_csv(filters()))
    assert row[2] == "'" + name
    [_, item] = parsed(invoice_lists.items_csv(filters()))
    assert item[2] == "'" + name and item[5] == "'" + name


def test_a_formula_typed_into_the_forms_is_defused_too(app):
    make.business(currency="EUR")
    make.invoice(make.client("=1+2", contacts=[{"name": "X", "email": "x@example.com"}]),
                 lines=[("-cmd|' /C calc'!A0", "10.00")])
    [_, item] = parsed(invoice_lists.items_csv(filters()))
    assert item[2] == "'=1+2" and item[5] == "'-cmd|' /C calc'!A0"


def test_markup_commas_quotes_and_newlines_survive_as_text(app):
    make.business(currency="EUR")
    name = '<script>alert("x")</script>, "Quoted"\nNext line'
    make.invoice(make.client(name, contacts=[{"name": "X", "email": "x@example.com"}]))
    [_, row] = parsed(invoice_lists.invoices_csv(filters()))
    assert row[2] == name  # a CSV is not HTML: nothing escaped, nothing lost


def test_csv_is_streamed_header_first_then_in_batches(book, monkeypatch):
    monkeypatch.setattr(invoice_lists, "CSV_BATCH", 2)
    chunks = list(invoice_lists.invoices_csv(filters()))
    assert chunks[0] == ",".join(invoice_lists.INVOICE_CSV_HEADER) + "\r\n"  # before any row is read
    sizes = [len(parsed([chunk])) for chunk in chunks[1:]]
    assert sum(sizes) == 7 and len(sizes) >= 4 and max(sizes) <= 2
    assert parsed(chunks) == parsed(invoice_lists.invoices_csv(filters(per_page=1, page=2)))  # no paging


def test_an_empty_export_is_just_the_header(app):
    make.business(currency="EUR")
    assert parsed(invoice_lists.invoices_csv(filters())) == [invoice_lists.INVOICE_CSV_HEADER]
    assert parsed(invoice_lists.items_csv(filters())) == [invoice_lists.ITEM_CSV_HEADER]


def test_items_csv_writes_each_line_with_its_tax_in_major_units(app):
    make.business(currency="EUR", invoice_number_format="INV-{seq:04d}")
    vat, included = make.tax_rate(), make.tax_rate("Reduced", "7.25", inclusive=True)
    invoice = make.invoice(make.client(), lines=[
        ("Design", "2.5", "120.00", vat), ("Boxes", "100", "1.10", None), ("Meals", "1", "10.70", included)])
    rows = parsed(invoice_lists.items_csv(filters()))
    assert rows[0] == invoice_lists.ITEM_CSV_HEADER
    lines = [dict(zip(rows[0], row)) for row in rows[1:]]
    assert [(ln["invoice"], ln["line"], ln["description"], ln["quantity"]) for ln in lines] == [
        (invoice.number, "1", "Design", "2.5"), (invoice.number, "2", "Boxes", "100"),
        (invoice.number, "3", "Meals", "1")]
    assert (lines[0]["unit_price"], lines[0]["net"], lines[0]["tax_name"], lines[0]["tax_percent"],
            lines[0]["tax_inclusive"], lines[0]["tax"], lines[0]["total"]) == (
        "120.00", "300.00", "VAT", "23", "no", "69.00", "369.00")
    assert (lines[1]["tax_name"], lines[1]["tax_percent"], lines[1]["tax_inclusive"], lines[1]["tax"]) == (
        "", "", "", "0.00")
    assert (lines[2]["tax_percent"], lines[2]["tax_inclusive"], lines[2]["currency"]) == ("7.25", "yes", "EUR")


# One invoice's history ------------------------------------------------------------------------------

def test_the_timeline_is_the_invoices_own_events_newest_first(book):
    mine, other = book["ids"][0], book["ids"][1]
    timeline = invoice_timeline(mine)
    expected = db.session.scalars(select(Event).where(Event.subject_type == "invoice", Event.subject_id == mine)
                                  .order_by(Event.occurred_at.desc(), Event.id.desc())).all()
    assert timeline == expected and {"invoice.created", "invoice.finalized"} <= {e.type for e in timeline}
    assert timeline[0].type == "invoice.finalized" and timeline[-1].type == "invoice.created"
    assert all(e.subject_id == mine for e in timeline) and other not in {e.subject_id for e in timeline}
    assert invoice_timeline(mine, limit=1) == timeline[:1]
    assert invoice_timeline(987654) == []


def test_an_invoices_payments_include_its_share_of_a_pay_all(app):
    make.business(currency="EUR")
    contact = make.contact_with_login()
    first, second = make.invoice(contact.client, "30.00"), make.invoice(contact.client, "20.00")
    other = make.paid_invoice(make.client("Other Co", contacts=[{"name": "O", "email": "o@other.example"}]))
    own = make.payment(first, "10.00")
    shared = payments.pay_all(contact.client_id, "EUR", CONTACT, "card", "4242 4242 4242 4242")["payment"]
    db.session.expire_all()
    assert [p.id for p in invoice_payments(first.id)] == [own.id, shared.id]
    assert [p.id for p in invoice_payments(second.id)] == [shared.id]
    assert shared.id not in [p.id for p in invoice_payments(other.id)]
    assert db.session.get(Invoice, second.id).status == "paid"
    assert invoice_payments(987654) == []

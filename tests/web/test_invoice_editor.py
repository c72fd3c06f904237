"""The draft editor over HTTP, as its htmx form drives it: start a draft, add catalogue and one-off
lines, reorder and remove them, live totals computed by the server, save, inline errors that keep
everything typed, and save-then-finalize or save-then-send.
"""
from __future__ import annotations

import html
import re
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from portal.billing.money import format_money
from portal.extensions import db
from portal.models import Invoice, TaxRate
from portal.services import invoices
from portal.services.events import Actor
from tests.support import make
from tests.support.web import email_text, links, post_form

STAFF = Actor("staff", None, "staff@portal.example")


def text_of(response) -> str:
    return response.get_data(as_text=True)


def visible(body: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def flashes(response) -> str:
    return " ".join(html.unescape(m) for m in re.findall(r'<p class="flash flash-\w+">(.*?)</p>', text_of(response)))


def field(body: str, name: str) -> str | None:
    """The value an input, select or textarea named ``name`` shows."""
    match = re.search(r'<input id="%s" name="%s" type="[^"]+" value="([^"]*)"' % (name, name), body)
    if match:
        return html.unescape(match.group(1))
    match = re.search(r'<textarea id="%s" name="%s"[^>]*>(.*?)</textarea>' % (name, name), body, re.S)
    if match:
        return html.unescape(match.group(1))
    match = re.search(r'<select id="%s" name="%s"[^>]*>(.*?)</select>' % (name, name), body, re.S)
    if match:
        chosen = re.search(r'<option value="([^"]*)" selected>', match.group(1))
        return html.unescape(chosen.group(1)) if chosen else ""
    return None


def descriptions(body: str) -> list[str]:
    return [html.unescape(v) for v in re.findall(r'name="lines-\d+-description" type="text" value="([^"]*)"', body)]


def total_shown(body: str, which: str = "total") -> str:
    return html.unescape(re.search(r'data-total="%s">([^<]+)<' % which, body).group(1))


def reload(invoice_id: int) -> Invoice | None:
    with Session(db.engine) as s:
        found = s.get(Invoice, invoice_id)
        if found is not None:
            _ = found.lines, found.client
            s.expunge_all()
        return found


@pytest.fixture
def business(make):
    return make.business(name="Tidewater Studio", currency="EUR", timezone="UTC", invoice_number_format="INV-{seq:04d}",
                         payment_terms_days=14, invoice_memo="Thanks for working with us.",
                         invoice_footer="IBAN PT50 0000 0000")


@pytest.fixture
def acme(business, make):
    return make.client(name="Acme Ltd")


@pytest.fixture
def vat(app):
    rate = make.tax_rate()
    make.tax_rate("Reduced", "6")
    make.tax_rate("Old VAT", "21", active=False)
    return rate


@pytest.fixture
def workshop(vat):
    service = make.service("Brand workshop", 45000, "EUR", vat, description="Half a day")
    make.service("Retired thing", 100, "EUR", active=False)
    return service


@pytest.fixture
def draft(acme, staff_client):
    response = post_form(staff_client, "/staff/invoices/new", {"client_id": str(acme.id)})
    assert response.status_code == 303
    return int(response.headers["Location"].rsplit("/", 1)[1])


def form(lines: list[dict], **header) -> dict:
    """The editor's fields as the browser posts them."""
    data = {"currency": "EUR", "due_date": "", "memo": "", "footer": "", "discount_kind": "", "discount_value": ""}
    data.update(header)
    for i, line in enumerate(lines):
        for key in ("description", "quantity", "unit_price", "discount_kind", "discount_value", "tax_rate_id",
                    "service_id", "charge_id"):
            data[f"lines-{i}-{key}"] = str(line.get(key, ""))
    return data


def draft_input(lines: list[dict], **header) -> invoices.DraftInput:
    return invoices.DraftInput(
        currency=header.get("currency", "EUR"), due_date=header.get("due_date", ""), memo=header.get("memo", ""),
        footer=header.get("footer", ""), discount_kind=header.get("discount_kind", ""),
        discount_value=header.get("discount_value", ""), lines=[{k: str(v) for k, v in ln.items()} for ln in lines])


# Starting a draft ----------------------------------------------------------------------------------

def test_new_invoice_picks_the_client_and_opens_a_draft_with_the_business_defaults(acme, make, staff_client):
    make.client(name="Borealis GmbH", contacts=[{"name": "Bo", "email": "bo@borealis.example",
                                                 "receives_invoices": True}])
    picker = text_of(staff_client.get("/staff/invoices/new?q=acme"))
    assert "Acme Ltd" in picker and "Borealis GmbH" not in picker
    assert 'aria-label="Start an invoice for Acme Ltd"' in picker
    block = text_of(staff_client.get("/staff/invoices/new?q=borea", headers={"HX-Request": "true"}))
    assert block.lstrip().startswith('<div id="client-choices">') and "Borealis GmbH" in block

    response = post_form(staff_client, "/staff/invoices/new", {"client_id": str(acme.id)}, follow_redirects=True)
    body = text_of(response)
    assert "Draft started for Acme Ltd." in flashes(response)
    assert 'id="invoice-editor"' in body
    assert "Bill to Acme Ltd" in visible(body)
    assert field(body, "currency") == "EUR"
    assert field(body, "memo") == "Thanks for working with us."
    assert field(body, "footer") == "IBAN PT50 0000 0000"
    assert "Leave empty to use the terms: net 14 days from the issue date." in visible(body)
    assert total_shown(body) == "€0.00"


def test_the_client_page_button_starts_a_draft_through_the_query_string(acme, staff_client):
    response = post_form(staff_client, f"/staff/invoices/new?client_id={acme.id}", {})
    assert response.status_code == 303
    invoice = reload(int(response.headers["Location"].rsplit("/", 1)[1]))
    assert invoice.status == "draft" and invoice.client_id == acme.id


def test_a_draft_needs_a_real_client(business, staff_client):
    response = post_form(staff_client, "/staff/invoices/new", {"client_id": "999"}, follow_redirects=True)
    assert "Choose the client to bill." in flashes(response)
    with Session(db.engine) as s:
        assert s.query(Invoice).count() == 0


# Lines, without saving ---------------------------------------------------------------------------------

def test_a_catalogue_service_becomes_a_line_with_its_price_and_tax(draft, workshop, vat, staff_client):
    response = post_form(staff_client, f"/staff/invoices/{draft}/editor",
                         form([], op="add-service", add_service_id=str(workshop.id)), htmx=True)
    body = text_of(response)
    assert response.status_code == 200
    assert "<html" not in body and body.lstrip().startswith('<section id="editor-lines"')
    assert descriptions(body) == ["Brand workshop"]
    assert field(body, "lines-0-unit_price") == "450.00"
    assert field(body, "lines-0-quantity") == "1"
    assert field(body, "lines-0-tax_rate_id") == str(vat.id)
    assert 'name="lines-0-service_id" value="%d"' % workshop.id in body
    # The totals beside it are swapped in too, computed by the server.
    assert '<section id="invoice-totals"' in body and 'hx-swap-oob="true"' in body
    assert total_shown(body) == "€553.50"
    # Only active services are offered.
    assert "Retired thing" not in body
    assert reload(draft).lines == []


def test_add_line_appends_an_empty_one_off_row_and_keeps_what_is_typed(draft, vat, staff_client):
    typed = form([{"description": "Typed but not saved", "quantity": "2", "unit_price": "10.00"}], op="add")
    body = text_of(post_form(staff_client, f"/staff/invoices/{draft}/editor", typed, htmx=True))
    assert descriptions(body) == ["Typed but not saved", ""]
    assert field(body, "lines-1-quantity") == "1"
    assert 'name="lines-1-description" type="text" value="" autocomplete="off" autofocus' in body
    assert field(body, "lines-0-unit_price") == "10.00"
    # Tax choices are the active rates; a retired one is not offered for new lines.
    taxes = re.search(r'<select id="lines-1-tax_rate_id".*?</select>', body, re.S).group(0)
    assert "VAT 23%" in taxes and "Reduced 6%" in taxes and "Old VAT" not in taxes
    assert total_shown(body) == "€20.00"
    assert reload(draft).lines == []


def test_a_service_priced_in_another_currency_is_refused_with_a_reason(draft, staff_client):
    dollars = make.service("US retainer", 10000, "USD")
    body = text_of(post_form(staff_client, f"/staff/invoices/{draft}/editor",
                             form([], op="add-service", add_service_id=str(dollars.id)), htmx=True))
    assert "US retainer is priced in USD; this invoice is in EUR. Add it as a one-off line instead." in visible(body)
    assert 'aria-invalid="true" aria-describedby="add_service_id-error"' in body
    assert descriptions(body) == []
    nothing = text_of(post_form(staff_client, f"/staff/invoices/{draft}/editor",
                                form([], op="add-service", add_service_id=""), htmx=True))
    assert "Choose a service from the catalogue." in visible(nothing)


LINES = [{"description": "One", "quantity": "1", "unit_price": "1.00"},
         {"description": "Two", "quantity": "2", "unit_price": "2.00"},
         {"description": "Three", "quantity": "3", "unit_price": "3.00"}]


@pytest.mark.parametrize("op, expected", [
    ("up-2", ["One", "Three", "Two"]),
    ("up-0", ["One", "Two", "Three"]),
    ("down-0", ["Two", "One", "Three"]),
    ("down-2", ["One", "Two", "Three"]),
    ("remove-1", ["One", "Three"]),
    ("remove-9", ["One", "Two", "Three"]),
])
def test_reorder_and_remove_lines(draft, staff_client, op, expected):
    body = text_of(post_form(staff_client, f"/staff/invoices/{draft}/editor", form(LINES, op=op), htmx=True))
    assert descriptions(body) == expected
    # Each row's fields travel with it, renumbered in the new order.
    for i, name in enumerate(expected):
        assert field(body, f"lines-{i}-unit_price") == {"One": "1.00", "Two": "2.00", "Three": "3.00"}[name]
    assert total_shown(body) == format_money(
        sum({"One": 100, "Two": 400, "Three": 900}[n] for n in expected), "EUR")
    assert reload(draft).lines == []


def test_the_line_buttons_name_what_they_do(draft, staff_client):
    body = text_of(post_form(staff_client, f"/staff/invoices/{draft}/editor", form(LINES, op="add"), htmx=True))
    assert 'aria-label="Move line 1 up"' not in body and 'aria-label="Move line 1 down"' in body
    assert 'aria-label="Move line 3 up"' in body and 'aria-label="Remove line 4"' in body
    assert '<label for="lines-1-description" class="visually-hidden">Line 2 description</label>' in body


def test_without_htmx_a_line_button_shows_the_whole_editor(draft, staff_client):
    response = post_form(staff_client, f"/staff/invoices/{draft}/editor", form(LINES, op="remove-0", memo="Kept"))
    body = text_of(response)
    assert response.status_code == 200
    assert "<html" in body and 'id="invoice-editor"' in body
    assert descriptions(body) == ["Two", "Three"]
    assert field(body, "memo") == "Kept"


def test_unknown_line_operations_are_refused(draft, staff_client):
    assert post_form(staff_client, f"/staff/invoices/{draft}/editor", form(LINES, op="explode"),
                     htmx=True).status_code == 400


# Live totals --------------------------------------------------------------------------------------------

def mixed_lines(workshop, vat) -> list[dict]:
    reduced = db.session.query(TaxRate).filter_by(name="Reduced").one()
    return [
        {"description": "Brand workshop", "quantity": "2", "unit_price": "450.00", "tax_rate_id": vat.id,
         "service_id": workshop.id, "discount_kind": "percent", "discount_value": "10"},
        {"description": "Printing, one-off", "quantity": "3", "unit_price": "19.99", "tax_rate_id": reduced.id,
         "discount_kind": "fixed", "discount_value": "5.00"},
    ]


def test_preview_returns_only_the_totals_the_service_computes(draft, workshop, vat, staff_client):
    lines = mixed_lines(workshop, vat)
    response = post_form(staff_client, f"/staff/invoices/{draft}/preview",
                         form(lines, discount_kind="fixed", discount_value="20.00"), htmx=True)
    body = text_of(response)
    assert response.status_code == 200
    assert body.lstrip().startswith('<section id="invoice-totals"') and "<html" not in body
    assert "hx-swap-oob" not in body
    expected, errors = invoices.preview(draft_input(lines, discount_kind="fixed", discount_value="20.00"))
    assert errors == {}
    assert total_shown(body) == format_money(expected.total, "EUR")
    assert total_shown(body, "subtotal") == format_money(expected.subtotal, "EUR")
    assert total_shown(body, "discounts") == "−" + format_money(expected.discounts, "EUR")
    assert "VAT 23% on" in visible(body) and "Reduced 6% on" in visible(body)
    assert reload(draft).lines == [] and reload(draft).total == 0  # nothing saved


def test_preview_leaves_out_a_line_with_a_mistake_and_says_so(draft, staff_client):
    lines = [{"description": "Good", "quantity": "1", "unit_price": "10.00"},
             {"description": "Bad", "quantity": "lots", "unit_price": "5.00"}]
    body = text_of(post_form(staff_client, f"/staff/invoices/{draft}/preview", form(lines), htmx=True))
    assert total_shown(body) == "€10.00"
    assert "1 line has a mistake and is left out of these totals until fixed." in visible(body)


def test_preview_without_htmx_shows_the_editor_with_what_was_typed(draft, staff_client):
    lines = [{"description": "Typed", "quantity": "2", "unit_price": "3.00"}]
    body = text_of(post_form(staff_client, f"/staff/invoices/{draft}/preview", form(lines, memo="Hi")))
    assert 'id="invoice-editor"' in body and descriptions(body) == ["Typed"] and field(body, "memo") == "Hi"
    assert total_shown(body) == "€6.00"
    assert reload(draft).lines == []


def test_preview_follows_the_typed_currency(draft, staff_client):
    lines = [{"description": "Consulting", "quantity": "2", "unit_price": "1500"}]
    body = text_of(post_form(staff_client, f"/staff/invoices/{draft}/preview", form(lines, currency="jpy"),
                             htmx=True))
    assert total_shown(body) == "¥3,000"


# Saving ---------------------------------------------------------------------------------------------------

def test_save_stores_every_field_and_the_server_totals(draft, workshop, vat, staff_client):
    lines = mixed_lines(workshop, vat)
    data = form(lines, due_date="2026-12-31", memo="Thanks!", footer="Pay by transfer",
                discount_kind="percent", discount_value="5")
    response = post_form(staff_client, f"/staff/invoices/{draft}", data)
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/staff/invoices/{draft}")
    page = staff_client.get(response.headers["Location"])
    assert "Draft saved." in flashes(page)

    invoice = reload(draft)
    expected, _ = invoices.preview(draft_input(lines, discount_kind="percent", discount_value="5"))
    assert invoice.total == expected.total and invoice.amount_due == expected.total
    assert invoice.status == "draft" and invoice.number is None
    assert (str(invoice.due_date), invoice.memo, invoice.footer) == ("2026-12-31", "Thanks!", "Pay by transfer")
    assert (invoice.discount_kind, invoice.discount_percent) == ("percent", Decimal("5"))
    assert [(ln.description, ln.quantity, ln.unit_price, ln.tax_name, ln.service_id) for ln in invoice.lines] == [
        ("Brand workshop", Decimal("2"), 45000, "VAT", workshop.id),
        ("Printing, one-off", Decimal("3"), 1999, "Reduced", None),
    ]
    assert (invoice.lines[0].discount_kind, invoice.lines[0].discount_percent) == ("percent", Decimal("10"))
    assert (invoice.lines[1].discount_kind, invoice.lines[1].discount_fixed) == ("fixed", 500)

    # The editor shows it back as saved.
    body = text_of(page)
    assert descriptions(body) == ["Brand workshop", "Printing, one-off"]
    assert field(body, "lines-1-discount_kind") == "fixed" and field(body, "lines-1-discount_value") == "5.00"
    assert field(body, "lines-0-discount_value") == "10" and field(body, "discount_value") == "5"
    assert field(body, "due_date") == "2026-12-31"
    assert total_shown(body) == format_money(expected.total, "EUR")


def test_an_empty_added_line_is_not_part_of_the_invoice(draft, staff_client):
    data = form([{"description": "Real", "quantity": "1", "unit_price": "10"}, {"quantity": "1"}])
    assert post_form(staff_client, f"/staff/invoices/{draft}", data).status_code == 303
    assert [ln.description for ln in reload(draft).lines] == ["Real"]


def test_errors_are_inline_keep_everything_typed_and_change_nothing(draft, vat, staff_client):
    saved = form([{"description": "Saved line", "quantity": "1", "unit_price": "100.00"}], memo="Saved memo")
    assert post_form(staff_client, f"/staff/invoices/{draft}", saved).status_code == 303

    typed = form([
        {"description": "Edited line", "quantity": "2", "unit_price": "12.345", "tax_rate_id": vat.id},
        {"description": "", "quantity": "two", "unit_price": "5.00", "discount_kind": "percent",
         "discount_value": "150"},
        {"description": "Third", "quantity": "1", "unit_price": "7.00"},
    ], memo="A new memo\nwith two lines", footer="New footer", due_date="31/12/2026", currency="EURO",
        discount_kind="fixed", discount_value="1.5.0")
    response = post_form(staff_client, f"/staff/invoices/{draft}", typed)
    assert response.status_code == 422
    body = text_of(response)
    assert "Please correct the marked fields. Nothing was saved yet." in visible(body)
    errors = {name: html.unescape(msg) for name, msg in
              re.findall(r'<small id="([\w-]+)-error" class="field-error">([^<]+)</small>', body)}
    assert errors == {
        "currency": "Use a three-letter currency code, like EUR.",
        "due_date": "Use a date like 2026-12-31.",
        "discount_value": "Use an amount like 25.00.",
        "lines-0-unit_price": "Use an amount like 120.00.",
        "lines-1-description": "Describe the line.",
        "lines-1-quantity": "Use a positive number, up to 3 decimals.",
        "lines-1-discount_value": "Use a percentage between 0 and 100.",
    }
    for name in errors:
        assert re.search(r'name="%s"[^>]*aria-invalid="true" aria-describedby="%s-error"' % (name, name), body), name
    # Everything typed is still there.
    assert descriptions(body) == ["Edited line", "", "Third"]
    assert field(body, "lines-0-unit_price") == "12.345"
    assert field(body, "lines-0-tax_rate_id") == str(vat.id)
    assert field(body, "lines-1-quantity") == "two"
    assert field(body, "lines-1-discount_kind") == "percent" and field(body, "lines-1-discount_value") == "150"
    assert field(body, "memo") == "A new memo\nwith two lines" and field(body, "footer") == "New footer"
    assert field(body, "due_date") == "31/12/2026" and field(body, "currency") == "EURO"
    assert field(body, "discount_kind") == "fixed" and field(body, "discount_value") == "1.5.0"
    # And nothing changed.
    invoice = reload(draft)
    assert [ln.description for ln in invoice.lines] == ["Saved line"]
    assert invoice.memo == "Saved memo" and invoice.total == 10000


# Save, then finalize or send -------------------------------------------------------------------------------

def test_save_and_finalize_numbers_and_locks_it(draft, staff_client):
    data = form([{"description": "Work", "quantity": "1", "unit_price": "80"}], then="finalize")
    page = post_form(staff_client, f"/staff/invoices/{draft}", data, follow_redirects=True)
    invoice = reload(draft)
    assert invoice.number == "INV-0001" and invoice.status == "open" and invoice.total == 8000
    assert "Invoice INV-0001 finalized and locked." in flashes(page)
    body = text_of(page)
    assert 'id="invoice-editor"' not in body and "Invoice INV-0001" in visible(body)
    # The editor's endpoints refuse a finalized invoice and change nothing.
    assert post_form(staff_client, f"/staff/invoices/{draft}/editor", form([], op="add"), htmx=True).status_code == 409
    assert post_form(staff_client, f"/staff/invoices/{draft}/preview", form([]), htmx=True).status_code == 409
    refused = post_form(staff_client, f"/staff/invoices/{draft}",
                        form([{"description": "Changed", "quantity": "9", "unit_price": "9"}]), follow_redirects=True)
    assert "can no longer be edited" in flashes(refused)
    assert [ln.description for ln in reload(draft).lines] == ["Work"] and reload(draft).total == 8000


def test_save_and_send_emails_every_billing_contact(draft, staff_client, run_worker, smtp_server):
    data = form([{"description": "Work", "quantity": "1", "unit_price": "80"}], then="send")
    page = post_form(staff_client, f"/staff/invoices/{draft}", data, follow_redirects=True)
    assert "Invoice INV-0001 sent to ana@acme.example." in flashes(page)
    run_worker()
    [message] = smtp_server.to("ana@acme.example")
    assert any("/pay/" in link for link in links(email_text(message)))
    assert reload(draft).status == "open"


def test_a_refused_send_still_keeps_the_saved_draft(business, make, staff_client):
    quiet = make.client(name="Quiet Ltd", contacts=[{"name": "Q", "email": "q@quiet.example",
                                                     "receives_invoices": False}])
    draft = invoices.create_draft(quiet, STAFF)
    draft_id = draft.id
    data = form([{"description": "Work", "quantity": "1", "unit_price": "80"}], then="send")
    page = post_form(staff_client, f"/staff/invoices/{draft_id}", data, follow_redirects=True)
    assert ("Draft saved, but not sent: This client has no contact who receives invoices. Add one, then send."
            in flashes(page))
    invoice = reload(draft_id)
    assert invoice.status == "draft" and [ln.description for ln in invoice.lines] == ["Work"]
    assert 'id="invoice-editor"' in text_of(page)


def test_the_editor_keeps_a_retired_tax_rate_a_line_already_uses(draft, vat, staff_client):
    retired = db.session.query(TaxRate).filter_by(name="Old VAT").one()
    data = form([{"description": "Old work", "quantity": "1", "unit_price": "100", "tax_rate_id": retired.id}])
    assert post_form(staff_client, f"/staff/invoices/{draft}", data).status_code == 303
    body = text_of(staff_client.get(f"/staff/invoices/{draft}"))
    assert field(body, "lines-0-tax_rate_id") == str(retired.id)
    assert "Old VAT 21%" in body
    assert total_shown(body) == "€121.00"

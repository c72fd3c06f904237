"""One-off charges on a client, and what the client page shows about its billing."""
from __future__ import annotations

import html
import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import clock
from portal.extensions import db
from portal.models import Charge, Event, Invoice
from portal.services import clients as client_service
from portal.services import invoices
from portal.services.events import Actor
from tests.support import make
from tests.support.web import post_form

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
STAFF = Actor("staff", None, "staff@portal.example")


def fresh():
    return Session(db.engine)


def charges() -> list[Charge]:
    with fresh() as s:
        rows = s.scalars(select(Charge).order_by(Charge.id)).all()
        s.expunge_all()
        return rows


def events(prefix: str) -> list[Event]:
    with fresh() as s:
        rows = s.scalars(select(Event).where(Event.type.like(prefix + "%")).order_by(Event.id)).all()
        s.expunge_all()
        return rows


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error"[^>]*>([^<]*)<', page)
    return html.unescape(match.group(1)).strip() if match else ""


def text(response) -> str:
    return response.get_data(as_text=True)


def section(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}".*?</section>', page, re.S)
    assert match, f"no #{section_id} on the page"
    return match.group(0)


@pytest.fixture
def business(make):
    return make.business(name="Tidewater Studio", currency="EUR", locale="en_IE",
                         invoice_number_format="INV-{seq:04d}", payment_terms_days=14)


@pytest.fixture
def acme(make, business):
    return make.client(name="Acme Ltd")


@pytest.fixture
def vat(app):
    return make.tax_rate()  # VAT 23 %, on top of prices


def add_charge(client_, acme_id: int, **values):
    data = {"service_id": "", "description": "Extra revisions", "quantity": "2", "unit_price": "60.00",
            "currency": "", "tax_rate_id": "", **values}
    return post_form(client_, f"/staff/clients/{acme_id}/charges/new", data)


# Adding ----------------------------------------------------------------------------------------

def test_staff_adds_a_charge_and_sees_it_open_on_the_client(staff_client, acme, vat):
    form = text(staff_client.get(f"/staff/clients/{acme.id}/charges/new"))
    assert 'value="EUR"' in form and 'value="1"' in form  # the business's currency, quantity 1

    response = add_charge(staff_client, acme.id, currency="", tax_rate_id=str(vat.id))
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/staff/clients/{acme.id}#open-charges")
    [charge] = charges()
    assert (charge.description, charge.quantity, charge.unit_price, charge.currency, charge.status,
            charge.tax_rate_id) == ("Extra revisions", Decimal("2"), 6000, "EUR", "open", vat.id)

    page = text(staff_client.get(f"/staff/clients/{acme.id}"))
    assert "“Extra revisions” added to the items to bill later." in page
    charges_section = section(page, "open-charges")
    row = re.search(rf'<tr id="charge-{charge.id}".*?</tr>', charges_section, re.S).group(0)
    assert "Extra revisions" in row and "€60.00" in row and "€120.00" in row and "VAT 23%" in row
    assert f'name="charge_ids" value="{charge.id}"' in row
    assert f'action="/staff/clients/{acme.id}/invoices/draft-from-charges"' in charges_section
    assert 'name="all" value="1"' in charges_section
    assert "Not yet invoiced: €120.00" in page

    [event] = events("charge.")
    assert event.type == "charge.created" and event.subject_id == charge.id
    assert event.data == {"client_id": acme.id}
    assert event.after["unit_price"] == 6000 and event.after["quantity"] == "2"


def test_charge_currency_defaults_to_the_clients(staff_client, make, business):
    london = make.client(name="London Ltd")
    client_service.update_client(london, {"currency": "GBP"}, STAFF)
    assert 'value="GBP"' in text(staff_client.get(f"/staff/clients/{london.id}/charges/new"))
    add_charge(staff_client, london.id, unit_price="10")
    assert charges()[0].currency == "GBP" and charges()[0].unit_price == 1000


def test_picking_a_service_fills_in_the_form(staff_client, acme, vat):
    service = make.service("Hosting", 2500, "USD", vat)
    form = text(staff_client.get(f"/staff/clients/{acme.id}/charges/new"))
    assert f'<option value="{service.id}">Hosting</option>' in form

    response = staff_client.get(f"/staff/clients/{acme.id}/charges/new",
                                query_string={"service_id": str(service.id), "description": "", "quantity": "3",
                                              "unit_price": "", "currency": "EUR", "tax_rate_id": ""},
                                headers={"HX-Request": "true"})
    block = text(response)
    assert response.status_code == 200
    assert "<html" not in block and block.lstrip().startswith('<form method="post"')
    assert 'value="Hosting"' in block and 'value="25.00"' in block and 'value="USD"' in block
    assert 'value="3"' in block  # what was typed stays
    assert f'<option selected value="{vat.id}">' in block
    assert charges() == []  # a GET changes nothing

    # A description already typed is kept.
    block = text(staff_client.get(f"/staff/clients/{acme.id}/charges/new",
                                  query_string={"service_id": str(service.id), "description": "Hosting, March"},
                                  headers={"HX-Request": "true"}))
    assert 'value="Hosting, March"' in block


def test_a_service_charge_with_blanks_takes_the_services_values(staff_client, acme, vat):
    service = make.service("Hosting", 2500, "EUR", vat)
    response = add_charge(staff_client, acme.id, service_id=str(service.id), description="", unit_price="",
                          quantity="1")
    assert response.status_code == 302
    [charge] = charges()
    assert (charge.description, charge.unit_price, charge.currency, charge.service_id) == (
        "Hosting", 2500, "EUR", service.id)


@pytest.mark.parametrize("values, field, message", [
    ({"description": ""}, "description", "Describe the charge."),
    ({"description": "x" * 501}, "description", "Keep the description under 500 characters."),
    ({"quantity": "0"}, "quantity", "Use a positive number, up to 3 decimals."),
    ({"quantity": "-1"}, "quantity", "Use a positive number, up to 3 decimals."),
    ({"quantity": "1.2345"}, "quantity", "Use a positive number, up to 3 decimals."),
    ({"quantity": "lots"}, "quantity", "Use a positive number, up to 3 decimals."),
    ({"unit_price": "abc"}, "unit_price", "Enter the price, like 120.00."),
    ({"unit_price": "1.001"}, "unit_price", "EUR amounts have at most 2 decimals."),
    ({"unit_price": "-3"}, "unit_price", "The price can't be negative."),
    ({"currency": "XYZ"}, "currency", "Use a three-letter currency code, like EUR."),
    ({"tax_rate_id": "999"}, "tax_rate_id", "Choose an active tax rate from the list."),
    ({"service_id": "999"}, "service_id", "Choose an active service from the catalogue."),
])
def test_bad_charge_is_refused_and_nothing_saved(staff_client, acme, values, field, message):
    response = add_charge(staff_client, acme.id, **{"description": "Extra revisions", **values})
    page = text(response)
    assert response.status_code == 422
    assert "Nothing was saved." in page
    assert field_error(page, field) == message
    assert 'aria-invalid="true"' in page
    if field != "description":
        assert 'value="Extra revisions"' in page
    assert charges() == []
    assert events("charge.") == []


# Deleting --------------------------------------------------------------------------------------

def test_staff_deletes_an_open_charge(staff_client, acme):
    add_charge(staff_client, acme.id, description="Courier")
    [charge] = charges()
    response = post_form(staff_client, f"/staff/clients/{acme.id}/charges/{charge.id}/delete")
    assert response.status_code == 302
    assert charges() == []
    page = text(staff_client.get(f"/staff/clients/{acme.id}"))
    assert "Charge “Courier” deleted." in page
    assert "No items to bill later." in section(page, "open-charges")
    assert [e.type for e in events("charge.")] == ["charge.created", "charge.deleted"]
    assert events("charge.deleted")[0].before["description"] == "Courier"


def test_a_charge_on_a_draft_cannot_be_deleted(staff_client, acme):
    add_charge(staff_client, acme.id, description="Courier")
    [charge] = charges()
    invoices.create_draft(acme, STAFF, charge_ids=[charge.id])
    response = post_form(staff_client, f"/staff/clients/{acme.id}/charges/{charge.id}/delete")
    assert response.status_code == 302
    assert [c.status for c in charges()] == ["drafted"]
    page = text(staff_client.get(f"/staff/clients/{acme.id}"))
    assert "This charge is on an invoice and can&#39;t be deleted here." in page
    assert events("charge.deleted") == []


def test_another_clients_charge_is_not_found(staff_client, acme, make):
    other = make.client(name="Other Co")
    add_charge(staff_client, other.id, description="Theirs")
    [charge] = charges()
    assert post_form(staff_client, f"/staff/clients/{acme.id}/charges/{charge.id}/delete").status_code == 404
    assert len(charges()) == 1
    assert staff_client.get("/staff/clients/999/charges/new").status_code == 404


# Drafting an invoice from charges (the invoices module's route) ----------------------------------

def test_draft_from_selected_charges_then_delete_returns_them(staff_client, acme):
    add_charge(staff_client, acme.id, description="Courier", quantity="1", unit_price="15")
    add_charge(staff_client, acme.id, description="Printing", quantity="3", unit_price="4.50")
    courier, printing = charges()

    response = post_form(staff_client, f"/staff/clients/{acme.id}/invoices/draft-from-charges",
                         {"charge_ids": [str(printing.id)]})
    assert response.status_code in (302, 303)
    with fresh() as s:
        draft = s.scalars(select(Invoice)).one()
        assert [line.description for line in draft.lines] == ["Printing"]
        draft_id = draft.id
    assert {c.description: c.status for c in charges()} == {"Courier": "open", "Printing": "drafted"}

    page = text(staff_client.get(f"/staff/clients/{acme.id}"))
    assert "Printing" not in section(page, "open-charges")
    assert "Courier" in section(page, "open-charges")
    invoices_section = section(page, "client-invoices")
    assert f'href="/staff/invoices/{draft_id}"' in invoices_section
    assert "Draft" in invoices_section and "€13.50" in invoices_section

    invoices.delete_draft(db.session.get(Invoice, draft_id), STAFF)
    assert [c.status for c in charges()] == ["open", "open"]
    page = text(staff_client.get(f"/staff/clients/{acme.id}"))
    assert "Printing" in section(page, "open-charges") and "No invoices yet." in page


def test_draft_from_all_open_charges(staff_client, acme):
    add_charge(staff_client, acme.id, description="Courier", quantity="1", unit_price="15")
    add_charge(staff_client, acme.id, description="Printing", quantity="3", unit_price="4.50")
    response = post_form(staff_client, f"/staff/clients/{acme.id}/invoices/draft-from-charges", {"all": "1"})
    assert response.status_code in (302, 303)
    assert [c.status for c in charges()] == ["drafted", "drafted"]
    assert "No items to bill later." in section(text(staff_client.get(f"/staff/clients/{acme.id}")), "open-charges")


# The client page: invoices and balance --------------------------------------------------------------

def test_client_page_shows_invoices_and_balance(staff_client, acme, make):
    sent = make.invoice(acme, "100.00")
    part_paid = make.invoice(acme, "250.00")
    invoices.record_manual_payment(part_paid, "50.00", "wire", "", "", STAFF)
    paid = make.invoice(acme, "70.00")
    invoices.record_manual_payment(paid, "70.00", "cash", "", "", STAFF)
    cancelled = make.invoice(acme, "999.00")
    invoices.void(cancelled, STAFF)
    draft = make.invoice(acme, "500.00", status="draft")
    dollars = make.invoice(acme, "30.00", currency="USD")
    late = make.invoice(acme, "10.00")
    late.due_date = clock.today().replace(year=2020)
    db.session.commit()
    invoices.mark_overdue(clock.now())
    other = make.client(name="Other Co")
    make.invoice(other, "5000.00")  # someone else's debt is not Acme's

    assert client_service.client_balance(acme) == {"EUR": 10000 + 20000 + 1000, "USD": 3000}

    page = text(staff_client.get(f"/staff/clients/{acme.id}"))
    balance = re.search(r'<article id="balance".*?</article>', page, re.S).group(0)
    assert "€310.00" in balance and "US$30.00" in balance
    table = section(page, "client-invoices")
    for invoice, label in ((sent, "Sent"), (part_paid, "Sent"), (paid, "Paid"), (cancelled, "Cancelled"),
                           (draft, "Draft"), (dollars, "Sent"), (late, "Overdue")):
        row = re.search(rf'<tr id="invoice-{invoice.id}".*?</tr>', table, re.S).group(0)
        assert f'href="/staff/invoices/{invoice.id}"' in row
        assert f">{label}</span>" in row
        assert (invoice.number or f"Draft #{invoice.id}") in row
    part_row = re.search(rf'<tr id="invoice-{part_paid.id}".*?</tr>', table, re.S).group(0)
    assert "€250.00" in part_row and "€200.00" in part_row
    assert "Other Co" not in table and "€5,000.00" not in page


def test_client_without_invoices_owes_nothing(staff_client, acme):
    page = text(staff_client.get(f"/staff/clients/{acme.id}"))
    assert "Nothing due." in page
    assert "No invoices yet." in section(page, "client-invoices")
    assert client_service.client_balance(acme) == {}


def test_new_invoice_button_posts_for_this_client(staff_client, acme):
    page = text(staff_client.get(f"/staff/clients/{acme.id}"))
    form = re.search(rf'<form method="post" action="/staff/invoices/new\?client_id={acme.id}".*?</form>',
                     page, re.S)
    assert form and 'name="csrf_token"' in form.group(0) and "New invoice" in form.group(0)
    response = post_form(staff_client, f"/staff/invoices/new?client_id={acme.id}")
    assert response.status_code in (302, 303)
    with fresh() as s:
        assert s.scalars(select(Invoice.client_id)).all() == [acme.id]


def test_markup_in_a_charge_is_shown_as_text(staff_client, acme):
    add_charge(staff_client, acme.id, description=XSS)
    assert charges()[0].description == XSS
    page = text(staff_client.get(f"/staff/clients/{acme.id}"))
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(" in section(page, "open-charges")
    # Shown back in the form after an error, still as text.
    page = text(add_charge(staff_client, acme.id, description=XSS, quantity="0"))
    assert "<script>alert" not in page and "&lt;script&gt;" in page


def test_contacts_cannot_add_charges(client, make, auth, business):
    contact = make.contact_with_login()
    auth.login_contact()
    response = post_form(client, f"/staff/clients/{contact.client_id}/charges/new",
                         {"description": "Sneaky", "quantity": "1", "unit_price": "1"})
    assert response.status_code == 403
    assert charges() == []


# In the browser -------------------------------------------------------------------------------------

@pytest.mark.browser
def test_browser_add_charge_from_a_service_then_delete_it(page, make, business, vat):
    """The htmx wiring for real: picking a service fills the form in place; delete asks first. No CSP
    violations or script errors on the way."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    user = make.staff()
    acme = make.client(name="Acme Ltd")
    make.service("Hosting", 2500, "EUR", vat)

    page.goto("/staff/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(user.plain_password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/staff/")

    page.goto(f"/staff/clients/{acme.id}")
    page.get_by_role("button", name="Add an item to bill later").click()
    page.wait_for_url("**/charges/new")
    page.get_by_label("Quantity").fill("3")
    page.get_by_label("From the catalogue").select_option(label="Hosting")
    # Playwright's own waiting (a string predicate would need eval, which the CSP forbids).
    expect(page.get_by_label("Description")).to_have_value("Hosting")
    expect(page.get_by_label("Unit price")).to_have_value("25.00")
    expect(page.get_by_label("Quantity")).to_have_value("3")
    expect(page.get_by_label("Tax")).to_have_value(str(vat.id))
    page.get_by_role("button", name="Add the item").click()
    page.wait_for_url(f"**/staff/clients/{acme.id}#open-charges")
    row = page.locator("#open-charges tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("€75.00")

    page.locator("#open-charges").get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()  # the portal's confirm dialog
    expect(page.locator("#open-charges")).to_contain_text("No items to bill later.")
    assert charges() == []
    assert errors == []


def test_markup_in_client_name_and_notes_stays_text_beside_billing(staff_client, make, business):
    evil = make.client(name=XSS)
    client_service.update_client(evil, {"notes": XSS, "address": XSS}, STAFF)
    add_charge(staff_client, evil.id, description=XSS)
    make.invoice(evil, "12.00")
    page = text(staff_client.get(f"/staff/clients/{evil.id}"))
    assert "<script>alert" not in page and "<img src=x" not in page
    assert page.count("&lt;script&gt;alert(") >= 4  # title, heading, notes, address, charge
    form = text(staff_client.get(f"/staff/clients/{evil.id}/charges/new"))
    assert "<script>alert" not in form and "Item to bill later for &lt;script&gt;" in form

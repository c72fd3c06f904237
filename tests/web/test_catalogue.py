"""Staff keep the catalogue on /staff/catalogue: tax rates and services."""
from __future__ import annotations

import html
import re
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import Event, Invoice, InvoiceLine, Service, TaxRate
from portal.services import invoices
from portal.services.events import Actor
from tests.support.web import post_form

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
STAFF = Actor("staff", None, "staff@portal.example")


def fresh():
    return Session(db.engine)


def count(model) -> int:
    with fresh() as s:
        return s.scalar(select(func.count()).select_from(model))


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


def rates() -> list[TaxRate]:
    with fresh() as s:
        rows = s.scalars(select(TaxRate).order_by(TaxRate.id)).all()
        s.expunge_all()
        return rows


def services() -> list[Service]:
    with fresh() as s:
        rows = s.scalars(select(Service).order_by(Service.id)).all()
        s.expunge_all()
        return rows


@pytest.fixture
def business(make):
    return make.business(name="Tidewater Studio", currency="EUR", locale="en_IE",
                         invoice_number_format="INV-{seq:04d}", payment_terms_days=14)


def add_rate(client, **values):
    data = {"name": "VAT", "percent": "23", "inclusive": "exclusive", "active": "y", **values}
    return post_form(client, "/staff/catalogue/tax-rates/new", data)


# Tax rates --------------------------------------------------------------------------------------

def test_staff_adds_a_tax_rate_and_sees_it_listed(staff_client, business):
    response = add_rate(staff_client, name="VAT", percent="23")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/staff/catalogue#tax-rates")
    [rate] = rates()
    assert (rate.name, rate.percent, rate.inclusive, rate.active) == ("VAT", Decimal("23.0000"), False, True)

    page = text(staff_client.get("/staff/catalogue"))
    assert "Tax rate VAT 23% added." in page
    row = re.search(rf'<tr id="tax-rate-{rate.id}".*?</tr>', page, re.S).group(0)
    assert "VAT" in row and "23%" in row and "Added on top" in row and "Active" in row

    [event] = events("tax_rate.")
    assert event.type == "tax_rate.created" and event.subject_id == rate.id
    assert event.actor_label == "staff@portal.example"
    assert event.after == {"name": "VAT", "percent": "23.0000", "inclusive": False, "active": True}


def test_inclusive_rate_with_four_decimals(staff_client, business):
    response = add_rate(staff_client, name="Reduced", percent="7.1234 %", inclusive="inclusive")
    assert response.status_code == 302
    [rate] = rates()
    assert rate.percent == Decimal("7.1234") and rate.inclusive is True
    page = text(staff_client.get("/staff/catalogue"))
    assert "7.1234%" in page and "Included in prices" in page


@pytest.mark.parametrize("field, value, message", [
    ("percent", "abc", "Enter the rate as a percentage, like 20 or 7.25."),
    ("percent", "", "Enter the rate as a percentage, like 20 or 7.25."),
    ("percent", "NaN", "Enter the rate as a percentage, like 20 or 7.25."),
    ("percent", "Infinity", "Enter the rate as a percentage, like 20 or 7.25."),
    ("percent", "-1", "Use a percentage between 0 and 100."),
    ("percent", "100.01", "Use a percentage between 0 and 100."),
    ("percent", "1.23456", "Use at most 4 decimal places."),
    ("name", "", "Name the tax rate, like VAT or Sales tax."),
    ("name", "x" * 101, "Keep the name under 100 characters."),
    ("inclusive", "sometimes", "Choose whether prices include this tax."),
])
def test_bad_tax_rate_is_refused_and_nothing_saved(staff_client, business, field, value, message):
    response = add_rate(staff_client, **{"name": "Sales tax", "percent": "8.875", field: value})
    page = text(response)
    assert response.status_code == 422
    assert "Nothing was saved." in page
    if field == "inclusive":
        assert message in page
    else:
        assert field_error(page, field) == message
        assert 'aria-invalid="true"' in page
    if field != "name":
        assert 'value="Sales tax"' in page  # what was typed is kept
    if field != "percent":
        assert 'value="8.875"' in page
    assert rates() == []
    assert events("tax_rate.") == []


def test_editing_a_rate_leaves_existing_invoices_as_they_were(staff_client, business, make):
    add_rate(staff_client, name="VAT", percent="23")
    [rate] = rates()
    client = make.client()
    draft = invoices.create_draft(client, STAFF)
    invoices.save_draft(draft, invoices.DraftInput(currency="EUR", lines=[
        {"description": "Design", "quantity": "1", "unit_price": "100.00", "tax_rate_id": str(rate.id)}]), STAFF)
    invoices.finalize(draft, STAFF)
    total_before = draft.total
    assert total_before == 12300

    page = text(staff_client.get(f"/staff/catalogue/tax-rates/{rate.id}/edit"))
    assert 'value="VAT"' in page and 'value="23"' in page
    assert "keep the name and percentage they were made with" in page

    response = post_form(staff_client, f"/staff/catalogue/tax-rates/{rate.id}/edit",
                         {"name": "VAT standard", "percent": "25", "inclusive": "exclusive", "active": "y"})
    assert response.status_code == 302
    [rate] = rates()
    assert rate.name == "VAT standard" and rate.percent == Decimal("25")

    with fresh() as s:
        invoice = s.get(Invoice, draft.id)
        [line] = invoice.lines
        assert (line.tax_name, line.tax_percent, line.tax_amount) == ("VAT", Decimal("23"), 2300)
        assert invoice.total == total_before
        assert invoice.tax_breakdown[0]["percent"] == "23.0000"

    # A line made now takes the new percentage.
    fresh_draft = invoices.create_draft(client, STAFF)
    invoices.save_draft(fresh_draft, invoices.DraftInput(currency="EUR", lines=[
        {"description": "Design", "quantity": "1", "unit_price": "100.00", "tax_rate_id": str(rate.id)}]), STAFF)
    assert fresh_draft.total == 12500

    updated = [e for e in events("tax_rate.") if e.type == "tax_rate.updated"]
    assert len(updated) == 1
    assert updated[0].before == {"name": "VAT", "percent": "23.0000"}
    assert updated[0].after == {"name": "VAT standard", "percent": "25.0000"}


def test_bad_edit_changes_nothing(staff_client, business):
    add_rate(staff_client, name="VAT", percent="23")
    [rate] = rates()
    response = post_form(staff_client, f"/staff/catalogue/tax-rates/{rate.id}/edit",
                         {"name": "VAT new", "percent": "230", "inclusive": "exclusive", "active": "y"})
    assert response.status_code == 422
    page = text(response)
    assert field_error(page, "percent") == "Use a percentage between 0 and 100."
    assert 'value="VAT new"' in page and 'value="230"' in page
    [rate] = rates()
    assert rate.name == "VAT" and rate.percent == Decimal("23")
    assert [e.type for e in events("tax_rate.")] == ["tax_rate.created"]


def test_deactivated_rate_is_no_longer_offered(staff_client, business, make):
    add_rate(staff_client, name="Old VAT", percent="21")
    add_rate(staff_client, name="VAT", percent="23")
    old, current = rates()
    response = post_form(staff_client, f"/staff/catalogue/tax-rates/{old.id}/deactivate")
    assert response.status_code == 302
    assert rates()[0].active is False
    page = text(staff_client.get("/staff/catalogue"))
    assert "Tax rate Old VAT 21% deactivated" in page
    row = re.search(rf'<tr id="tax-rate-{old.id}".*?</tr>', page, re.S).group(0)
    assert "Inactive" in row and "Activate" in row

    service_form = text(staff_client.get("/staff/catalogue/services/new"))
    assert "VAT 23%" in service_form and "Old VAT" not in service_form
    client = make.client()
    charge_form = text(staff_client.get(f"/staff/clients/{client.id}/charges/new"))
    assert "VAT 23%" in charge_form and "Old VAT" not in charge_form

    # Choosing it anyway (a stale page) is refused.
    response = post_form(staff_client, "/staff/catalogue/services/new",
                         {"name": "Design", "unit_price": "10", "currency": "EUR", "tax_rate_id": str(old.id),
                          "active": "y"})
    assert response.status_code == 422
    assert field_error(text(response), "tax_rate_id") == "Choose an active tax rate from the list."
    assert services() == []

    assert post_form(staff_client, f"/staff/catalogue/tax-rates/{old.id}/activate").status_code == 302
    assert rates()[0].active is True
    assert [e.type for e in events("tax_rate.") if e.subject_id == old.id] == [
        "tax_rate.created", "tax_rate.deactivated", "tax_rate.activated"]


# Services -----------------------------------------------------------------------------------------

def test_staff_adds_a_service(staff_client, business):
    add_rate(staff_client, name="VAT", percent="23")
    [rate] = rates()
    form = text(staff_client.get("/staff/catalogue/services/new"))
    assert 'value="EUR"' in form  # the business's currency by default

    response = post_form(staff_client, "/staff/catalogue/services/new", {
        "name": "Brand workshop", "description": "Half a day, on site.", "unit_price": "1,250.50",
        "currency": "eur", "tax_rate_id": str(rate.id), "active": "y"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/staff/catalogue#services")
    [service] = services()
    assert (service.name, service.unit_price, service.currency, service.tax_rate_id, service.active) == (
        "Brand workshop", 125050, "EUR", rate.id, True)
    assert service.description == "Half a day, on site."

    page = text(staff_client.get("/staff/catalogue"))
    row = re.search(rf'<tr id="service-{service.id}".*?</tr>', page, re.S).group(0)
    assert "Brand workshop" in row and "€1,250.50" in row and "VAT 23%" in row

    [event] = events("service.")
    assert event.type == "service.created"
    assert event.after["unit_price"] == 125050 and event.after["currency"] == "EUR"


@pytest.mark.parametrize("values, field, message", [
    ({"unit_price": "12.345"}, "unit_price", "EUR amounts have at most 2 decimals."),
    ({"unit_price": "12.5", "currency": "JPY"}, "unit_price", "JPY amounts have at most 0 decimals."),
    ({"unit_price": "twelve"}, "unit_price", "Enter the price, like 120.00."),
    ({"unit_price": ""}, "unit_price", "Enter the price, like 120.00."),
    ({"unit_price": "-5"}, "unit_price", "The price can't be negative."),
    ({"unit_price": "1e20"}, "unit_price", "That price is too large."),
    ({"currency": "ZZZ"}, "currency", "Use a three-letter currency code, like EUR."),
    ({"name": "  "}, "name", "Name the service."),
    ({"tax_rate_id": "999"}, "tax_rate_id", "Choose an active tax rate from the list."),
    ({"description": "x" * 5001}, "description", "Keep the description under 5,000 characters."),
])
def test_bad_service_is_refused_and_nothing_saved(staff_client, business, values, field, message):
    data = {"name": "Hosting", "description": "", "unit_price": "20.00", "currency": "EUR", "tax_rate_id": "",
            "active": "y", **values}
    response = post_form(staff_client, "/staff/catalogue/services/new", data)
    page = text(response)
    assert response.status_code == 422
    assert field_error(page, field) == message
    assert "Nothing was saved." in page
    if field != "name":
        assert 'value="Hosting"' in page
    assert services() == []
    assert events("service.") == []


def test_service_edit_shows_major_units_and_saves(staff_client, business):
    post_form(staff_client, "/staff/catalogue/services/new",
              {"name": "Hosting", "unit_price": "20", "currency": "EUR", "tax_rate_id": "", "active": "y"})
    [service] = services()
    page = text(staff_client.get(f"/staff/catalogue/services/{service.id}/edit"))
    assert 'value="20.00"' in page and 'value="Hosting"' in page

    response = post_form(staff_client, f"/staff/catalogue/services/{service.id}/edit",
                         {"name": "Hosting (yearly)", "unit_price": "240", "currency": "USD", "tax_rate_id": "",
                          "active": "y"})
    assert response.status_code == 302
    [service] = services()
    assert (service.name, service.unit_price, service.currency) == ("Hosting (yearly)", 24000, "USD")
    [_, updated] = events("service.")
    assert updated.before == {"name": "Hosting", "unit_price": 2000, "currency": "EUR"}
    assert updated.after == {"name": "Hosting (yearly)", "unit_price": 24000, "currency": "USD"}

    # Unticking "active" on the edit form deactivates it too.
    post_form(staff_client, f"/staff/catalogue/services/{service.id}/edit",
              {"name": "Hosting (yearly)", "unit_price": "240", "currency": "USD", "tax_rate_id": ""})
    assert services()[0].active is False


def test_deactivate_and_reactivate_a_service(staff_client, business, make):
    post_form(staff_client, "/staff/catalogue/services/new",
              {"name": "Hosting", "unit_price": "20", "currency": "EUR", "tax_rate_id": "", "active": "y"})
    [service] = services()
    client = make.client()
    assert "Hosting" in text(staff_client.get(f"/staff/clients/{client.id}/charges/new"))

    assert post_form(staff_client, f"/staff/catalogue/services/{service.id}/deactivate").status_code == 302
    assert services()[0].active is False
    page = text(staff_client.get("/staff/catalogue"))
    assert "Service “Hosting” deactivated" in page
    assert "Hosting" not in text(staff_client.get(f"/staff/clients/{client.id}/charges/new"))

    assert post_form(staff_client, f"/staff/catalogue/services/{service.id}/activate").status_code == 302
    assert services()[0].active is True
    assert [e.type for e in events("service.")] == ["service.created", "service.deactivated", "service.activated"]


def test_markup_in_names_is_shown_as_text(staff_client, business, make):
    add_rate(staff_client, name=XSS[:100], percent="10")
    [rate] = rates()
    post_form(staff_client, "/staff/catalogue/services/new",
              {"name": XSS, "description": XSS, "unit_price": "5", "currency": "EUR", "tax_rate_id": str(rate.id),
               "active": "y"})
    [service] = services()
    assert service.name == XSS
    client = make.client()
    for url in ("/staff/catalogue", f"/staff/catalogue/services/{service.id}/edit",
                f"/staff/catalogue/tax-rates/{rate.id}/edit", f"/staff/clients/{client.id}/charges/new"):
        page = text(staff_client.get(url))
        assert "<script>alert" not in page and "<img src=x" not in page, url
        assert "&lt;script&gt;alert(" in page, url


def test_unknown_ids_are_not_found(staff_client, business):
    assert staff_client.get("/staff/catalogue/services/999/edit").status_code == 404
    assert staff_client.get("/staff/catalogue/tax-rates/999/edit").status_code == 404
    assert post_form(staff_client, "/staff/catalogue/services/999/deactivate").status_code == 404
    assert post_form(staff_client, "/staff/catalogue/tax-rates/999/deactivate").status_code == 404


def test_catalogue_is_in_the_staff_nav(staff_client, business):
    page = text(staff_client.get("/staff/catalogue"))
    assert re.search(r'<a href="/staff/catalogue" aria-current="page">Catalogue</a>', page)
    dashboard = text(staff_client.get("/staff/"))
    assert '<a href="/staff/catalogue" >Catalogue</a>' in dashboard


def test_catalogue_needs_a_staff_login(client, make, auth, business):
    response = client.get("/staff/catalogue")
    assert response.status_code == 302 and "/staff/login" in response.headers["Location"]
    make.contact_with_login()
    auth.login_contact()
    assert client.get("/staff/catalogue").status_code == 403
    assert post_form(client, "/staff/catalogue/tax-rates/new",
                     {"name": "VAT", "percent": "23", "inclusive": "exclusive"}).status_code == 403
    assert count(TaxRate) == 0


def test_lines_hold_their_copy_even_when_the_rate_is_deactivated(staff_client, business, make):
    add_rate(staff_client, name="VAT", percent="23")
    [rate] = rates()
    client = make.client()
    draft = invoices.create_draft(client, STAFF)
    invoices.save_draft(draft, invoices.DraftInput(currency="EUR", lines=[
        {"description": "Design", "quantity": "2", "unit_price": "50", "tax_rate_id": str(rate.id)}]), STAFF)
    post_form(staff_client, f"/staff/catalogue/tax-rates/{rate.id}/deactivate")
    with fresh() as s:
        line = s.scalars(select(InvoiceLine)).one()
        assert (line.tax_name, line.tax_percent, line.tax_amount) == ("VAT", Decimal("23"), 2300)

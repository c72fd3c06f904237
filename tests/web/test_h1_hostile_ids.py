"""Ids and page numbers from query strings and forms are read one way (``services.typed``): only
ASCII digits, at most 18 of them. "²" is a digit to ``str.isdigit`` but not to ``int()``, and a
30-digit page overflows the database's OFFSET: both were 500s; now they are page 1, "no such
client", or the form's field error, and nothing changes."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Charge, Invoice
from portal.services.typed import row_id, whole_number
from tests.support.web import post_form

HOSTILE = ["²", "٣", "-1", "0", "1e9", " 7 ", "99999999999999999999999999999", "１２"]


def test_the_reader():
    assert [row_id(v) for v in ("1", "42", " 7 ", 7, "007")] == [1, 42, 7, 7, 7]
    assert [row_id(v) for v in ("²", "٣", "-1", "0", "", None, "1e9", "１２", True, "9" * 19)] == [None] * 10
    assert whole_number("0") == 0 and whole_number("9" * 18) == 10 ** 18 - 1 and whole_number(-1) is None


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("path", ["/staff/invoices?page={}", "/staff/invoices?client_id={}",
                                  "/staff/invoices?per_page={}", "/staff/clients?page={}", "/staff/emails?page={}",
                                  "/staff/invoices/new?page={}", "/staff/invoices/items?page={}"])
def test_hostile_page_numbers_and_ids_in_the_query_string_are_not_errors(staff_client, make, path, value):
    make.invoice(make.client())
    response = staff_client.get(path.format(value))
    assert response.status_code == 200, response.get_data(as_text=True)[:500]


@pytest.mark.parametrize("value", ["²", "99999999999999999999999999999"])
def test_a_hostile_service_or_tax_rate_on_a_charge_is_a_field_error(staff_client, make, value):
    client = make.client()
    before = db.session.scalar(select(func.count()).select_from(Charge))
    for field in ("service_id", "tax_rate_id"):
        response = post_form(staff_client, f"/staff/clients/{client.id}/charges/new",
                             {"description": "Extra hour", "quantity": "1", "unit_price": "50.00", "currency": "EUR",
                              field: value})
        assert response.status_code == 422, (field, response.status_code)
    assert db.session.scalar(select(func.count()).select_from(Charge)) == before


def test_a_hostile_tax_rate_on_an_invoice_line_is_a_field_error_not_a_crash(staff_client, make):
    draft = make.invoice(make.client(), status="draft")
    response = post_form(staff_client, f"/staff/invoices/{draft.id}",
                         {"currency": "EUR", "lines-0-description": "Work", "lines-0-quantity": "1",
                          "lines-0-unit_price": "10.00", "lines-0-tax_rate_id": "²"})
    assert response.status_code == 422, response.status_code
    assert "tax rate" in response.get_data(as_text=True).lower()
    assert db.session.get(Invoice, draft.id).status == "draft"

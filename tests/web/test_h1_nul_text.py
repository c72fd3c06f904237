"""NUL characters in typed text: PostgreSQL refuses them in text columns, so a form carrying one was
a 500 there. The web layer drops them from every query and form value before anyone reads it."""
from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import Client
from tests.support.web import post_form


def test_a_nul_in_a_form_value_is_dropped_not_a_crash(staff_client, make):
    response = post_form(staff_client, "/staff/clients/new",
                         {"name": "Acme\x00 Ltd", "kind": "company", "currency": "EUR", "notes": "a\x00b",
                          "contact_name": "Ana\x00", "contact_email": "ana@acme.example",
                          "contact_receives_invoices": "y"})
    assert response.status_code in (302, 303), response.get_data(as_text=True)[:300]
    names = db.session.scalars(select(Client.name)).all()
    assert "Acme Ltd" in names
    assert not any("\x00" in name for name in names)


def test_a_nul_in_a_query_string_is_dropped(staff_client, make):
    make.invoice(make.client(name="Nul Test Co"))
    response = staff_client.get("/staff/invoices?q=Nul%00+Test")
    assert response.status_code == 200
    assert "Nul Test Co" in response.get_data(as_text=True)

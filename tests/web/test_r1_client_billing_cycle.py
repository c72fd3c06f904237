"""A client's billing cycle (seed 002: None / Monthly on a billing day) and extra charges (seed 003:
staff invoice them / invoice each at once / add them to the next cycle's invoice), set on the staff
client page; a charge added for an "at once" client is invoiced and sent as it is added."""
from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import clock
from portal.extensions import db
from portal.models import Charge, Client, Delivery, Event, Invoice
from portal.services import settings
from tests.support.web import post_form

SETTINGS = {"autopay_timing": "", "auto_apply_credit": "default"}


def row(client_id: int) -> dict:
    with Session(db.engine) as s:
        client = s.get(Client, client_id)
        return {k: getattr(client, k) for k in ("billing_cycle", "billing_day", "next_cycle_on", "charges_billing")}


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error"[^>]*>([^<]*)<', page)
    return html.unescape(match.group(1)).strip() if match else ""


def fetch(model, *where):
    with Session(db.engine) as s:
        rows = s.scalars(select(model).where(*where).order_by(model.id)).all()
        s.expunge_all()
        return rows


@pytest.fixture
def acme(make):
    make.business(timezone="Europe/Lisbon", currency="EUR")
    return make.client(currency="EUR")


def test_the_client_page_offers_the_cycle_and_the_extra_charges_choice(staff_client, acme):
    body = staff_client.get(f"/staff/clients/{acme.id}").get_data(as_text=True)
    form = body[body.index('id="billing-settings"'):]
    assert 'name="billing_cycle"' in form and 'name="billing_day"' in form and 'name="charges_billing"' in form
    for label in ("Monthly", "Staff invoice them", "Invoice each charge at once",
                  "Add charges to the next cycle&#39;s invoice"):
        assert label in form
    assert "Next billing day" not in form


def test_staff_set_a_monthly_cycle_on_day_31(staff_client, acme):
    # The next day 31 from today (the business's timezone), clamped to a short month.
    expected = settings.next_billing_day(31, clock.today("Europe/Lisbon"))
    response = post_form(staff_client, f"/staff/clients/{acme.id}/billing-settings",
                         {**SETTINGS, "billing_cycle": "monthly", "billing_day": "31", "charges_billing": "next_cycle"})
    assert response.status_code == 303
    assert row(acme.id) == {"billing_cycle": "monthly", "billing_day": 31, "next_cycle_on": expected,
                            "charges_billing": "next_cycle"}
    page = staff_client.get(f"/staff/clients/{acme.id}").get_data(as_text=True)
    assert f"Next billing day: <strong>{expected:%b} {expected.day}, {expected.year}</strong>" in page
    assert re.search(r'<option selected value="monthly"|<option value="monthly" selected', page)
    [event] = fetch(Event, Event.type == "client.billing_settings_updated")
    assert event.after == {"billing_cycle": "monthly", "billing_day": 31, "next_cycle_on": expected.isoformat(),
                           "charges_billing": "next_cycle"}
    # Back to no cycle: nothing is scheduled any more.
    post_form(staff_client, f"/staff/clients/{acme.id}/billing-settings",
              {**SETTINGS, "billing_cycle": "none", "billing_day": "31", "charges_billing": "manual"})
    assert row(acme.id) == {"billing_cycle": "none", "billing_day": None, "next_cycle_on": None,
                            "charges_billing": "manual"}


@pytest.mark.parametrize("typed, field, message", [
    ({"billing_cycle": "monthly", "billing_day": "32"}, "billing_day",
     "Choose the billing day: a day of the month from 1 to 31."),
    ({"billing_cycle": "monthly", "billing_day": "0"}, "billing_day",
     "Choose the billing day: a day of the month from 1 to 31."),
    ({"billing_cycle": "monthly", "billing_day": ""}, "billing_day",
     "Choose the billing day: a day of the month from 1 to 31."),
    ({"billing_cycle": "monthly", "billing_day": "last"}, "billing_day",
     "Choose the billing day: a day of the month from 1 to 31."),
    ({"billing_cycle": "weekly", "billing_day": "3"}, "billing_cycle", "Not a valid choice."),
    ({"billing_cycle": "none", "charges_billing": "sometimes"}, "charges_billing", "Not a valid choice."),
])
def test_bad_choices_are_refused_and_nothing_is_written(staff_client, acme, typed, field, message):
    response = post_form(staff_client, f"/staff/clients/{acme.id}/billing-settings",
                         {**SETTINGS, "auto_apply_credit": "off", "charges_billing": "manual", **typed})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert field_error(body, field) == message
    assert "Nothing was saved." in body
    assert row(acme.id) == {"billing_cycle": "none", "billing_day": None, "next_cycle_on": None,
                            "charges_billing": "manual"}
    with Session(db.engine) as s:
        assert s.get(Client, acme.id).auto_apply_credit is None
    assert fetch(Event, Event.type == "client.billing_settings_updated") == []


def test_a_charge_for_an_invoice_at_once_client_is_invoiced_and_sent(staff_client, acme):
    post_form(staff_client, f"/staff/clients/{acme.id}/billing-settings",
              {**SETTINGS, "billing_cycle": "none", "charges_billing": "immediate"})
    response = post_form(staff_client, f"/staff/clients/{acme.id}/charges/new",
                         {"description": "Rush courier", "quantity": "2", "unit_price": "15.00", "currency": "EUR"})
    assert response.status_code == 302
    [invoice] = fetch(Invoice, Invoice.client_id == acme.id)
    assert invoice.status == "open" and invoice.total == 3000 and invoice.number
    [charge] = fetch(Charge)
    assert (charge.status, charge.invoice_id) == ("billed", invoice.id)
    [delivery] = fetch(Delivery)
    assert delivery.recipient == "ana@acme.example" and delivery.subject_id == invoice.id
    page = staff_client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"invoiced at once: invoice {invoice.number} sent." in html.unescape(page)


def test_a_charge_for_a_manual_client_waits(staff_client, acme):
    response = post_form(staff_client, f"/staff/clients/{acme.id}/charges/new",
                         {"description": "Printing", "quantity": "1", "unit_price": "5.00", "currency": "EUR"})
    assert response.status_code == 302
    assert fetch(Invoice) == [] and fetch(Delivery) == []
    assert [c.status for c in fetch(Charge)] == ["open"]


def test_a_contact_cannot_change_the_cycle(make, client, auth, acme):
    contact = make.contact_with_login()
    auth.login_contact()
    response = post_form(client, f"/staff/clients/{contact.client_id}/billing-settings",
                         {**SETTINGS, "billing_cycle": "monthly", "billing_day": "1"})
    assert response.status_code in (302, 403)
    assert row(contact.client_id)["billing_cycle"] == "none"

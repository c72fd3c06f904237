"""F4 settings: the business-wide client-portal settings (owner, /staff/settings) and one client's
billing settings (staff, on the client page)."""
from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import clock
from portal.extensions import db
from portal.models import Business, Client, Event, PaymentMethod
from tests.support.web import post_form

F4_FIELDS = ("clients_manage_autopay", "autopay_timing", "autopay_days_before", "auto_apply_credit",
             "restrict_overdue_days", "restrict_actions", "card_expiry_notice_days", "credit_note_number_format")

BASE = {
    "name": "Tidewater Studio", "brand_color": "#3355cc", "currency": "EUR", "timezone": "UTC", "locale": "en_US",
    "invoice_number_format": "INV-{year}-{seq:05d}", "payment_terms": "net", "payment_terms_days": "30",
    "accept_card": "y",
}
PORTAL = {
    "clients_manage_autopay": "y", "autopay_timing": "days_before_due", "autopay_days_before": "5",
    "auto_apply_credit": "y", "restrict_overdue_days": "45", "restrict_actions": ["payment_methods", "autopay"],
    "card_expiry_notice_days": "14", "credit_note_number_format": "CR-{year}-{seq:04d}",
}


def stored() -> dict:
    with Session(db.engine) as s:
        row = s.scalars(select(Business)).one()
        return {k: getattr(row, k) for k in F4_FIELDS}


def settings_events() -> list[Event]:
    with Session(db.engine) as s:
        rows = s.scalars(select(Event).where(Event.type == "settings.updated").order_by(Event.id)).all()
        s.expunge_all()
        return rows


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error"[^>]*>([^<]*)<', page)
    return html.unescape(match.group(1)).strip() if match else ""


@pytest.fixture
def business(make):
    return make.business(name="Tidewater Studio", currency="EUR", clients_manage_autopay=True,
                         autopay_timing="on_issue", autopay_days_before=3, auto_apply_credit=True,
                         restrict_overdue_days=None, restrict_actions=None, card_expiry_notice_days=30,
                         credit_note_number_format="CN-{year}-{seq:05d}")


ORIGINAL = {"clients_manage_autopay": True, "autopay_timing": "on_issue", "autopay_days_before": 3,
            "auto_apply_credit": True, "restrict_overdue_days": None, "restrict_actions": None,
            "card_expiry_notice_days": 30, "credit_note_number_format": "CN-{year}-{seq:05d}"}


# Business-wide ---------------------------------------------------------------------------------

def test_the_settings_page_offers_the_client_portal_settings(owner_client, business):
    page = owner_client.get("/staff/settings")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    for name in F4_FIELDS:
        assert f'name="{name}"' in body, name
    assert "Restrict clients with an invoice overdue more than (days)" in body
    assert "Paying is never blocked" in body
    for label in ("Start new subscriptions", "Add or remove payment methods", "Turn autopay on or off",
                  "Change their portal profile"):  # R1: "start new subscriptions" blocks the portal's self-checkout
        assert label in body
    assert 'value="pay"' not in body


def test_owner_saves_the_client_portal_settings(owner_client, business):
    response = post_form(owner_client, "/staff/settings", {**BASE, **PORTAL})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert stored() == {
        "clients_manage_autopay": True, "autopay_timing": "days_before_due", "autopay_days_before": 5,
        "auto_apply_credit": True, "restrict_overdue_days": 45, "restrict_actions": ["payment_methods", "autopay"],
        "card_expiry_notice_days": 14, "credit_note_number_format": "CR-{year}-{seq:04d}",
    }
    [event] = settings_events()
    assert event.actor_kind == "staff"
    assert event.before["restrict_overdue_days"] is None and event.after["restrict_overdue_days"] == 45
    assert event.before["restrict_actions"] is None
    assert event.after["restrict_actions"] == ["payment_methods", "autopay"]
    assert event.before["credit_note_number_format"] == "CN-{year}-{seq:05d}"
    assert "clients_manage_autopay" not in event.after  # unchanged: not recorded

    page = owner_client.get("/staff/settings").get_data(as_text=True)
    assert re.search(r'<input[^>]*name="restrict_overdue_days"[^>]*value="45"', page)
    assert re.search(r'<input checked[^>]*value="payment_methods"|<input[^>]*value="payment_methods"[^>]*checked',
                     page)
    assert not re.search(r'<input[^>]*value="profile"[^>]*checked', page)


def test_unticking_and_emptying_turns_things_off(owner_client, business, make):
    make.business(restrict_overdue_days=20, restrict_actions=["profile"])
    data = {**BASE, **PORTAL, "restrict_overdue_days": "", "autopay_timing": "on_due_date",
            "autopay_days_before": "not a number"}  # ignored unless "days before due"
    for box in ("clients_manage_autopay", "auto_apply_credit", "restrict_actions"):
        data.pop(box)
    response = post_form(owner_client, "/staff/settings", data)
    assert response.status_code == 302, response.get_data(as_text=True)
    saved = stored()
    assert saved["restrict_overdue_days"] is None
    assert saved["restrict_actions"] == []
    assert saved["clients_manage_autopay"] is False and saved["auto_apply_credit"] is False
    assert saved["autopay_timing"] == "on_due_date"
    assert saved["autopay_days_before"] == 3  # kept


CN_FORMAT = "Include {seq} (and optionally {year}, {month}), e.g. CN-{year}-{seq:05d}."


@pytest.mark.parametrize("field, value, message", [
    ("restrict_overdue_days", "0", "Use a number of days between 1 and 365, or leave it empty."),
    ("restrict_overdue_days", "366", "Use a number of days between 1 and 365, or leave it empty."),
    ("restrict_overdue_days", "ten", "Use a number of days between 1 and 365, or leave it empty."),
    ("autopay_days_before", "0", "Use a number of days between 1 and 60."),
    ("autopay_days_before", "61", "Use a number of days between 1 and 60."),
    ("autopay_days_before", "", "Use a number of days between 1 and 60."),
    ("card_expiry_notice_days", "0", "Use a number of days between 1 and 90."),
    ("card_expiry_notice_days", "91", "Use a number of days between 1 and 90."),
    ("card_expiry_notice_days", "", "Use a number of days between 1 and 90."),
    ("credit_note_number_format", "CN-{year}", CN_FORMAT),
    ("credit_note_number_format", "CN-{nope}-{seq}", CN_FORMAT),
    ("credit_note_number_format", "CN-{seq[0]}", CN_FORMAT),
    ("autopay_timing", "whenever", "Not a valid choice."),
])
def test_bad_values_are_refused_with_422_and_nothing_is_saved(owner_client, business, field, value, message):
    response = post_form(owner_client, "/staff/settings", {**BASE, **PORTAL, "name": "Changed Name", field: value})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert field_error(body, field) == message
    assert "Nothing was saved." in body
    assert stored() == ORIGINAL
    assert settings_events() == []


def test_paying_is_not_an_action_that_can_be_blocked(owner_client, business):
    response = post_form(owner_client, "/staff/settings",
                         {**BASE, **PORTAL, "restrict_actions": ["payment_methods", "pay"]})
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "restrict_actions")
    assert stored() == ORIGINAL


def test_only_the_owner_changes_them(staff_client, business):
    response = post_form(staff_client, "/staff/settings", {**BASE, **PORTAL})
    assert response.status_code == 403
    assert stored() == ORIGINAL


# One client ----------------------------------------------------------------------------------------

@pytest.fixture
def acme(make, business):
    return make.client()


def client_settings(client_id: int) -> dict:
    with Session(db.engine) as s:
        row = s.get(Client, client_id)
        return {k: getattr(row, k) for k in ("autopay", "autopay_timing", "autopay_days_before",
                                             "auto_apply_credit")}


def save_method(client_id: int, default=True, removed=False, setup_id="seti_1") -> PaymentMethod:
    method = PaymentMethod(client_id=client_id, gateway="sandbox", gateway_method_id="pm_" + setup_id,
                           gateway_setup_id=setup_id, type="card", brand="visa", last4="4242", exp_month=12,
                           exp_year=2034, is_default=default, removed_at=clock.now() if removed else None)
    db.session.add(method)
    db.session.commit()
    return method


def test_the_client_page_shows_the_billing_settings_form(staff_client, acme):
    page = staff_client.get(f"/staff/clients/{acme.id}")
    body = page.get_data(as_text=True)
    assert 'id="billing-settings"' in body
    assert f'action="/staff/clients/{acme.id}/billing-settings"' in body
    assert 'name="autopay"' in body and 'name="autopay_timing"' in body and 'name="auto_apply_credit"' in body
    assert "this client has none yet" in body
    assert "Business default: when the invoice is issued" in body


def test_autopay_needs_a_default_saved_method(staff_client, acme):
    save_method(acme.id, default=False, setup_id="seti_a")
    save_method(acme.id, default=True, removed=True, setup_id="seti_b")
    response = post_form(staff_client, f"/staff/clients/{acme.id}/billing-settings",
                         {"autopay": "y", "autopay_timing": "", "auto_apply_credit": "off"})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "<h1>Acme Ltd</h1>" in body  # the client page again
    assert field_error(body, "autopay").startswith("Autopay needs a default saved payment method.")
    assert re.search(r'<option selected value="off"|<option value="off" selected', body), "what was chosen stays"
    assert client_settings(acme.id) == {"autopay": False, "autopay_timing": None, "autopay_days_before": None,
                                        "auto_apply_credit": None}
    assert db.session.scalars(select(Event).where(Event.type == "client.billing_settings_updated")).all() == []


def test_staff_turn_autopay_on_with_a_timing_and_credit_override(staff_client, acme):
    save_method(acme.id)
    response = post_form(staff_client, f"/staff/clients/{acme.id}/billing-settings",
                         {"autopay": "y", "autopay_timing": "days_before_due", "autopay_days_before": "7",
                          "auto_apply_credit": "off"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/staff/clients/{acme.id}#billing-settings")
    assert client_settings(acme.id) == {"autopay": True, "autopay_timing": "days_before_due",
                                        "autopay_days_before": 7, "auto_apply_credit": False}
    [event] = db.session.scalars(select(Event).where(Event.type == "client.billing_settings_updated")).all()
    assert event.subject_id == acme.id and event.actor_kind == "staff"
    assert event.before == {"autopay": False, "autopay_timing": None, "autopay_days_before": None,
                            "auto_apply_credit": None}
    page = staff_client.get(f"/staff/clients/{acme.id}").get_data(as_text=True)
    assert "Billing settings saved." in page
    assert re.search(r'<input checked[^>]*name="autopay"|<input[^>]*name="autopay"[^>]*checked', page)

    # Back to the business defaults; autopay off needs no method.
    response = post_form(staff_client, f"/staff/clients/{acme.id}/billing-settings",
                         {"autopay_timing": "", "autopay_days_before": "7", "auto_apply_credit": "default"})
    assert response.status_code == 303
    assert client_settings(acme.id) == {"autopay": False, "autopay_timing": None, "autopay_days_before": None,
                                        "auto_apply_credit": None}
    response = post_form(staff_client, f"/staff/clients/{acme.id}/billing-settings",
                         {"autopay_timing": "on_due_date", "auto_apply_credit": "on"})
    assert response.status_code == 303
    assert client_settings(acme.id)["auto_apply_credit"] is True
    assert client_settings(acme.id)["autopay_timing"] == "on_due_date"


@pytest.mark.parametrize("data, field, message", [
    ({"autopay_timing": "days_before_due", "autopay_days_before": ""}, "autopay_days_before",
     "Use a number of days between 1 and 60."),
    ({"autopay_timing": "days_before_due", "autopay_days_before": "61"}, "autopay_days_before",
     "Use a number of days between 1 and 60."),
    ({"autopay_timing": "hourly"}, "autopay_timing", "Not a valid choice."),
    ({"auto_apply_credit": "sometimes"}, "auto_apply_credit", "Not a valid choice."),
])
def test_bad_client_settings_are_refused(staff_client, acme, data, field, message):
    response = post_form(staff_client, f"/staff/clients/{acme.id}/billing-settings",
                         {"autopay_timing": "", "auto_apply_credit": "default", **data})
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), field) == message
    assert client_settings(acme.id)["autopay_timing"] is None


def test_client_settings_need_csrf_and_a_real_client(staff_client, acme):
    assert staff_client.post(f"/staff/clients/{acme.id}/billing-settings",
                             data={"autopay_timing": "on_due_date", "auto_apply_credit": "default"}).status_code == 400
    assert client_settings(acme.id)["autopay_timing"] is None
    response = post_form(staff_client, "/staff/clients/9999/billing-settings",
                         {"autopay_timing": "on_due_date", "auto_apply_credit": "default"})
    assert response.status_code == 404


def test_a_contact_cannot_reach_the_staff_form(make, client, auth, business):
    contact = make.contact_with_login()
    auth.login_contact()
    response = post_form(client, f"/staff/clients/{contact.client_id}/billing-settings",
                         {"autopay_timing": "on_due_date", "auto_apply_credit": "default"})
    assert response.status_code in (302, 403)
    assert client_settings(contact.client_id)["autopay_timing"] is None

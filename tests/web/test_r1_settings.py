"""Recurring billing's business settings on /staff/settings (owner): review recurring invoices before
sending, the upcoming-invoice notice (days before; blank = off; 1–60), whether clients may cancel
their subscriptions at period end. Bad input: 422, the field's error, nothing written."""
from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import Business, Event
from tests.support.web import post_form

FIELDS = ("review_recurring_invoices", "upcoming_notice_days", "clients_cancel_subscriptions")
BASE = {
    "name": "Tidewater Studio", "brand_color": "#3355cc", "currency": "EUR", "timezone": "UTC", "locale": "en_US",
    "invoice_number_format": "INV-{year}-{seq:05d}", "payment_terms": "net", "payment_terms_days": "30",
    "accept_card": "y", "autopay_timing": "on_issue", "card_expiry_notice_days": "30",
    "credit_note_number_format": "CN-{year}-{seq:05d}",
}


def stored() -> dict:
    with Session(db.engine) as s:
        row = s.scalars(select(Business)).one()
        return {k: getattr(row, k) for k in FIELDS}


def events() -> list[Event]:
    with Session(db.engine) as s:
        rows = s.scalars(select(Event).where(Event.type == "settings.updated").order_by(Event.id)).all()
        s.expunge_all()
        return rows


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error"[^>]*>([^<]*)<', page)
    return html.unescape(match.group(1)).strip() if match else ""


@pytest.fixture
def business(make):
    return make.business(name="Tidewater Studio", currency="EUR", review_recurring_invoices=False,
                         upcoming_notice_days=7, clients_cancel_subscriptions=True)


def test_the_settings_page_shows_the_recurring_billing_settings(owner_client, business):
    body = owner_client.get("/staff/settings").get_data(as_text=True)
    section = body[body.index('id="recurring"'):]
    assert "Review recurring invoices before sending" in section
    assert "Upcoming-invoice notice: days before" in section
    assert "Clients may cancel their subscriptions (at period end)" in section
    assert re.search(r'<input[^>]*name="upcoming_notice_days"[^>]*value="7"', section)
    assert re.search(r'<input[^>]*max="60"[^>]*name="upcoming_notice_days"|name="upcoming_notice_days"[^>]*max="60"',
                     section)
    assert re.search(r'<input checked[^>]*name="clients_cancel_subscriptions"', section)
    assert not re.search(r'<input checked[^>]*name="review_recurring_invoices"', section)


def test_the_owner_saves_them(owner_client, business):
    response = post_form(owner_client, "/staff/settings", {
        **BASE, "review_recurring_invoices": "y", "upcoming_notice_days": "14"})
    assert response.status_code == 302
    assert stored() == {"review_recurring_invoices": True, "upcoming_notice_days": 14,
                        "clients_cancel_subscriptions": False}
    [event] = events()
    assert event.after["review_recurring_invoices"] is True and event.after["upcoming_notice_days"] == 14
    # Blank: no notice.
    assert post_form(owner_client, "/staff/settings", {**BASE, "upcoming_notice_days": "",
                                                       "clients_cancel_subscriptions": "y"}).status_code == 302
    assert stored() == {"review_recurring_invoices": False, "upcoming_notice_days": None,
                        "clients_cancel_subscriptions": True}


@pytest.mark.parametrize("typed", ["0", "61", "-3", "seven", "7.5", "9" * 40])
def test_a_bad_number_of_days_is_refused_and_nothing_is_written(owner_client, business, typed):
    response = post_form(owner_client, "/staff/settings", {
        **BASE, "review_recurring_invoices": "y", "upcoming_notice_days": typed})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert field_error(body, "upcoming_notice_days") == "Use a number of days between 1 and 60, or leave it empty."
    assert "Nothing was saved." in body
    assert stored() == {"review_recurring_invoices": False, "upcoming_notice_days": 7,
                        "clients_cancel_subscriptions": True}
    assert events() == []


def test_only_the_owner_changes_them_and_only_with_csrf(staff_client, business):
    response = post_form(staff_client, "/staff/settings", {**BASE, "upcoming_notice_days": "30"})
    assert response.status_code == 403
    assert staff_client.post("/staff/settings", data={**BASE, "upcoming_notice_days": "30"}).status_code == 400
    assert stored()["upcoming_notice_days"] == 7
    assert events() == []

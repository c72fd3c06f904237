"""F4 client portal: paying in place, the payment history and the contact's own profile."""
from __future__ import annotations

import re

import pytest

from portal.extensions import db
from portal.models import Contact, Invoice
from portal.services import payments
from portal.services.events import Actor
from tests.support import make
from tests.support.web import csrf_token, post_form, text_of

STAFF = Actor("staff", None, "staff@portal.example")
VISA = "4242 4242 4242 4242"
DECLINED = "4000 0000 0000 0002"


@pytest.fixture
def setup(make, client, auth):
    make.business(name="Tidewater Studio", currency="EUR")
    make.owner()
    contact = make.contact_with_login()
    mine = make.invoice(contact.client)
    other_client = make.client(name="Other Co", contacts=[{"name": "Olu", "email": "olu@other.example",
                                                           "receives_invoices": True}])
    theirs = make.invoice(other_client)
    draft = make.invoice(contact.client, status="draft")
    db.session.commit()
    assert auth.login_contact().status_code == 302
    return {"contact": contact, "mine": mine.id, "number": mine.number, "theirs": theirs.id, "draft": draft.id}


def pay(client, invoice_id, **fields):
    page = f"/portal/invoices/{invoice_id}"
    data = {"method": "card", **fields, "csrf_token": csrf_token(client, "/portal/")}
    return client.post(f"{page}/pay", data=data)


# Paying in place -------------------------------------------------------------------------------

def test_the_portal_invoice_page_shows_the_payment_form(setup, client):
    response = client.get(f"/portal/invoices/{setup['mine']}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    section = html.split('id="payment"')[1].split("</section>")[0]
    assert f'action="/portal/invoices/{setup["mine"]}/pay"' in section
    assert 'name="csrf_token"' in section and 'name="card_number"' in section
    assert "Pay €100.00" in text_of(response)


def test_paying_in_place_with_a_test_card_marks_the_invoice_paid_and_shows_in_history(setup, client):
    response = pay(client, setup["mine"], card_number=VISA, expiry="12/34", cvc="123")
    assert response.status_code == 303
    followed = client.get(response.headers["Location"], follow_redirects=True)
    assert followed.request.path == f"/portal/invoices/{setup['mine']}"
    page = text_of(followed)
    assert "Payment received" in page
    assert "This invoice is paid in full" in page
    assert 'name="card_number"' not in followed.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Invoice, setup["mine"]).status == "paid"

    history = client.get("/portal/payments")
    assert history.status_code == 200
    html = history.get_data(as_text=True)
    assert f'href="/portal/invoices/{setup["mine"]}"' in html
    text = text_of(history)
    assert setup["number"] in text and "€100.00" in text and "Received" in text and "Card" in text


def test_a_declined_card_is_refused_in_place_and_keeps_what_was_typed(setup, client):
    response = pay(client, setup["mine"], card_number=DECLINED, expiry="12/34", cvc="123")
    assert response.status_code == 422
    assert "Your card was declined." in text_of(response)
    html = response.get_data(as_text=True)
    assert 'value="4000 0000 0000 0002"' in html, "what was typed stays"
    assert re.search(r'id="card_number"[^>]*aria-invalid="true"', html)
    db.session.expire_all()
    assert db.session.get(Invoice, setup["mine"]).status == "open"


def test_a_missing_card_number_is_a_field_error(setup, client):
    response = pay(client, setup["mine"], card_number="", expiry="12/34", cvc="123")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Enter the card number." in html and 'aria-invalid="true"' in html
    assert 'value="12/34"' in html


def test_another_clients_invoice_or_a_draft_is_404_for_page_and_pay(setup, client):
    for invoice_id in (setup["theirs"], setup["draft"]):
        assert client.get(f"/portal/invoices/{invoice_id}").status_code == 404
        assert pay(client, invoice_id, card_number=VISA).status_code == 404
        assert client.get(f"/portal/invoices/{invoice_id}/paid").status_code == 404
    db.session.expire_all()
    assert db.session.get(Invoice, setup["theirs"]).status != "paid"


def test_paying_needs_csrf(setup, client):
    response = client.post(f"/portal/invoices/{setup['mine']}/pay", data={"method": "card", "card_number": VISA})
    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.get(Invoice, setup["mine"]).status != "paid"


# History ---------------------------------------------------------------------------------------

def test_history_is_empty_at_first_and_in_the_nav(setup, client):
    response = client.get("/portal/payments")
    assert response.status_code == 200
    assert "No payments yet" in text_of(response)
    assert 'href="/portal/payments" aria-current="page"' in response.get_data(as_text=True)


def test_a_second_contact_of_the_same_client_sees_the_same_invoices_and_history(setup, client, app):
    pay(client, setup["mine"], card_number=VISA, expiry="12/34", cvc="123")
    make.contact(setup["contact"].client, password="client password 2")
    other = app.test_client()
    assert post_form(other, "/portal/login", {"email": "ben@acme.example",
                                              "password": "client password 2"}).status_code == 302
    invoices_page = text_of(other.get("/portal/invoices"))
    assert setup["number"] in invoices_page
    assert "This invoice is paid in full" in text_of(other.get(f"/portal/invoices/{setup['mine']}"))
    history = text_of(other.get("/portal/payments"))
    assert setup["number"] in history and "€100.00" in history
    assert other.get(f"/portal/invoices/{setup['theirs']}").status_code == 404


def test_history_shows_refunds_and_the_refunded_amount(setup, client):
    pay(client, setup["mine"], card_number=VISA, expiry="12/34", cvc="123")
    paid = payments.invoice_payments(setup["mine"])[-1]
    payments.refund(paid.id, "30.00", "Discount agreed", STAFF)
    response = client.get("/portal/payments")
    text = text_of(response)
    assert "Refunds" in text and "€30.00" in text and "Discount agreed" in text


def test_history_is_newest_first_and_paginated(setup, client):
    contact = setup["contact"]
    ids = []
    for n in range(22):
        ids.append(make.invoice(contact.client, f"{n + 1}.00").id)
    db.session.commit()
    for invoice_id in ids:
        payments.pay_in_sandbox(invoice_id, "card", VISA)
    first = client.get("/portal/payments")
    text = text_of(first)
    assert "Page 1 of 2" in text
    assert text.index("€22.00") < text.index("€21.00")
    assert "€3.00" in text and "€2.00" not in text and "€1.00" not in text
    second = client.get("/portal/payments?page=2", headers={"HX-Request": "true"})
    fragment = second.get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="payment-rows">')
    assert "€2.00" in text_of(second) and "€1.00" in text_of(second) and "Page 2 of 2" in text_of(second)


def test_history_never_shows_another_clients_payments(setup, client):
    payments.pay_in_sandbox(setup["theirs"], "card", VISA)
    assert "No payments yet" in text_of(client.get("/portal/payments"))


# Profile ---------------------------------------------------------------------------------------

def test_the_contact_edits_their_name_and_phone_but_not_their_email(setup, client):
    page = client.get("/portal/profile")
    assert page.status_code == 200
    assert 'value="ana@acme.example"' in page.get_data(as_text=True)
    response = post_form(client, "/portal/profile", {"name": "Ana R. Silva", "phone": "+351 900 000 000",
                                                     "email": "evil@other.example"})
    assert response.status_code == 303
    followed = client.get(response.headers["Location"])
    assert "Your details are saved." in text_of(followed)
    db.session.expire_all()
    contact = db.session.get(Contact, setup["contact"].id)
    assert (contact.name, contact.phone, contact.email) == ("Ana R. Silva", "+351 900 000 000", "ana@acme.example")


def test_an_empty_name_is_a_field_error_and_changes_nothing(setup, client):
    response = post_form(client, "/portal/profile", {"name": "  ", "phone": "555 0100"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Enter your name." in html and 'aria-invalid="true"' in html
    assert 'value="555 0100"' in html
    db.session.expire_all()
    contact = db.session.get(Contact, setup["contact"].id)
    assert (contact.name, contact.phone) == ("Ana Ribeiro", None)


def test_a_wrong_current_password_is_refused(setup, client, app):
    response = post_form(client, "/portal/profile/password", {
        "current_password": "not my password", "password": "a brand new secret", "confirm": "a brand new secret"})
    assert response.status_code == 422
    assert "That isn't your current password." in text_of(response)
    other = app.test_client()
    assert post_form(other, "/portal/login", {"email": "ana@acme.example",
                                              "password": "client password 1"}).status_code == 302


def test_a_too_short_new_password_is_refused(setup, client):
    response = post_form(client, "/portal/profile/password", {
        "current_password": "client password 1", "password": "short", "confirm": "short"})
    assert response.status_code == 422
    assert "Use at least 10 characters." in text_of(response)
    nonce = setup["contact"].session_nonce
    db.session.expire_all()
    assert db.session.get(Contact, setup["contact"].id).session_nonce == nonce


def test_changing_the_password_ends_other_sessions_and_keeps_this_one(setup, client, app):
    elsewhere = app.test_client()
    assert post_form(elsewhere, "/portal/login", {"email": "ana@acme.example",
                                                  "password": "client password 1"}).status_code == 302
    assert elsewhere.get("/portal/").status_code == 200

    response = post_form(client, "/portal/profile/password", {
        "current_password": "client password 1", "password": "a brand new secret", "confirm": "a brand new secret"})
    assert response.status_code == 303
    followed = client.get(response.headers["Location"])
    assert followed.status_code == 200 and "Your password is changed." in text_of(followed)
    assert client.get("/portal/payments").status_code == 200

    assert elsewhere.get("/portal/").status_code == 302
    fresh = app.test_client()
    assert post_form(fresh, "/portal/login", {"email": "ana@acme.example",
                                              "password": "client password 1"}).status_code != 302
    assert post_form(fresh, "/portal/login", {"email": "ana@acme.example",
                                              "password": "a brand new secret"}).status_code == 302

"""F4 client portal: saved payment methods (/portal/payment-methods) and the autopay switch, in
the sandbox (a test form confirmed on the server) and with Stripe (the Payment Element in setup
mode, against the Stripe-compatible fake server)."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.gateways import get_gateway
from portal.gateways.base import GatewayError
from portal.models import Client, Event, PaymentMethod
from portal.services import payment_methods
from tests.support import make
from tests.support.web import post_form, text_of

VISA = "4242 4242 4242 4242"
MASTERCARD = "5555 5555 5555 4444"
VISA_DEBIT = "4000 0566 5566 5556"
PAGE = "/portal/payment-methods"


@pytest.fixture
def contact(make, client, auth):
    make.business(name="Tidewater Studio", currency="EUR")
    make.owner()
    contact = make.contact_with_login()
    assert auth.login_contact().status_code == 302
    return contact


def add(client, htmx: bool = False, **fields):
    data = {"method": "card", "cvc": "123", **fields}
    return post_form(client, f"{PAGE}/add", data, htmx=htmx)


def add_card(client, number=VISA, expiry="12/34"):
    response = add(client, card_number=number, expiry=expiry)
    assert response.status_code == 303, text_of(response)
    return response


def methods_of(client_id: int, removed: bool = False) -> list[PaymentMethod]:
    db.session.expire_all()
    query = select(PaymentMethod).where(PaymentMethod.client_id == client_id).order_by(PaymentMethod.id)
    if not removed:
        query = query.where(PaymentMethod.removed_at.is_(None))
    return list(db.session.scalars(query))


def row_text(response, method_id: int) -> str:
    html = response.get_data(as_text=True)
    match = re.search(rf'<tr id="method-{method_id}">(.*?)</tr>', html, flags=re.S)
    assert match, f"no row for method {method_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def count_methods() -> int:
    return db.session.scalar(select(func.count()).select_from(PaymentMethod))


# Adding in the sandbox --------------------------------------------------------------------------

def test_the_page_has_an_add_form_and_no_methods_yet(contact, client):
    response = client.get(PAGE)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "No saved payment methods yet" in text_of(response)
    assert f'action="{PAGE}/add"' in html and 'name="card_number"' in html and 'name="expiry"' in html
    assert 'name="cvc"' in html and 'name="account"' in html and "IBAN" in html
    assert 'href="/portal/payment-methods" aria-current="page"' in html


def test_adding_a_test_card_lists_it_with_brand_last4_and_expiry_as_the_default(contact, client):
    response = add_card(client, VISA, "12/34")
    assert response.headers["Location"].endswith(PAGE)
    page = client.get(PAGE)
    assert "Saved: Visa ending 4242, expires 12/2034." in text_of(page)
    [method] = methods_of(contact.client_id)
    assert (method.type, method.brand, method.last4, method.exp_month, method.exp_year) == ("card", "visa", "4242",
                                                                                            12, 2034)
    assert method.is_default and method.gateway == "sandbox" and method.gateway_method_id.startswith("pm_sbx_")
    assert method.added_by_contact_id == contact.id
    row = row_text(page, method.id)
    assert "Visa" in row and "4242" in row and "12/2034" in row and "Default" in row
    listing = page.get_data(as_text=True).split('id="saved-methods"')[1].split('id="add-method"')[0]
    assert "4242424242424242" not in listing and "4242 4242" not in listing, "never the full number"
    event = db.session.scalars(select(Event).where(Event.type == "payment_method.added")).one()
    assert (event.subject_type, event.subject_id, event.actor_kind) == ("client", contact.client_id, "contact")


@pytest.mark.parametrize("fields, field, message", [
    ({"card_number": "4242 4242 4242 4241", "expiry": "12/34"}, "card_number", "Your card number is incorrect."),
    ({"card_number": "", "expiry": "12/34"}, "card_number", "Enter the card number."),
    ({"card_number": VISA, "expiry": "01/20"}, "expiry", "Your card has expired."),
    ({"card_number": VISA, "expiry": "13/30"}, "expiry", "Your card's expiration month is invalid."),
    ({"card_number": VISA, "expiry": ""}, "expiry", "Enter the expiry date (MM/YY)."),
    ({"card_number": VISA, "expiry": "12/34", "cvc": "1"}, "cvc", "Enter the 3 or 4 digit security code (CVC)."),
    ({"method": "sepa_debit", "account": "DE00 1234"}, "account", "Use a test account"),
])
def test_a_bad_card_is_a_field_error_and_nothing_is_stored(contact, client, fields, field, message):
    response = add(client, **fields)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', html), html
    error = re.search(rf'<small id="{field}-error"[^>]*>([^<]*)</small>', html)
    assert error and message in error.group(1).replace("&#39;", "'")
    if fields.get("card_number"):
        assert f'value="{fields["card_number"]}"' in html, "what was typed stays"
    assert 'id="cvc" name="cvc" inputmode="numeric" autocomplete="cc-csc" value=""' in html, "the CVC never comes back"
    assert count_methods() == 0
    assert "No saved payment methods yet" in text_of(response)


def test_adding_needs_csrf(contact, client):
    response = client.post(f"{PAGE}/add", data={"method": "card", "card_number": VISA, "expiry": "12/34",
                                                 "cvc": "123"})
    assert response.status_code == 400
    assert count_methods() == 0


def test_a_sepa_account_shows_its_bank_name_and_last4(contact, client):
    response = add(client, method="sepa_debit", account="DE89 3704 0044 0532 0130 00")
    assert response.status_code == 303
    [method] = methods_of(contact.client_id)
    assert (method.type, method.bank_name, method.last4, method.exp_month) == ("sepa_debit", "DE bank 37040044",
                                                                               "3000", None)
    row = row_text(client.get(PAGE), method.id)
    assert "DE bank 37040044" in row and "3000" in row and "SEPA Direct Debit" in row


def test_a_us_bank_account_shows_its_bank_name_and_last4(make, contact, client):
    client_row = db.session.get(Client, contact.client_id)
    client_row.currency = "USD"
    db.session.commit()
    page = client.get(PAGE).get_data(as_text=True)
    assert 'value="us_bank_account"' in page and 'value="sepa_debit"' not in page
    assert add(client, method="us_bank_account", account="000123456789").status_code == 303
    [method] = methods_of(contact.client_id)
    row = row_text(client.get(PAGE), method.id)
    assert "STRIPE TEST BANK" in row and "6789" in row and "US bank account" in row


# Default and remove ---------------------------------------------------------------------------

def test_make_default_then_remove_it_and_the_newest_left_becomes_default(contact, client):
    add_card(client, VISA)
    add_card(client, MASTERCARD, "06/31")
    add_card(client, VISA_DEBIT, "03/33")
    visa, mastercard, debit = methods_of(contact.client_id)
    assert [m.is_default for m in (visa, mastercard, debit)] == [True, False, False]

    response = post_form(client, f"{PAGE}/{mastercard.id}/default")
    assert response.status_code == 303
    page = client.get(PAGE)
    assert "Your default payment method is now Mastercard ending 4444" in text_of(page)
    assert "Default" in row_text(page, mastercard.id) and "Default" not in row_text(page, visa.id)
    text = text_of(page)
    assert text.index("Mastercard") < text.index("Visa"), "the default is listed first"

    response = post_form(client, f"{PAGE}/{mastercard.id}/remove")
    assert response.status_code == 303
    page = client.get(PAGE)
    assert "Removed: Mastercard ending 4444" in text_of(page)
    assert "Your default is now Visa ending 5556" in text_of(page)
    assert f'id="method-{mastercard.id}"' not in page.get_data(as_text=True)
    assert "Default" in row_text(page, debit.id)
    visa, mastercard, debit = methods_of(contact.client_id, removed=True)
    assert mastercard.removed_at is not None and not mastercard.is_default
    assert (visa.is_default, debit.is_default) == (False, True)
    types = [e.type for e in db.session.scalars(select(Event).order_by(Event.id))]
    assert "payment_method.default_changed" in types and "payment_method.removed" in types


def test_removing_detaches_the_method_at_the_gateway(contact, client):
    add_card(client, VISA)
    [method] = methods_of(contact.client_id)
    gateway = get_gateway()
    customer = db.session.get(Client, contact.client_id).gateway_customer_id
    assert gateway.charge_saved_method(100, "EUR", customer, method.gateway_method_id, "before", {}).status == \
        "succeeded"
    assert post_form(client, f"{PAGE}/{method.id}/remove").status_code == 303
    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved_method(100, "EUR", customer, method.gateway_method_id, "after", {})
    assert caught.value.code == "payment_method_unexpected_state"


def test_remove_with_htmx_swaps_the_list(contact, client):
    add_card(client, VISA)
    add_card(client, MASTERCARD)
    visa, mastercard = methods_of(contact.client_id)
    page = client.get(PAGE).get_data(as_text=True)
    form = re.search(rf'<form[^>]*action="{PAGE}/{visa.id}/remove"[^>]*>', page, flags=re.S).group(0)
    assert 'hx-target="#saved-methods"' in form and "hx-confirm=" in form and "Visa ending 4242" in form
    response = post_form(client, f"{PAGE}/{visa.id}/remove", htmx=True)
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="saved-methods"')
    assert "<html" not in fragment and f'id="method-{visa.id}"' not in fragment
    assert "Removed: Visa ending 4242" in text_of(response) and "Default" in row_text(response, mastercard.id)


def test_another_clients_method_is_404_for_remove_and_default(make, contact, client, app):
    other = make.client(name="Other Co", contacts=[{"name": "Olu", "email": "olu@other.example",
                                                    "receives_invoices": True}])
    theirs = payment_methods.add_in_sandbox(other.id, None, "card", VISA, "12/34")
    theirs_second = payment_methods.add_in_sandbox(other.id, None, "card", MASTERCARD, "12/34")
    add_card(client, VISA)
    for method_id in (theirs.id, theirs_second.id, 999999):
        assert post_form(client, f"{PAGE}/{method_id}/remove").status_code == 404
        assert post_form(client, f"{PAGE}/{method_id}/default").status_code == 404
        assert post_form(client, f"{PAGE}/{method_id}/remove", htmx=True).status_code == 404
    assert [(m.id, m.is_default, m.removed_at) for m in methods_of(other.id)] == [
        (theirs.id, True, None), (theirs_second.id, False, None)]
    assert "Mastercard" not in text_of(client.get(PAGE))


def test_a_removed_method_cannot_be_made_default_or_removed_again(contact, client):
    add_card(client, VISA)
    add_card(client, MASTERCARD)
    visa, mastercard = methods_of(contact.client_id)
    assert post_form(client, f"{PAGE}/{mastercard.id}/remove").status_code == 303
    assert post_form(client, f"{PAGE}/{mastercard.id}/default").status_code == 404
    assert post_form(client, f"{PAGE}/{mastercard.id}/remove").status_code == 404


def test_every_contact_of_the_client_sees_the_same_methods(contact, client, app):
    add_card(client, VISA)
    make.contact(contact.client, password="client password 2")
    other = app.test_client()
    assert post_form(other, "/portal/login", {"email": "ben@acme.example",
                                              "password": "client password 2"}).status_code == 302
    [method] = methods_of(contact.client_id)
    row = row_text(other.get(PAGE), method.id)
    assert "Visa" in row and "4242" in row and "Default" in row


# Autopay ------------------------------------------------------------------------------------------

def test_autopay_cannot_go_on_without_a_method(contact, client):
    page = client.get(PAGE)
    html = page.get_data(as_text=True)
    assert "Autopay is off" in text_of(page)
    assert re.search(r"<button[^>]*disabled[^>]*>Turn autopay on</button>", html)
    response = post_form(client, f"{PAGE}/autopay", {"autopay": "on"})
    assert response.status_code == 422
    assert "Add a payment method first" in text_of(response)
    db.session.expire_all()
    assert db.session.get(Client, contact.client_id).autopay is False


def test_autopay_on_and_off_with_the_timing_in_words(make, contact, client):
    make.business(autopay_timing="days_before_due", autopay_days_before=5)
    add_card(client, VISA)
    response = post_form(client, f"{PAGE}/autopay", {"autopay": "on"})
    assert response.status_code == 303
    page = text_of(client.get(PAGE))
    assert "Autopay is on." in page and "charged 5 days before the due date" in page
    assert "Visa ending 4242" in page
    db.session.expire_all()
    assert db.session.get(Client, contact.client_id).autopay is True

    client_row = db.session.get(Client, contact.client_id)
    client_row.autopay_timing = "on_due_date"
    db.session.commit()
    assert "charged on the due date" in text_of(client.get(PAGE))

    response = post_form(client, f"{PAGE}/autopay", {"autopay": "off"}, htmx=True)
    assert response.status_code == 200
    assert response.get_data(as_text=True).lstrip().startswith('<div id="saved-methods"')
    assert "Autopay is off" in text_of(response)
    db.session.expire_all()
    assert db.session.get(Client, contact.client_id).autopay is False
    types = [e.type for e in db.session.scalars(select(Event).where(Event.subject_type == "client")
                                                .order_by(Event.id))]
    assert types.count("autopay.turned_on") == 1 and types.count("autopay.turned_off") == 1


def test_autopay_is_refused_when_staff_do_not_let_clients_manage_it(make, contact, client):
    add_card(client, VISA)
    make.business(clients_manage_autopay=False)
    page = client.get(PAGE)
    assert f'action="{PAGE}/autopay"' not in page.get_data(as_text=True)
    assert "Tidewater Studio sets autopay for your account" in text_of(page)
    response = post_form(client, f"{PAGE}/autopay", {"autopay": "on"})
    assert response.status_code == 422
    assert "Autopay is set by Tidewater Studio" in text_of(response)
    db.session.expire_all()
    assert db.session.get(Client, contact.client_id).autopay is False


def test_removing_the_last_method_turns_autopay_off(contact, client):
    add_card(client, VISA)
    assert post_form(client, f"{PAGE}/autopay", {"autopay": "on"}).status_code == 303
    [method] = methods_of(contact.client_id)
    response = post_form(client, f"{PAGE}/{method.id}/remove", htmx=True)
    assert response.status_code == 200
    assert "Autopay is now off: there is no payment method left to charge." in text_of(response)
    assert "Autopay is off" in text_of(response)
    db.session.expire_all()
    assert db.session.get(Client, contact.client_id).autopay is False


def test_a_restricted_client_may_be_refused_adding_and_autopay(make, contact, client):
    add_card(client, VISA)
    make.business(restrict_overdue_days=30, restrict_actions=["payment_methods", "autopay"])
    client_row = db.session.get(Client, contact.client_id)
    client_row.access_restricted = True
    db.session.commit()
    response = add(client, card_number=MASTERCARD, expiry="12/34")
    assert response.status_code == 422 and "restricted" in text_of(response)
    [method] = methods_of(contact.client_id)
    response = post_form(client, f"{PAGE}/{method.id}/remove")
    assert response.status_code == 303 and "restricted" in text_of(client.get(PAGE))
    assert post_form(client, f"{PAGE}/autopay", {"autopay": "on"}).status_code == 422
    assert [m.id for m in methods_of(contact.client_id)] == [method.id]


# The Billing tab and the staff client page ---------------------------------------------------------

def test_the_billing_tab_shows_the_default_method_and_autopay(contact, client):
    home = text_of(client.get("/portal/"))
    assert "No saved payment method." in home and "Add a payment method" in home
    add_card(client, VISA, "08/33")
    post_form(client, f"{PAGE}/autopay", {"autopay": "on"})
    home = text_of(client.get("/portal/"))
    assert "Default: Visa ending 4242, expires 08/2033" in home
    assert "Autopay is on : your default payment method is charged on the day an invoice is issued." in home


def test_the_staff_client_page_lists_methods_and_autopay(make, contact, client, app):
    add_card(client, VISA, "08/33")
    add(client, method="sepa_debit", account="DE89370400440532013000")
    staff = app.test_client()
    user = make.staff()
    assert post_form(staff, "/staff/login", {"email": user.email, "password": user.plain_password}).status_code \
        == 302
    page = staff.get(f"/staff/clients/{contact.client_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    section = html.split('id="payment-methods"')[1].split("</article>")[0]
    text = " ".join(re.sub(r"<[^>]+>", " ", section).split())
    assert "Visa" in text and "4242" in text and "08/2033" in text and "Default" in text
    assert "DE bank 37040044" in text and "3000" in text
    assert "Autopay: Off" in text


# Stripe: the Payment Element in setup mode ------------------------------------------------------------

class TestWithStripe:
    @pytest.fixture
    def fake(self):
        from tests.support.fake_stripe import FakeStripe

        server = FakeStripe().start()
        yield server
        server.stop()
        assert server.errors == [], "the fake Stripe server raised:\n" + "\n".join(server.errors)

    @pytest.fixture
    def app_settings(self, smtp_server, fake) -> dict:
        return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port, "STRIPE_SECRET_KEY": fake.secret_key,
                "STRIPE_PUBLISHABLE_KEY": "pk_test_portal", "STRIPE_WEBHOOK_SECRET": "whsec_test",
                "STRIPE_API_BASE": fake.url}

    def start(self, client):
        response = post_form(client, f"{PAGE}/add")
        assert response.status_code == 200, text_of(response)
        html = response.get_data(as_text=True)
        secret = re.search(r'data-client-secret="([^"]+)"', html).group(1)
        return secret.split("_secret_")[0], html

    def test_adding_mounts_the_payment_element_and_the_return_stores_the_method_once(self, contact, client, fake):
        page = client.get(PAGE).get_data(as_text=True)
        assert "js.stripe.com" not in page and 'name="card_number"' not in page, "nothing starts by looking"
        assert not fake.setup_intents

        setup_id, html = self.start(client)
        assert setup_id in fake.setup_intents
        assert 'data-publishable-key="pk_test_portal"' in html and "js/stripe-setup.js" in html
        assert 'data-return-url="http://portal.test/portal/payment-methods/added"' in html
        customer = db.session.get(Client, contact.client_id).gateway_customer_id
        on_server = fake.setup_intents[setup_id]
        assert on_server["customer"] == customer and on_server["usage"] == "off_session"
        assert on_server["payment_method_types"] == ["card", "sepa_debit"]
        assert fake.customers[customer]["email"] == "ana@acme.example"

        # The browser confirms with Stripe.js, then Stripe sends the payer back.
        get_gateway().confirm_setup_intent(setup_id, "pm_card_visa", "browser-confirm")
        back = client.get(f"{PAGE}/added?setup_intent={setup_id}&redirect_status=succeeded")
        assert back.status_code == 303
        assert "Saved: Visa ending 4242, expires 12/2034." in text_of(client.get(PAGE))
        again = client.get(f"{PAGE}/added?setup_intent={setup_id}&redirect_status=succeeded")
        assert again.status_code == 303
        [method] = methods_of(contact.client_id)
        assert (method.gateway, method.gateway_setup_id, method.is_default) == ("stripe", setup_id, True)
        assert method.gateway_method_id == fake.setup_intents[setup_id]["payment_method"]

        # A second add reuses the customer.
        second_id, _ = self.start(client)
        assert fake.setup_intents[second_id]["customer"] == customer and len(fake.customers) == 1

    def test_a_declined_setup_says_so_and_stores_nothing(self, contact, client, fake):
        setup_id, _ = self.start(client)
        with pytest.raises(GatewayError):
            get_gateway().confirm_setup_intent(setup_id, "pm_card_chargeDeclined", "browser")
        back = client.get(f"{PAGE}/added?setup_intent={setup_id}&redirect_status=failed", follow_redirects=True)
        assert "Your card was declined." in text_of(back)
        assert count_methods() == 0

    def test_another_clients_setup_intent_is_404(self, make, contact, client, fake):
        other = make.client(name="Other Co", contacts=[{"name": "Olu", "email": "olu@other.example",
                                                        "receives_invoices": True}])
        theirs = payment_methods.start_setup(other.id, None)
        get_gateway().confirm_setup_intent(theirs["setup_intent_id"], "pm_card_visa", "theirs")
        assert client.get(f"{PAGE}/added?setup_intent={theirs['setup_intent_id']}").status_code == 404
        assert client.get(f"{PAGE}/added?setup_intent=seti_doesnotexist").status_code == 404
        assert count_methods() == 0
        stored = payment_methods.apply_setup_intent(other.id, theirs["setup_intent_id"], None)
        assert client.get(f"{PAGE}/added?setup_intent={theirs['setup_intent_id']}").status_code == 404
        assert [m.id for m in methods_of(contact.client_id)] == [] and stored.client_id == other.id

    def test_removing_detaches_at_stripe(self, contact, client, fake):
        setup_id, _ = self.start(client)
        get_gateway().confirm_setup_intent(setup_id, "pm_card_visa", "browser")
        client.get(f"{PAGE}/added?setup_intent={setup_id}")
        [method] = methods_of(contact.client_id)
        assert fake.payment_methods[method.gateway_method_id]["customer"]
        assert post_form(client, f"{PAGE}/{method.id}/remove").status_code == 303
        assert fake.payment_methods[method.gateway_method_id]["customer"] is None
        assert methods_of(contact.client_id) == []
